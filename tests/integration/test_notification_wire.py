"""Notification against a real broker and a real SMTP server: the background dispatcher mails one
digest per alert window and announces it with DigestSent."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from lindung_contracts import CoverageExpiring, DigestSent, ProgramPublished, topics
from lindung_notification.app import create_service
from lindung_notification.db import Digest, Program
from lindung_notification.settings import NotificationSettings
from lindung_runtime.embedded import free_port
from lindung_runtime.kafka import EventClient
from tests.integration.conftest import FAST, count_rows, eventually, running, wire

pytestmark = pytest.mark.integration

PROGRAM = "sbd-pekerja-rentan-2025q4"
STAFF = ["disnaker@sumbabaratdayakab.go.id", "bpjsketenagakerjaan.tambolaka@example.go.id"]


class SmtpInbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


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
    inbox = SmtpInbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        service = create_service(
            NotificationSettings(
                LINDUNG_DATA_DIR=str(data_dir),
                KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                SMTP_HOST="127.0.0.1",
                SMTP_PORT=smtp.port,
                smtp_timeout_seconds=5,
                digest_poll_seconds=0.1,
                **FAST,
            )
        )
        async with running(service), EventClient(kafka_bootstrap) as client:
            async with wire(kafka_bootstrap, [topics.DIGEST_SENT]) as out:
                await client.publish(
                    ProgramPublished(
                        program_id=PROGRAM,
                        name="Perlindungan Pekerja Rentan Kab. Sumba Barat Daya 2025",
                        sponsor="Pemerintah Kabupaten Sumba Barat Daya (APBD)",
                        region_code="5318",
                        quota=5600,
                        coverage_start=date(2025, 10, 1),
                        coverage_end=date(2025, 12, 31),
                        staff_emails=STAFF,
                    )
                )

                async def program_known() -> bool:
                    return await count_rows(service, Program) == 1

                await eventually(program_known, what="the programme to reach notification")
                alerts = [expiring(n) for n in (1, 2, 3)]
                ids = [await client.publish(alert) for alert in alerts]
                await client.publish(alerts[0], event_id=ids[0])  # a redelivery changes nothing

                [record] = await out.wait_for(topics.DIGEST_SENT, 1)

            async def marked_sent() -> bool:
                async with service.database.read_session() as session:
                    digest = await session.get(Digest, f"{PROGRAM}:2025-12-31:30d")
                return digest is not None and digest.sent_at is not None

            await eventually(marked_sent, what="the digest to be marked sent")
    finally:
        smtp.stop()

    sent = DigestSent.model_validate_json(record.value)
    assert (sent.worker_count, sent.days_left, sent.coverage_end) == (3, 30, date(2025, 12, 31))
    assert record.key == PROGRAM
    assert record.headers["ce_type"] == DigestSent.ce_type()

    [envelope] = inbox.envelopes
    assert sorted(envelope.rcpt_tos) == sorted(STAFF)
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert "Kepesertaan 3 peserta" in str(message["Subject"])
    [attachment] = list(message.iter_attachments())  # type: ignore[attr-defined]
    content = attachment.get_content()
    rows = list(
        csv.DictReader(io.StringIO(content.decode() if isinstance(content, bytes) else content))
    )
    assert sorted(row["nik"] for row in rows) == [
        "5318********0001",
        "5318********0002",
        "5318********0003",
    ]
