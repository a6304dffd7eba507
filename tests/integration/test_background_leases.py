"""Two instances of a service sharing one database: the importer and the digest dispatcher claim
their work through the runtime's lease (lindung_runtime.lease), as the outbox relay does
(test_outbox_relays.py). Run on SQLite by default and on PostgreSQL in the PostgreSQL pass.

As there, a barrier makes both instances hold a lease at the same moment, so nothing depends on
which one the scheduler favours; deliveries are counted at a real SMTP server (aiosmtpd), raw,
not by distinct Message-ID.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from lindung_contracts import topics
from lindung_notification import mailer
from lindung_notification.app import create_service as create_notification
from lindung_notification.db import Digest, DigestEntry, Program
from lindung_notification.handlers import DigestDispatcher
from lindung_notification.settings import NotificationSettings
from lindung_registration.app import create_service as create_registration
from lindung_registration.db import ImportJob, ImportRow
from lindung_registration.imports import LEASE, Importer
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import FixedClock, Service
from lindung_runtime.migrations import upgrade_async
from lindung_runtime.outbox import OutboxMessage
from tests.integration.test_import_bombs import HEADER
from tests.programmes import publish_known
from tests.smtp_kit import SmtpInbox, SmtpServer
from tests.unit.handler_kit import PROGRAM

pytestmark = pytest.mark.integration

NOW = datetime(2025, 12, 1, 0, 5, tzinfo=UTC)
STAFF = ["disnaker@sumbabaratdayakab.go.id"]


@asynccontextmanager
async def instances(
    name: str, create: Callable[[Any, FixedClock], Service], settings: Any, clock: FixedClock
) -> AsyncIterator[list[Service]]:
    """Two instances of service `name` on one migrated database, each its own engine and pool."""
    await upgrade_async(name, settings.database_url_for(name))
    services = [create(settings, clock), create(settings, clock)]
    try:
        yield services
    finally:
        for service in services:
            await service.database.dispose()


# --- the importer ---------------------------------------------------------------------------


def csv_rows(first: int, count: int) -> str:
    lines = [
        f"531801010190{serial:04d},Pekerja {serial},01/01/1990,L,Petani,Kalena Wanno,"
        "Kota Tambolaka,081234567890"
        for serial in range(first, first + count)
    ]
    return "\n".join([HEADER, *lines]) + "\n"


@pytest.fixture
def registration_settings(data_dir: Path) -> RegistrationSettings:
    return RegistrationSettings(
        LINDUNG_DATA_DIR=str(data_dir), kafka_bootstrap_servers=None, import_chunk_rows=2
    )


async def queue_imports(service: Service, importer: Importer, files: list[str]) -> list[str]:
    """Queue one import per CSV text, oldest first, as `accept` leaves them."""
    await publish_known(service, PROGRAM)
    ids = []
    async with service.database.session() as session:
        for n, text in enumerate(files):
            job = ImportJob(
                import_id=f"{n:032d}",
                program_id=PROGRAM,
                filename=f"{n}.csv",
                file_format="csv",
                submitted_by="ops",
                created_at=NOW + timedelta(seconds=n),
            )
            importer.directory.mkdir(parents=True, exist_ok=True)
            importer.path_of(job).write_text(text)
            session.add(job)
            ids.append(job.import_id)
        await session.commit()
    return ids


async def stored_jobs(service: Service) -> dict[str, tuple[str, int, int, int]]:
    """Each import's (status, rows done, rows recorded, attempts)."""
    async with service.database.read_session() as session:
        jobs = (await session.exec(select(ImportJob))).all()
        recorded = Counter((await session.exec(select(ImportRow.import_id))).all())
    return {j.import_id: (j.status, j.rows_done, recorded[j.import_id], j.attempts) for j in jobs}


async def test_two_importers_on_one_database_each_take_a_different_import(
    registration_settings: RegistrationSettings,
) -> None:
    clock = FixedClock(NOW)
    async with instances(
        "registration", create_registration, registration_settings, clock
    ) as services:
        importers = [Importer(s, registration_settings) for s in services]
        ids = await queue_imports(services[0], importers[0], [csv_rows(1, 5), csv_rows(101, 5)])
        barrier = asyncio.Barrier(2)

        async def claim_then_process(importer: Importer) -> str | None:
            job = await importer._next_job()
            # Both must hold a lease here at once: the barrier times out if one cannot claim.
            await asyncio.wait_for(barrier.wait(), timeout=30)
            if job is None:
                return None
            await importer.process(job)
            return job.import_id

        taken = await asyncio.gather(*(claim_then_process(i) for i in importers))
        assert sorted(t for t in taken if t) == ids, f"not one import each: {taken}"
        assert await importers[0]._next_job() is None  # nothing left to claim
        assert await stored_jobs(services[0]) == {i: ("done", 5, 5, 1) for i in ids}


async def test_an_importer_whose_lease_was_taken_over_commits_nothing_more(
    registration_settings: RegistrationSettings,
) -> None:
    """A stalled instance (its lease ran out, another claimed the import) must not go on
    committing chunks next to the new holder: the import's progress would count rows twice."""
    clock = FixedClock(NOW)
    async with instances(
        "registration", create_registration, registration_settings, clock
    ) as services:
        stalled, successor = (Importer(s, registration_settings) for s in services)
        [import_id] = await queue_imports(services[0], stalled, [csv_rows(1, 5)])
        stale = await stalled._next_job()
        assert stale is not None and await successor._next_job() is None  # leased

        clock.at += LEASE + timedelta(seconds=1)
        taken = await successor._next_job()
        assert taken is not None and taken.import_id == import_id

        await stalled.process(stale)  # wakes up: its first chunk finds the lease gone
        assert await stored_jobs(services[0]) == {import_id: ("running", 0, 0, 2)}

        await successor.process(taken)
        assert await stored_jobs(services[0]) == {import_id: ("done", 5, 5, 2)}


# --- the digest dispatcher ---------------------------------------------------------------------


class MeetingInbox(SmtpInbox):
    """Holds its first `meet` deliveries at a barrier until all of them have arrived: two
    dispatchers must each be in the middle of a delivery at the same moment (and so hold
    different digests, or the same one twice)."""

    def __init__(self, meet: int) -> None:
        super().__init__()
        self.meet = meet
        self.arrived = 0
        self.barrier: asyncio.Barrier | None = None  # made in the server's own event loop

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived += 1
        if self.arrived <= self.meet:
            self.barrier = self.barrier or asyncio.Barrier(self.meet)
            try:
                await asyncio.wait_for(self.barrier.wait(), timeout=4)  # within the SMTP timeout
            except TimeoutError:
                return "451 No other dispatcher was delivering meanwhile"
        return await super().handle_DATA(server, session, envelope)


def message_ids(inbox: SmtpInbox) -> Counter[str]:
    return Counter(str(message["Message-ID"]) for message in inbox.messages())


LEASE_SECONDS = 600


def notification_settings(data_dir: Path, smtp: SmtpServer) -> NotificationSettings:
    return NotificationSettings(
        LINDUNG_DATA_DIR=str(data_dir),
        kafka_bootstrap_servers=None,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp.port,
        SMTP_SECURITY="none",  # the local test server speaks plain SMTP
        smtp_timeout_seconds=10,
        digest_lease_seconds=LEASE_SECONDS,
    )


async def complete_digests(service: Service, count: int) -> list[str]:
    """`count` digests of one worker each, all complete: ready to be mailed."""
    ids = [f"{PROGRAM}:2025-12-31:{days}d" for days in range(1, count + 1)]
    async with service.database.session() as session:
        session.add(Program(program_id=PROGRAM, name="P", sponsor="S", staff_emails=STAFF[0]))
        for days, digest_id in enumerate(ids, start=1):
            session.add(
                Digest(
                    digest_id=digest_id,
                    program_id=PROGRAM,
                    coverage_end=date(2025, 12, 31),
                    days_left=days,
                    expected_size=1,
                    updated_at=NOW,
                )
            )
            session.add(
                DigestEntry(digest_id=digest_id, worker_id=f"w{days}", nik="5318010101900001")
            )
        await session.commit()
    return ids


async def announced(service: Service) -> Counter[str]:
    """DigestSent events in the outbox, by digest."""
    async with service.database.read_session() as session:
        payloads = (
            await session.exec(
                select(OutboxMessage.payload).where(col(OutboxMessage.topic) == topics.DIGEST_SENT)
            )
        ).all()
    return Counter(json.loads(payload)["digest_id"] for payload in payloads)


async def test_two_dispatchers_on_one_database_mail_each_digest_exactly_once(
    data_dir: Path,
) -> None:
    smtp = SmtpServer()
    smtp.inbox = MeetingInbox(meet=2)
    settings = notification_settings(data_dir, smtp)
    with smtp:
        async with instances(
            "notification", create_notification, settings, FixedClock(NOW)
        ) as services:
            ids = await complete_digests(services[0], 3)
            dispatchers = [DigestDispatcher(s, settings) for s in services]
            sent = await asyncio.gather(*(d.dispatch_ready() for d in dispatchers))
            announcements = await announced(services[0])

    delivered = message_ids(smtp.inbox)
    assert sum(delivered.values()) == len(smtp.inbox.envelopes) == 3, delivered
    assert max(delivered.values()) == 1, f"a digest was mailed twice: {delivered}"
    assert sorted(sent) == [1, 2], f"both dispatchers must have mailed: {sent}"
    assert announcements == Counter(ids)


class Died(BaseException):
    """The dispatcher's process ends here (killed, out of memory): nothing after it runs."""


async def test_a_dispatcher_dying_after_the_accept_is_resent_with_the_same_message_id(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp = SmtpServer()
    settings = notification_settings(data_dir, smtp)
    clock = FixedClock(NOW)
    deliver = mailer.send
    calls = 0

    async def send_then_die_once(message: EmailMessage, settings: NotificationSettings) -> None:
        nonlocal calls
        calls += 1
        await deliver(message, settings)  # the server has accepted the mail...
        if calls == 1:
            raise Died  # ...and the first dispatcher dies before recording it

    monkeypatch.setattr(mailer, "send", send_then_die_once)
    with smtp:
        async with instances("notification", create_notification, settings, clock) as services:
            [digest_id] = await complete_digests(services[0], 1)
            dying, other = (DigestDispatcher(s, settings) for s in services)
            with pytest.raises(Died):
                await dying.dispatch_ready()
            assert len(smtp.inbox.envelopes) == 1

            # While the dead dispatcher's lease lasts, nobody mails the digest again.
            clock.at += timedelta(seconds=LEASE_SECONDS - 1)
            assert await other.dispatch_ready() == 0
            assert len(smtp.inbox.envelopes) == 1

            clock.at += timedelta(seconds=2)  # the lease has run out
            assert await other.dispatch_ready() == 1
            assert await other.dispatch_ready() == 0  # and it is recorded as sent
            announcements = await announced(services[0])

    [(message_id, deliveries)] = message_ids(smtp.inbox).items()
    assert deliveries == len(smtp.inbox.envelopes) == 2
    assert message_id == f"<{digest_id.replace(':', '.')}@lindung>"
    assert announcements == Counter([digest_id])
