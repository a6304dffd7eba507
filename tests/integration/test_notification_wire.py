"""Notification against a real broker and a real SMTP server: the background dispatcher mails one
digest per alert window and announces it with DigestSent."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import pytest

from lindung_contracts import CoverageExpiring, DigestSent, topics
from lindung_notification.app import create_service
from lindung_notification.db import Digest, Program
from lindung_notification.settings import NotificationSettings
from tests.integration.conftest import eventually, on_broker, running, wait_for_rows, wire
from tests.smtp_kit import SmtpServer, attachment_rows
from tests.sources import TrustedClient
from tests.unit.handler_kit import PROGRAM, founding_program

pytestmark = pytest.mark.integration

STAFF = ["disnaker@sumbabaratdayakab.go.id", "bpjsketenagakerjaan.tambolaka@example.go.id"]


def expiring(serial: int) -> CoverageExpiring:
    nik = f"531801010190{serial:04d}"
    return CoverageExpiring(
        worker_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PROGRAM}/{nik}")),
        program_id=PROGRAM,
        nik=nik,
        coverage_end=date(2025, 12, 31),
        days_left=30,
        full_name=f"Pekerja {serial}",
        village="Kalembu Ndara Mane",
        district="Wewewa Barat",
        alert_id=f"{PROGRAM}:2025-12-31:30d",
        alert_size=3,
    )


@pytest.mark.integration
async def test_complete_window_is_mailed_once_and_announced_on_the_wire(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    with SmtpServer() as smtp:
        settings = on_broker(
            data_dir,
            kafka_bootstrap,
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=smtp.port,
            SMTP_SECURITY="none",  # the local test server speaks plain SMTP
            smtp_timeout_seconds=5,
            digest_poll_seconds=0.1,
        )
        service = create_service(NotificationSettings(**settings))
        async with running(service), TrustedClient(kafka_bootstrap) as client:
            async with wire(kafka_bootstrap, [topics.DIGEST_SENT]) as out:
                await client.publish(founding_program(staff_emails=STAFF))
                await wait_for_rows(service, Program, 1, what="the programme to reach notification")
                alerts = [expiring(n) for n in (1, 2, 3)]
                ids = [await client.publish(alert) for alert in alerts]
                await client.publish(alerts[0], event_id=ids[0])  # a redelivery changes nothing

                [record] = await out.wait_for(topics.DIGEST_SENT, 1)

            async def marked_sent() -> bool:
                async with service.database.read_session() as session:
                    digest = await session.get(Digest, f"{PROGRAM}:2025-12-31:30d")
                return digest is not None and digest.sent_at is not None

            await eventually(marked_sent, what="the digest to be marked sent")

    sent = DigestSent.model_validate_json(record.value)
    assert (sent.worker_count, sent.days_left, sent.coverage_end) == (3, 30, date(2025, 12, 31))
    assert record.key == PROGRAM
    assert record.headers["ce_type"] == DigestSent.ce_type()

    [envelope] = smtp.inbox.envelopes
    assert sorted(envelope.rcpt_tos) == sorted(STAFF)
    [message] = smtp.inbox.messages()
    assert "Kepesertaan 3 peserta" in str(message["Subject"])
    rows = attachment_rows(message)
    assert sorted(row["nik"] for row in rows) == [
        "5318********0001",
        "5318********0002",
        "5318********0003",
    ]
