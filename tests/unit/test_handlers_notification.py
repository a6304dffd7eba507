"""Notification's handlers run in memory (FastStream's TestKafkaBroker), and its digest dispatcher
against a real local SMTP server (aiosmtpd): one mail per alert window, sent once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from pydantic import ValidationError

from lindung_contracts import CoverageExpiring, DigestSent, ProgramPublished
from lindung_notification import mailer
from lindung_notification.app import create_service
from lindung_notification.db import Digest, DigestEntry, Program
from lindung_notification.handlers import DigestDispatcher
from lindung_notification.settings import NotificationSettings
from lindung_runtime import FixedClock, Service
from tests.smtp_kit import SmtpInbox, SmtpServer, attachment_rows
from tests.unit.handler_kit import (
    PROGRAM,
    deliver_batch,
    emitted,
    founding_program,
    publish,
    rows,
    with_tables,
)

NOW = datetime(2025, 12, 1, 0, 5, tzinfo=UTC)
WINDOW = f"{PROGRAM}:2025-12-31:30d"
STAFF = ["disnaker@sumbabaratdayakab.go.id", "bpjsketenagakerjaan.tambolaka@example.go.id"]


# --- helpers --------------------------------------------------------------------------------------


def program(**overrides: Any) -> ProgramPublished:
    return founding_program(**{"alert_days_before_end": [30], "staff_emails": STAFF, **overrides})


def expiring(serial: int, *, size: int = 3, days_left: int = 30) -> CoverageExpiring:
    nik = f"531801010190{serial:04d}"
    return CoverageExpiring(
        worker_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PROGRAM}/{nik}")),
        program_id=PROGRAM,
        nik=nik,
        coverage_end=date(2025, 12, 31),
        days_left=days_left,
        full_name=f"Pekerja {serial}",
        village="Kalembu Ndara Mane",
        district="Wewewa Barat",
        alert_id=f"{PROGRAM}:2025-12-31:{days_left}d",
        alert_size=size,
    )


async def digest(service: Service, digest_id: str = WINDOW) -> Digest:
    async with service.database.read_session() as session:
        row = await session.get(Digest, digest_id)
    assert row is not None
    return row


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()  # not started: each test decides when the server is up
    yield server
    server.stop()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
async def service(data_dir: Path, smtp: SmtpServer, clock: FixedClock) -> AsyncIterator[Service]:
    settings = NotificationSettings(
        LINDUNG_DATA_DIR=str(data_dir),
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp.port,
        SMTP_SECURITY="none",  # the local test server speaks plain SMTP
        smtp_timeout_seconds=5,
        smtp_from="Lindung <lindung@example.go.id>",
        digest_quiet_seconds=60,
    )
    async with with_tables(create_service(settings, clock=clock)) as svc:
        yield svc


def dispatcher(service: Service) -> DigestDispatcher:
    assert isinstance(service.settings, NotificationSettings)
    return DigestDispatcher(service, service.settings)


# --- tests --------------------------------------------------------------------------------------


async def test_complete_window_is_mailed_once_as_one_digest(
    service: Service, smtp: SmtpServer
) -> None:
    smtp.start()
    alerts = [expiring(1), expiring(2), expiring(3)]
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        for alert in alerts:
            await publish(br, alert)

    row = await digest(service)
    assert (row.expected_size, row.sent_at) == (3, None)
    assert len(await rows(service, DigestEntry)) == 3

    assert await dispatcher(service).dispatch_ready() == 1

    [envelope] = smtp.inbox.envelopes
    assert sorted(envelope.rcpt_tos) == sorted(STAFF)
    [message] = smtp.inbox.messages()
    subject = str(message["Subject"])
    assert subject.startswith("[Lindung] Kepesertaan 3 peserta")
    assert "berakhir 31 Desember 2025" in subject
    assert "(30 hari lagi)" in subject
    body = message.get_body(preferencelist=("plain",))
    assert (
        body is not None and "Yth. Tim Pemerintah Kabupaten Sumba Barat Daya" in body.get_content()
    )
    lines = attachment_rows(message)
    assert len(lines) == 3
    assert sorted(line["nik"] for line in lines) == [
        "5318********0001",
        "5318********0002",
        "5318********0003",
    ]
    assert {line["akhir_kepesertaan"] for line in lines} == {"2025-12-31"}
    assert all(alert.nik not in envelope.content.decode("utf-8", "replace") for alert in alerts)

    [sent] = await emitted(service, DigestSent)
    assert (sent.digest_id, sent.worker_count, sent.days_left) == (WINDOW, 3, 30)
    assert sorted(sent.recipients) == sorted(STAFF)
    assert (await digest(service)).sent_at is not None

    # Sent is sent: another pass finds nothing to do.
    assert await dispatcher(service).dispatch_ready() == 0
    assert len(smtp.inbox.envelopes) == 1
    assert len(await emitted(service, DigestSent)) == 1


async def test_redelivered_alerts_do_not_duplicate_entries(
    service: Service, smtp: SmtpServer
) -> None:
    smtp.start()
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        ids = [await publish(br, expiring(n)) for n in (1, 2)]
        for ce_id, n in zip(ids, (1, 2), strict=True):
            await publish(br, expiring(n), ce_id=ce_id)  # redelivered
        await publish(br, expiring(1))  # re-announced under a new id

        assert len(await rows(service, DigestEntry)) == 2
        assert await dispatcher(service).dispatch_ready() == 0  # 2 of 3: still gathering

        await publish(br, expiring(3))

    assert len(await rows(service, DigestEntry)) == 3
    assert await dispatcher(service).dispatch_ready() == 1
    [message] = smtp.inbox.messages()
    assert len(attachment_rows(message)) == 3


async def test_one_batch_gathers_each_worker_once(service: Service, smtp: SmtpServer) -> None:
    """A batch holding a worker twice (and a worker gathered before) adds each worker once."""
    smtp.start()
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, expiring(1))
        await deliver_batch(service, [expiring(2), expiring(1), expiring(2), expiring(3)])
        await deliver_batch(service, [expiring(3), expiring(2)])  # all gathered: nothing new

    assert sorted(e.nik[-1] for e in await rows(service, DigestEntry)) == ["1", "2", "3"]
    assert [(d.digest_id, d.expected_size) for d in await rows(service, Digest)] == [(WINDOW, 3)]
    assert await dispatcher(service).dispatch_ready() == 1
    [message] = smtp.inbox.messages()
    assert len(attachment_rows(message)) == 3


async def test_one_batch_after_the_mail_fills_one_follow_up(
    service: Service, smtp: SmtpServer
) -> None:
    """Mailed workers are not added again; the others of the batch share one follow-up, which
    expects the window's size less the workers already mailed."""
    smtp.start()
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await deliver_batch(service, [expiring(1, size=5), expiring(2, size=5)])
        assert await dispatcher(service)._claim(WINDOW)  # leased: being mailed
        await deliver_batch(
            service,
            [expiring(1, size=5), expiring(3, size=5), expiring(4, size=5), expiring(3, size=5)],
        )

    entries = sorted((e.digest_id, e.nik[-1]) for e in await rows(service, DigestEntry))
    assert entries == [(WINDOW, "1"), (WINDOW, "2"), (f"{WINDOW}#2", "3"), (f"{WINDOW}#2", "4")]
    sizes = {d.digest_id: d.expected_size for d in await rows(service, Digest)}
    assert sizes == {WINDOW: 5, f"{WINDOW}#2": 3}


async def test_programmes_last_record_in_a_batch_wins(service: Service) -> None:
    async def stored() -> dict[str, tuple[str, str, str]]:
        return {
            p.program_id: (p.name, p.sponsor, p.staff_emails) for p in await rows(service, Program)
        }

    async with TestKafkaBroker(service.broker):
        await deliver_batch(
            service,
            [
                program(name="Nama Lama", staff_emails=["lama@example.go.id"]),
                program(name="Nama Baru"),
                program(program_id="ntt-provinsi-2025h2", name="NTT"),
            ],
        )
        first = await stored()
        await deliver_batch(service, [program(sponsor="Pemkab SBD"), program(name="Nama Akhir")])

    sponsor = program().sponsor
    assert first == {
        PROGRAM: ("Nama Baru", sponsor, ",".join(STAFF)),
        "ntt-provinsi-2025h2": ("NTT", sponsor, ",".join(STAFF)),
    }
    assert (await stored())[PROGRAM] == ("Nama Akhir", sponsor, ",".join(STAFF))


async def test_incomplete_window_is_sent_after_the_quiet_period(
    service: Service, smtp: SmtpServer, clock: FixedClock
) -> None:
    smtp.start()
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, expiring(1))
        await publish(br, expiring(2))

    assert await dispatcher(service).dispatch_ready() == 0
    clock.at = NOW + timedelta(seconds=61)
    assert await dispatcher(service).dispatch_ready() == 1
    [message] = smtp.inbox.messages()
    assert "Kepesertaan 2 peserta" in str(message["Subject"])
    assert len(attachment_rows(message)) == 2


async def test_alert_after_the_digest_was_sent_does_not_reopen_it(
    service: Service, smtp: SmtpServer
) -> None:
    """A sent digest keeps what it mailed; a worker alerted later (billing activated them after
    the window's first alerts) is mailed in a follow-up, and one already mailed is not again."""
    smtp.start()
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        for n in (1, 2, 3):
            await publish(br, expiring(n))
        assert await dispatcher(service).dispatch_ready() == 1
        await publish(br, expiring(1))  # re-announced after the mail: nothing to add
        await publish(br, expiring(4, size=4))

    assert sorted((e.digest_id, e.nik[-1]) for e in await rows(service, DigestEntry)) == [
        (WINDOW, "1"),
        (WINDOW, "2"),
        (WINDOW, "3"),
        (f"{WINDOW}#2", "4"),
    ]
    assert await dispatcher(service).dispatch_ready() == 1
    assert await dispatcher(service).dispatch_ready() == 0
    first, follow_up = smtp.inbox.messages()
    assert len(attachment_rows(first)) == 3
    assert [row["nik"] for row in attachment_rows(follow_up)] == ["5318********0004"]
    assert first["Message-ID"] != follow_up["Message-ID"]
    sent = await emitted(service, DigestSent)
    assert [(s.digest_id, s.worker_count) for s in sent] == [(WINDOW, 3), (f"{WINDOW}#2", 1)]


async def test_windows_of_one_programme_are_separate_digests(
    service: Service, smtp: SmtpServer
) -> None:
    smtp.start()
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program(alert_days_before_end=[30, 7]))
        await publish(br, expiring(1, size=1, days_left=30))
        await publish(br, expiring(1, size=1, days_left=7))

    assert await dispatcher(service).dispatch_ready() == 2
    subjects = [str(m["Subject"]) for m in smtp.inbox.messages()]
    assert sorted(s.rsplit("(", 1)[1] for s in subjects) == ["30 hari lagi)", "7 hari lagi)"]
    assert len({m["Message-ID"] for m in smtp.inbox.messages()}) == 2


async def test_smtp_down_postpones_the_digest_and_it_is_sent_later(
    service: Service, smtp: SmtpServer, clock: FixedClock
) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        for n in (1, 2, 3):
            await publish(br, expiring(n))

    # Nothing listens on the SMTP port: no exception, the digest stays unsent and backs off.
    assert await dispatcher(service).dispatch_ready() == 0
    row = await digest(service)
    assert row.sent_at is None
    assert row.send_attempts == 1
    assert row.last_error
    assert row.next_attempt_at is not None
    retry_at = row.next_attempt_at.replace(tzinfo=UTC)
    assert retry_at > NOW
    assert await emitted(service, DigestSent) == []

    smtp.start()
    assert await dispatcher(service).dispatch_ready() == 0  # backing off: not due yet
    assert smtp.inbox.envelopes == []

    clock.at = retry_at + timedelta(seconds=1)
    assert await dispatcher(service).dispatch_ready() == 1
    assert len(smtp.inbox.envelopes) == 1
    row = await digest(service)
    assert row.sent_at is not None
    assert row.last_error is None
    assert len(await emitted(service, DigestSent)) == 1


async def test_digest_of_an_unknown_programme_waits_for_the_programme(
    service: Service, smtp: SmtpServer, clock: FixedClock
) -> None:
    smtp.start()
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, expiring(1, size=1))
        assert await dispatcher(service).dispatch_ready() == 0  # no staff to write to yet
        await publish(br, program())

    assert (await digest(service)).send_attempts == 1
    clock.at = NOW + timedelta(minutes=10)
    assert await dispatcher(service).dispatch_ready() == 1
    assert len(smtp.inbox.envelopes) == 1


# --- mail that can never be sent ------------------------------------------------------------------


def failed_count(service: Service, reason: str) -> float:
    value = service.metrics.registry.get_sample_value(
        "lindung_digests_failed_total", {"service": "notification", "reason": reason}
    )
    return value or 0.0


async def test_digest_whose_mail_cannot_be_built_is_marked_failed_not_retried(
    service: Service, smtp: SmtpServer, clock: FixedClock
) -> None:
    """A programme name with CR/LF (stored before the contract refused it) cannot go into a
    Subject header: the digest is failed with the reason, counted, and never tried again."""
    smtp.start()
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        for n in (1, 2, 3):
            await publish(br, expiring(n))
    async with service.database.session() as session:
        stored = await session.get(Program, PROGRAM)
        assert stored is not None
        stored.name = "Program\r\nBcc: someone@example.com"
        session.add(stored)
        await session.commit()

    assert await dispatcher(service).dispatch_ready() == 0
    row = await digest(service)
    assert row.failed_at is not None and row.sent_at is None
    assert row.last_error is not None and row.last_error.startswith("unbuildable:")
    assert failed_count(service, "unbuildable") == 1

    clock.at = NOW + timedelta(days=1)  # long past any backoff
    assert await dispatcher(service).dispatch_ready() == 0
    assert (await digest(service)).send_attempts == 1
    assert smtp.inbox.envelopes == []
    assert await emitted(service, DigestSent) == []


class RefusingInbox(SmtpInbox):
    """Refuses, for good (550), every recipient at unknown.example.go.id."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.endswith("@unknown.example.go.id"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_digest_whose_every_recipient_is_refused_for_good_is_marked_failed(
    service: Service, smtp: SmtpServer, clock: FixedClock
) -> None:
    smtp.inbox = RefusingInbox()
    smtp.start()
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program(staff_emails=["staf@unknown.example.go.id"]))
        await publish(br, expiring(1, size=1))

    assert await dispatcher(service).dispatch_ready() == 0
    row = await digest(service)
    assert row.failed_at is not None
    assert row.last_error is not None and row.last_error.startswith("recipients_refused:")
    assert failed_count(service, "recipients_refused") == 1
    clock.at = NOW + timedelta(days=1)
    assert await dispatcher(service).dispatch_ready() == 0
    assert (await digest(service)).send_attempts == 1


def test_programme_names_and_addresses_that_would_break_mail_headers_are_refused() -> None:
    for bad in (
        {"name": "Program\r\nBcc: x@example.com"},
        {"sponsor": "Pemkab\nSumba"},
        {"name": "Program\x00"},
        {"name": "Program\u2028x"},
        {"staff_emails": ["a@example.go.id,b@example.go.id"]},
        {"staff_emails": ["a@example.go.id\r\n"]},
    ):
        with pytest.raises(ValidationError):
            program(**bad)
    assert program(name="Perlindungan Pekerja Rentan — Sumba Barat Daya 2025").name


# --- the dispatcher's snapshot and late alerts ----------------------------------------------------


def mailed_workers(smtp: SmtpServer) -> list[str]:
    return [row["worker_id"] for m in smtp.inbox.messages() for row in attachment_rows(m)]


async def test_alert_gathered_while_the_digest_is_mailed_goes_into_a_follow_up(
    service: Service, smtp: SmtpServer, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 24's race: the dispatcher composes the mail from a snapshot and talks SMTP outside any
    transaction. A worker gathered in that gap must be mailed (here in a follow-up digest), not
    left in a digest marked sent with a mail and a worker_count that lack them."""
    smtp.start()
    real_send = mailer.send
    late: list[CoverageExpiring] = []
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, expiring(1))
        await publish(br, expiring(2))
        clock.at = NOW + timedelta(seconds=61)  # quiet: the window goes out with 2 of its 3

        async def send_while_an_alert_arrives(message: Any, settings: Any) -> None:
            if not late:  # composed, not yet recorded as sent: the third worker is gathered now
                late.append(expiring(3))
                await publish(br, late[0])
            await real_send(message, settings)

        monkeypatch.setattr(mailer, "send", send_while_an_alert_arrives)
        assert await dispatcher(service).dispatch_ready() == 1
        assert late and len(smtp.inbox.envelopes) == 1

    assert await dispatcher(service).dispatch_ready() == 1  # the follow-up: 3 - 2 mailed = 1
    workers = mailed_workers(smtp)
    assert sorted(workers) == sorted(expiring(n).worker_id for n in (1, 2, 3))
    sent = await emitted(service, DigestSent)
    assert [s.worker_count for s in sent] == [
        len(attachment_rows(m)) for m in smtp.inbox.messages()
    ]
    assert sum(s.worker_count for s in sent) == 3
    assert len({s.digest_id for s in sent}) == 2
    assert len({m["Message-ID"] for m in smtp.inbox.messages()}) == 2
    assert all(row.sent_at is not None for row in await rows(service, Digest))


async def test_digest_whose_sender_died_is_resent_as_it_was_and_late_alerts_follow_up(
    service: Service, smtp: SmtpServer, clock: FixedClock
) -> None:
    """A lease that ran out may hide a mail already delivered: the resend (same Message-ID) has
    the same workers, and a worker alerted meanwhile goes to a follow-up, not into the resend."""
    smtp.start()
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, expiring(1))
        await publish(br, expiring(2))
        clock.at = NOW + timedelta(seconds=61)
        assert await dispatcher(service)._claim(WINDOW)  # an instance leases it, then dies
        await publish(br, expiring(3))

    clock.at += timedelta(seconds=dispatcher(service).settings.digest_lease_seconds + 1)
    assert await dispatcher(service).dispatch_ready() == 2
    resend, follow_up = smtp.inbox.messages()
    assert resend["Message-ID"] == f"<{WINDOW.replace(':', '.')}@lindung>"
    assert sorted(row["nik"][-1] for row in attachment_rows(resend)) == ["1", "2"]
    assert [row["nik"][-1] for row in attachment_rows(follow_up)] == ["3"]


# --- a renewal already published ------------------------------------------------------------------


async def test_a_published_renewal_is_kept_on_the_digest_and_told_in_the_mail(
    service: Service, smtp: SmtpServer
) -> None:
    """Alerts carry `renewed_until` once a renewal is published; one arriving while the window
    is still gathering updates the digest, so the mail says the carried workers go on."""
    smtp.start()
    renewal = date(2026, 12, 31)
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await deliver_batch(service, [expiring(1), expiring(2)])
        assert (await digest(service)).renewed_until is None
        await deliver_batch(
            service, [expiring(3).model_copy(update={"renewed_until": renewal}), expiring(1)]
        )

    row = await digest(service)
    assert (row.kind, row.renewed_until) == ("expiring", renewal)
    assert await dispatcher(service).dispatch_ready() == 1
    [message] = smtp.inbox.messages()
    assert "diperpanjang hingga 31 Desember 2026" in str(message["Subject"])
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "Perpanjangan program sudah diterbitkan hingga 31 Desember 2026" in body.get_content()
