"""A programme's ending (coverage.ended): its workers are gathered into one digest, like an
alert window's, and mailed to staff as cover that has ended unrenewed, in Bahasa Indonesia."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from lindung_contracts import CoverageEnded, DigestSent, Reason
from lindung_notification.app import create_service
from lindung_notification.db import Digest, DigestEntry
from lindung_notification.domain import DigestWorker, compose_digest, compose_ended_digest
from lindung_notification.handlers import DigestDispatcher
from lindung_notification.settings import NotificationSettings
from lindung_runtime import FixedClock, Service
from tests.smtp_kit import SmtpServer, attachment_rows
from tests.unit.handler_kit import PROGRAM, emitted, founding_program, handle_now, rows, with_tables

NOW = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
END = date(2025, 12, 31)
ENDING = f"{PROGRAM}:2025-12-31:ended"
PROGRAM_NAME = "Perlindungan Pekerja Rentan Kab. Sumba Barat Daya 2025"
SPONSOR = "Pemerintah Kabupaten Sumba Barat Daya (APBD)"
STAFF = ["disnaker@sumbabaratdayakab.go.id"]


def worker(serial: int) -> DigestWorker:
    return DigestWorker(
        f"w-{serial}", f"531801010190{serial:04d}", f"Pekerja {serial}", "Desa Loura", "Loura"
    )


def ended(serial: int, *, size: int = 3) -> CoverageEnded:
    nik = f"531801010190{serial:04d}"
    return CoverageEnded(
        worker_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PROGRAM}/{nik}")),
        program_id=PROGRAM,
        nik=nik,
        coverage_end=END,
        term=1,
        reason=Reason(code="term_ended_not_renewed", message="Masa program berakhir"),
        full_name=f"Pekerja {serial}",
        village="Kalembu Ndara Mane",
        district="Wewewa Barat",
        alert_id=ENDING,
        alert_size=size,
    )


# --- the mail -------------------------------------------------------------------------------------


def test_ended_subject_says_the_cover_has_ended_unrenewed() -> None:
    workers = [worker(n) for n in range(1, 5_601)]
    mail = compose_ended_digest(PROGRAM_NAME, SPONSOR, PROGRAM, END, workers, STAFF)
    assert mail.subject == (
        f"[Lindung] Kepesertaan berakhir: 5.600 peserta {PROGRAM_NAME} per 31 Desember 2025, "
        "tidak diperpanjang"
    )
    assert "hari lagi" not in mail.subject
    assert mail.recipients == STAFF


def test_ended_body_states_the_end_and_asks_for_a_renewal_or_a_new_enrolment() -> None:
    mail = compose_ended_digest(PROGRAM_NAME, SPONSOR, PROGRAM, END, [worker(1)], STAFF)
    assert mail.body.startswith(f"Yth. Tim {SPONSOR},")
    assert "1 peserta" in mail.body and PROGRAM in mail.body and PROGRAM_NAME in mail.body
    assert "telah berakhir pada 31 Desember 2025 dan tidak diperpanjang" in mail.body
    assert "Sejak 1 Januari 2026 peserta tersebut tidak lagi terlindungi" in mail.body
    assert "mohon proses perpanjangan" in mail.body
    assert "didaftarkan kembali sebagai kepesertaan baru" in mail.body
    assert "NIK disamarkan" in mail.body
    assert "akan berakhir" not in mail.body and "hari lagi" not in mail.body


def test_ended_attachment_is_the_digests_masked_csv() -> None:
    workers = [worker(2), worker(1)]
    mail = compose_ended_digest(PROGRAM_NAME, SPONSOR, PROGRAM, END, workers, STAFF)
    expiring = compose_digest(PROGRAM_NAME, SPONSOR, PROGRAM, END, 30, workers, STAFF)
    assert mail.attachment_csv == expiring.attachment_csv
    assert mail.attachment_name == "peserta-telah-berakhir-2025-12-31.csv"
    lines = list(csv.reader(io.StringIO(mail.attachment_csv)))
    assert [line[1] for line in lines[1:]] == ["5318********0001", "5318********0002"]
    assert all(w.nik not in mail.attachment_csv for w in workers)


# --- gathering and mailing ------------------------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
async def service(data_dir: Path, smtp: SmtpServer) -> AsyncIterator[Service]:
    settings = NotificationSettings(
        LINDUNG_DATA_DIR=str(data_dir),
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp.port,
        SMTP_SECURITY="none",  # the local test server speaks plain SMTP
        smtp_timeout_seconds=5,
    )
    async with with_tables(create_service(settings, clock=FixedClock(NOW))) as svc:
        yield svc


def dispatcher(service: Service) -> DigestDispatcher:
    assert isinstance(service.settings, NotificationSettings)
    return DigestDispatcher(service, service.settings)


async def test_a_programmes_ending_is_gathered_into_one_digest_and_mailed_once(
    service: Service, smtp: SmtpServer
) -> None:
    await handle_now(service, [founding_program(staff_emails=STAFF)])
    await handle_now(service, [ended(1), ended(2), ended(1)])
    assert await dispatcher(service).dispatch_ready() == 0  # 2 of 3: still gathering
    await handle_now(service, [ended(3), ended(2)])  # a redelivered worker is not added again

    [digest] = await rows(service, Digest)
    assert (digest.digest_id, digest.kind, digest.expected_size) == (ENDING, "ended", 3)
    assert (digest.days_left, digest.renewed_until) == (0, None)
    entries = await rows(service, DigestEntry)
    assert sorted(e.nik[-1] for e in entries) == ["1", "2", "3"]
    assert {e.digest_id for e in entries} == {ENDING}

    assert await dispatcher(service).dispatch_ready() == 1
    [message] = smtp.inbox.messages()
    assert str(message["Subject"]).startswith("[Lindung] Kepesertaan berakhir: 3 peserta")
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and "telah berakhir pada 31 Desember 2025" in body.get_content()
    assert sorted(line["nik"] for line in attachment_rows(message)) == [
        "5318********0001",
        "5318********0002",
        "5318********0003",
    ]
    [sent] = await emitted(service, DigestSent)
    assert (sent.digest_id, sent.worker_count, sent.days_left) == (ENDING, 3, 0)
    assert await dispatcher(service).dispatch_ready() == 0


async def test_an_ending_without_an_alert_id_is_still_one_digest_per_programme_end(
    service: Service,
) -> None:
    await handle_now(
        service, [ended(n).model_copy(update={"alert_id": "", "alert_size": 0}) for n in (1, 2)]
    )
    assert [(d.digest_id, d.kind) for d in await rows(service, Digest)] == [(ENDING, "ended")]
    assert len(await rows(service, DigestEntry)) == 2
