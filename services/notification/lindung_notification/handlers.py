"""Notification's handlers gather each alert window's workers (an expiring window, or a
programme's ending: both are gathered alike); the dispatcher mails the digest.

A digest closes for good when the dispatcher leases it: the mail is composed from the entries it
has then, and a lease that runs out is resent with the same Message-ID, so it must keep the same
content. The lease is taken by a guarded UPDATE of the digest row, and a batch holds the rows of
the digests it adds to locked until commit (SELECT ... FOR UPDATE; SQLite's writers take turns
anyway), so a handler either adds its entry before the claim, and the entry is in the mail, or
sees the lease and adds it to a follow-up digest of the same window (`<window>#2`, `#3`, ...),
mailed in its turn. Without the lock, a worker gathered while the mail was on its way joined a
digest then marked sent without them: never mailed, and left out of DigestSent's worker_count.
A follow-up rather than reopening: the mail already went out; rather than recording which
entries were mailed: that needs the same lock, plus a column and a sweep for the rest.

So that there is always a row to lock, a batch first creates the first digest of each of its
windows that has none yet, in one statement that leaves an existing one alone (two instances
opening a window at once both go on, instead of one failing on the primary key). It then locks
its windows' first digests in one statement, in digest-id order (two instances' batches never
wait on each other crosswise), and only after that, in statements of their own, locks the
follow-ups and reads the entries: on PostgreSQL a statement that waited for a lock sees the
locked row as its holder left it, but not the rows the holder added (a follow-up, entries). A
window's digests, follow-ups included, are therefore only ever added to by the one batch holding
its first digest's lock, and that batch sees everything the ones before it added.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import aiosmtplib
from sqlalchemy import Date, Integer, Table, bindparam, case, func, or_, update
from sqlalchemy import select as select_rows  # Core: the consumers' plain rows
from sqlmodel import col, select

from lindung_contracts import CoverageEnded, CoverageExpiring, DigestSent, ProgramPublished
from lindung_notification import mailer
from lindung_notification.db import Digest, DigestEntry, Program
from lindung_notification.domain import (
    Alerted,
    DigestItem,
    DigestMail,
    DigestWorker,
    StoredDigest,
    compose_digest,
    compose_ended_digest,
    ended_window,
    expiring_window,
    gather_batch,
)
from lindung_notification.settings import NotificationSettings
from lindung_runtime import Service
from lindung_runtime.clock import as_utc
from lindung_runtime.lease import Lease
from lindung_runtime.logging import get_logger
from lindung_runtime.messages import Message, Outgoing, Transaction, latest
from lindung_runtime.privacy import scrub_text

log = get_logger(__name__)

# The consumers' statements are SQLAlchemy Core, over the tables.
DIGEST: Table = Digest.__table__  # type: ignore[attr-defined]
ENTRY: Table = DigestEntry.__table__  # type: ignore[attr-defined]


async def on_program_published(
    batch: list[Message[ProgramPublished]], tx: Transaction
) -> list[Outgoing]:
    """A new or amended programme: whom its alerts go to (the batch's last word wins)."""
    await tx.upsert(
        Program,
        [
            {
                "program_id": p.program_id,
                "name": p.name,
                "sponsor": p.sponsor,
                "staff_emails": ",".join(p.staff_emails),
            }
            for p in latest(batch, lambda p: p.program_id)
        ],
        keys=["program_id"],
    )
    return []


def expiring_item(alert: CoverageExpiring) -> DigestItem:
    """A worker of an expiring window; the window's first digest is the alert's id."""
    return DigestItem(
        kind="expiring",
        window=alert.alert_id
        or expiring_window(alert.program_id, alert.coverage_end, alert.days_left),
        alert_size=alert.alert_size,
        program_id=alert.program_id,
        coverage_end=alert.coverage_end,
        days_left=alert.days_left,
        worker=_worker(alert),
        renewed_until=alert.renewed_until,
    )


def ended_item(ended: CoverageEnded) -> DigestItem:
    """A worker of a programme's ending: all of them go into one digest, like a window's."""
    return DigestItem(
        kind="ended",
        window=ended.alert_id or ended_window(ended.program_id, ended.coverage_end),
        alert_size=ended.alert_size,
        program_id=ended.program_id,
        coverage_end=ended.coverage_end,
        days_left=0,
        worker=_worker(ended),
    )


def _worker(event: CoverageExpiring | CoverageEnded) -> DigestWorker:
    return DigestWorker(event.worker_id, event.nik, event.full_name, event.village, event.district)


async def on_coverage_expiring(
    batch: list[Message[CoverageExpiring]], tx: Transaction
) -> list[Outgoing]:
    """Add the worker to the window's digest; the dispatcher sends it when complete."""
    await _gather(tx, [expiring_item(m.event) for m in batch])
    return []


async def on_coverage_ended(batch: list[Message[CoverageEnded]], tx: Transaction) -> list[Outgoing]:
    """Add the worker to its programme's ending digest: one mail for the whole ending."""
    await _gather(tx, [ended_item(m.event) for m in batch])
    return []


async def _gather(tx: Transaction, items: list[DigestItem]) -> None:
    """Add the items' workers to their windows' digests (see the module's docstring)."""
    # Each window's first item in the batch opens the window's first digest if it is new.
    opening: dict[str, DigestItem] = {}
    for item in items:
        opening.setdefault(item.window, item)
    windows = sorted(opening)
    now = tx.now()
    await tx.insert_new(Digest, [_new_digest(w, opening[w], 0, now) for w in windows])
    # The windows' digests under the row locks: first digests, then in a statement of its own
    # (begun once their locks are got) their follow-ups; see the module's docstring.
    columns = (
        DIGEST.c.digest_id,
        DIGEST.c.expected_size,
        DIGEST.c.lease_until,
        DIGEST.c.sent_at,
        DIGEST.c.failed_at,
    )
    stored = [
        *await tx.rows(
            select_rows(*columns)
            .where(DIGEST.c.digest_id.in_(windows))
            .order_by(DIGEST.c.digest_id)
            .with_for_update()
        ),
        *await tx.rows(
            select_rows(*columns)
            .where(or_(*(DIGEST.c.digest_id.startswith(f"{w}#", autoescape=True) for w in windows)))
            .order_by(DIGEST.c.digest_id)
            .with_for_update()
        ),
    ]
    digests = {
        row.digest_id: StoredDigest(
            expected_size=row.expected_size,
            leased=row.lease_until is not None,
            sent=row.sent_at is not None,
            failed=row.failed_at is not None,
        )
        for row in stored
    }
    # Read under the locks: entries another instance added meanwhile are seen here.
    gathered: dict[str, set[str]] = {}
    for row in await tx.rows(
        select_rows(ENTRY.c.worker_id, ENTRY.c.digest_id).where(
            ENTRY.c.worker_id.in_(sorted({i.worker.worker_id for i in items}))
        )
    ):
        gathered.setdefault(row.worker_id, set()).add(row.digest_id)
    if closed := sorted(d for d, digest in digests.items() if not digest.open):
        for row in await tx.rows(
            select_rows(ENTRY.c.digest_id, func.count().label("n"))
            .where(ENTRY.c.digest_id.in_(closed))
            .group_by(ENTRY.c.digest_id)
        ):
            digests[row.digest_id] = replace(digests[row.digest_id], gathered=row.n)
    alerts: dict[Alerted, DigestItem] = {}
    for item in items:
        alerts.setdefault(item.alerted, item)
    gathering = gather_batch(list(alerts), digests, gathered)
    joiner: dict[str, DigestItem] = {}  # each digest's first worker of the batch
    renewed: dict[str, date] = {}  # the latest word of the batch on each digest's renewal
    for joining in gathering.joinings:
        item = alerts[joining.alert]
        joiner.setdefault(joining.digest_id, item)
        if item.renewed_until is not None:
            renewed[joining.digest_id] = item.renewed_until
    new = [d for d in gathering.digests if d.new]
    await tx.insert_new(
        Digest,
        [
            _new_digest(
                d.digest_id,
                replace(joiner[d.digest_id], renewed_until=renewed.get(d.digest_id)),
                d.expected_size,
                now,
            )
            for d in new
        ],
    )
    for d in new:
        if d.number > 1:
            log.info(
                "digest_follow_up",
                digest_id=d.digest_id,
                worker_id=joiner[d.digest_id].worker.worker_id,
            )
    if grown := sorted((d.digest_id, d.expected_size) for d in gathering.digests if not d.new):
        size = bindparam("size", type_=Integer)
        await tx.connection.execute(
            update(DIGEST)
            .where(DIGEST.c.digest_id == bindparam("id"))
            .values(
                expected_size=case(
                    (DIGEST.c.expected_size < size, size), else_=DIGEST.c.expected_size
                ),
                # A renewal published after the window opened: the mail, not yet composed, says so.
                renewed_until=func.coalesce(
                    bindparam("renewed", type_=Date), DIGEST.c.renewed_until
                ),
                updated_at=now,
            ),
            [
                {"id": digest_id, "size": expected, "renewed": renewed.get(digest_id)}
                for digest_id, expected in grown
            ],
        )
    await tx.insert_new(
        DigestEntry,
        [
            {
                "digest_id": j.digest_id,
                "worker_id": (w := alerts[j.alert].worker).worker_id,
                "nik": w.nik,
                "full_name": w.full_name,
                "village": w.village,
                "district": w.district,
            }
            for j in gathering.joinings
        ],
    )


def _new_digest(
    digest_id: str, item: DigestItem, expected_size: int, now: datetime
) -> dict[str, Any]:
    return {
        "digest_id": digest_id,
        "program_id": item.program_id,
        "coverage_end": item.coverage_end,
        "days_left": item.days_left,
        "kind": item.kind,
        "renewed_until": item.renewed_until,
        "expected_size": expected_size,
        "updated_at": now,
        "send_attempts": 0,
    }


class DigestDispatcher:
    """Sends each complete digest once; retries SMTP failures with backoff. A digest that can
    never be sent (its mail cannot be built, or every recipient is refused for good) is marked
    failed with the reason, logged and counted, instead of being retried forever.

    Mail once: the digest is leased, and the lease committed, before the SMTP call; the outcome
    (sent, postponed, failed) is recorded with the lease's release. Instances sharing a database
    therefore never mail a digest at the same time. One that dies between the server's accept
    and that record leaves the lease to run out; the digest is then mailed again with the same
    Message-ID, so the receiving side can recognise the copy."""

    def __init__(self, service: Service, settings: NotificationSettings) -> None:
        self.service = service
        self.settings = settings
        self.lease = Lease(
            Digest, key="digest_id", clock=service.clock, seconds=settings.digest_lease_seconds
        )
        self.failed = service.metrics.counter(
            "lindung_digests_failed",
            "Digests marked failed, never to be retried, by reason (unbuildable, "
            "recipients_refused)",
            ["service", "reason"],
        )

    async def run(self) -> None:
        while True:
            await self.dispatch_ready()
            await asyncio.sleep(self.settings.digest_poll_seconds)

    async def dispatch_ready(self) -> int:
        sent = 0
        for digest_id in await self._ready_digests():
            if await self._claim(digest_id) and await self._send(digest_id):
                sent += 1
        return sent

    async def _claim(self, digest_id: str) -> bool:
        """Lease the digest if it is still unsent, not waiting for a retry, and not being sent
        by another instance; committed before any SMTP traffic."""
        now = self.service.clock.now()
        async with self.service.database.session() as session:
            claimed = await self.lease.claim(
                session,
                col(Digest.digest_id) == digest_id,
                col(Digest.sent_at).is_(None),
                col(Digest.failed_at).is_(None),
                or_(col(Digest.next_attempt_at).is_(None), col(Digest.next_attempt_at) <= now),
            )
            await session.commit()
        return bool(claimed)

    async def _ready_digests(self) -> list[str]:
        now = self.service.clock.now()
        quiet_since = now - timedelta(seconds=self.settings.digest_quiet_seconds)
        async with self.service.database.read_session() as session:
            counts = (
                select(DigestEntry.digest_id, func.count().label("n"))
                .group_by(col(DigestEntry.digest_id))
                .subquery()
            )
            rows = (
                await session.exec(
                    select(Digest, counts.c.n)
                    .join(counts, counts.c.digest_id == Digest.digest_id)
                    .where(col(Digest.sent_at).is_(None), col(Digest.failed_at).is_(None))
                    .order_by(col(Digest.digest_id))
                )
            ).all()
        ready = []
        for digest, gathered in rows:
            if digest.next_attempt_at is not None and as_utc(digest.next_attempt_at) > now:
                continue
            if gathered >= digest.expected_size or as_utc(digest.updated_at) <= quiet_since:
                ready.append(digest.digest_id)
        return ready

    async def _send(self, digest_id: str) -> bool:
        """Compose from a snapshot, talk SMTP outside any transaction, then record the send.
        The digest is leased to this dispatcher (`_claim`)."""
        async with self.service.database.read_session() as session:
            digest = await session.get(Digest, digest_id)
            if digest is None or digest.sent_at is not None or digest.failed_at is not None:
                await self._release(digest_id)  # recorded by an instance whose lease ran out
                return False
            program = await session.get(Program, digest.program_id)
            entries = (
                await session.exec(select(DigestEntry).where(DigestEntry.digest_id == digest_id))
            ).all()
        if program is None or not program.staff_emails:
            return await self._postpone(digest_id, "programme or its staff e-mails not known")
        try:
            mail = _compose(
                digest,
                program,
                [
                    DigestWorker(e.worker_id, e.nik, e.full_name, e.village, e.district)
                    for e in entries
                ],
            )
            message = mailer.build_message(mail, self.settings.smtp_from, digest_id)
        except Exception as error:  # e.g. a name with CR/LF, stored before the contract said no
            return await self._fail(digest_id, "unbuildable", error)
        try:
            await mailer.send(message, self.settings)
        except aiosmtplib.SMTPRecipientsRefused as error:
            if all(r.code >= 500 for r in error.recipients):
                return await self._fail(digest_id, "recipients_refused", error)
            return await self._postpone(digest_id, scrub_text(repr(error))[:500])
        except Exception as error:
            return await self._postpone(digest_id, scrub_text(repr(error))[:500])
        async with self.service.unit_of_work() as uow:
            digest = await uow.session.get(Digest, digest_id, with_for_update=True)
            assert digest is not None
            if digest.sent_at is None:  # else our lease ran out and another copy was recorded
                digest.sent_at = uow.now()
                digest.last_error = None
                uow.session.add(digest)
                uow.emit(
                    DigestSent(
                        digest_id=digest_id,
                        program_id=program.program_id,
                        coverage_end=digest.coverage_end,
                        days_left=digest.days_left,
                        worker_count=len(entries),
                        recipients=mail.recipients,
                        sent_at=digest.sent_at,
                    )
                )
            await self.lease.release(uow.session, [digest_id])
            await uow.commit()
        log.info(
            "digest_sent",
            digest_id=digest_id,
            workers=len(entries),
            recipients=len(mail.recipients),
        )
        return True

    async def _release(self, digest_id: str) -> None:
        async with self.service.database.session() as session:
            await self.lease.release(session, [digest_id])
            await session.commit()

    async def _fail(self, digest_id: str, reason: str, error: Exception) -> bool:
        text = f"{reason}: {scrub_text(repr(error))}"[:500]
        async with self.service.unit_of_work() as uow:
            digest = await uow.session.get(Digest, digest_id, with_for_update=True)
            assert digest is not None
            digest.send_attempts += 1
            digest.failed_at = uow.now()
            digest.next_attempt_at = None
            digest.last_error = text
            uow.session.add(digest)
            await self.lease.release(uow.session, [digest_id])
            await uow.commit()
        self.failed.labels(self.service.name, reason).inc()
        log.error("digest_failed", digest_id=digest_id, reason=reason, error=text)
        return False

    async def _postpone(self, digest_id: str, error: str) -> bool:
        async with self.service.unit_of_work() as uow:
            digest = await uow.session.get(Digest, digest_id, with_for_update=True)
            assert digest is not None
            digest.send_attempts += 1
            delay = min(
                self.settings.smtp_max_backoff_seconds, 2.0 * 2 ** min(digest.send_attempts, 12)
            )
            digest.next_attempt_at = uow.now() + timedelta(seconds=delay * random.uniform(0.5, 1.0))
            digest.last_error = error
            uow.session.add(digest)
            await self.lease.release(uow.session, [digest_id])
            await uow.commit()
        log.warning(
            "digest_send_postponed", digest_id=digest_id, attempts=digest.send_attempts, error=error
        )
        return False


def _compose(digest: Digest, program: Program, workers: list[DigestWorker]) -> DigestMail:
    """The digest's mail, by its kind (an unknown kind is unbuildable: failed, not guessed)."""
    recipients = program.staff_emails.split(",")
    if digest.kind == "ended":
        return compose_ended_digest(
            program.name,
            program.sponsor,
            program.program_id,
            digest.coverage_end,
            workers,
            recipients,
        )
    if digest.kind == "expiring":
        return compose_digest(
            program.name,
            program.sponsor,
            program.program_id,
            digest.coverage_end,
            digest.days_left,
            workers,
            recipients,
            renewed_until=digest.renewed_until,
        )
    raise ValueError(f"unknown digest kind {digest.kind!r}")
