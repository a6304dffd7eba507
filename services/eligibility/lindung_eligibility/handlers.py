"""Eligibility's handlers: keep programmes and the business date; decide each registered worker.

A programme's seats are counted on its row (`confirmed_count`), and instances sharing the
database decide workers of one programme at once (registrations come from every partition). So a
batch first locks its programmes' rows (`SELECT ... FOR UPDATE`, in programme-id order, so that
two batches spanning the same programmes never wait on each other crosswise: PostgreSQL would
abort one as a deadlock) and holds them until commit. A lock, not only an atomic
`confirmed_count + n`, because a seat is a decision (is one left?) made before the count moves:
under the lock the seats read, the decisions read after them and the increment all agree.
SQLite ignores FOR UPDATE: its writers take turns anyway.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sqlalchemy import Table, and_, bindparam, or_, select, update

from lindung_contracts import (
    DayStarted,
    EligibilityConfirmed,
    EligibilityRejected,
    Event,
    ProgramPublished,
    WorkerRegistered,
)
from lindung_eligibility.db import BusinessDay, Decision, Program
from lindung_eligibility.domain import (
    Applicant,
    CoverageTerm,
    ProgramRules,
    Registration,
    Seats,
    decide_batch,
    latest_day,
)
from lindung_runtime import NotReadyYet
from lindung_runtime.logging import get_logger
from lindung_runtime.messages import Message, Outgoing, Transaction, latest
from lindung_runtime.privacy import mask_nik

log = get_logger(__name__)

# The batch handler's statements are SQLAlchemy Core, over the tables.
PROGRAM: Table = Program.__table__  # type: ignore[attr-defined]
DECISION: Table = Decision.__table__  # type: ignore[attr-defined]
BUSINESS_DAY: Table = BusinessDay.__table__  # type: ignore[attr-defined]


async def on_program_published(
    batch: list[Message[ProgramPublished]], tx: Transaction
) -> list[Outgoing]:
    """A new or amended programme (the batch's last word on each wins); seats already taken
    stay taken."""
    programs = latest(batch, lambda p: p.program_id)
    await tx.upsert(
        Program,
        [
            {
                "program_id": p.program_id,
                "region_codes": ",".join(sorted(p.region_codes)),
                "quota": p.quota,
                "confirmed_count": 0,
                "coverage_start": p.coverage_start,
                "coverage_end": p.coverage_end,
                "min_age": p.min_age,
                "max_age": p.max_age,
            }
            for p in programs
        ],
        keys=["program_id"],
        update=["region_codes", "quota", "coverage_start", "coverage_end", "min_age", "max_age"],
    )
    for p in programs:
        log.info("program_known", program_id=p.program_id, quota=p.quota)
    return []


async def on_day_started(batch: list[Message[DayStarted]], tx: Transaction) -> list[Outgoing]:
    """Days only move forward: a late or repeated DayStarted does not turn the clock back."""
    known = (
        await tx.connection.execute(select(BUSINESS_DAY.c.today).where(BUSINESS_DAY.c.id == 1))
    ).scalar_one_or_none()
    today = latest_day(known, [m.event.date for m in batch])
    if today != known:
        await tx.upsert(BusinessDay, [{"id": 1, "today": today}], keys=["id"], update=["today"])
    return []


async def on_worker_registered(
    batch: list[Message[WorkerRegistered]], tx: Transaction
) -> list[Outgoing]:
    """Confirm or reject each worker once, first come first served against the programme's quota."""
    # The programmes' rows stay locked until commit (see the module's docstring).
    program_ids = sorted({m.event.program_id for m in batch})
    programs = {
        row.program_id: row
        for row in await tx.rows(
            select(PROGRAM)
            .where(PROGRAM.c.program_id.in_(program_ids))
            .order_by(PROGRAM.c.program_id)
            .with_for_update()
        )
    }
    if missing := [p for p in program_ids if p not in programs]:
        raise NotReadyYet(f"programme {missing[0]!r} not published (yet)")
    # Read under the programmes' locks: a decision another instance made meanwhile is seen here.
    decisions = await tx.rows(
        select(
            DECISION.c.worker_id,
            DECISION.c.nik,
            DECISION.c.status,
            DECISION.c.coverage_start,
            DECISION.c.coverage_end,
        ).where(
            or_(
                DECISION.c.worker_id.in_({m.event.worker_id for m in batch}),
                and_(
                    DECISION.c.nik.in_({m.event.nik for m in batch}),
                    DECISION.c.status == "confirmed",
                ),
            )
        )
    )
    enrolled: dict[str, list[CoverageTerm]] = {}
    for d in decisions:
        if d.status == "confirmed":
            enrolled.setdefault(d.nik, []).append(CoverageTerm(d.coverage_start, d.coverage_end))
    today = (
        await tx.connection.execute(select(BUSINESS_DAY.c.today).where(BUSINESS_DAY.c.id == 1))
    ).scalar_one_or_none()
    verdicts = decide_batch(
        [
            Registration(
                w.worker_id,
                w.program_id,
                Applicant(nik=w.nik, birth_date=w.birth_date, gender=w.gender),
            )
            for w in (m.event for m in batch)
        ],
        {p: _rules(row) for p, row in programs.items()},
        {p: Seats(row.quota, row.confirmed_count) for p, row in programs.items()},
        today,
        enrolled,
        decided={d.worker_id for d in decisions},
    )
    first: dict[str, Message[WorkerRegistered]] = {}  # a worker's first record answers for it
    for message in batch:
        first.setdefault(message.event.worker_id, message)
    now = tx.now()
    await tx.insert_new(
        Decision,
        [
            {
                "worker_id": v.registration.worker_id,
                "program_id": v.registration.program_id,
                "nik": v.registration.applicant.nik,
                "status": "confirmed" if v.confirmed else "rejected",
                "coverage_start": v.term.start,
                "coverage_end": v.term.end,
                "reasons": json.dumps([r.model_dump() for r in v.reasons]),
                "decided_at": now,
            }
            for v in verdicts
        ],
    )
    seats = Counter(v.registration.program_id for v in verdicts if v.confirmed)
    if seats:
        await tx.connection.execute(
            update(PROGRAM)
            .where(PROGRAM.c.program_id == bindparam("id"))
            .values(confirmed_count=PROGRAM.c.confirmed_count + bindparam("taken")),
            [{"id": p, "taken": n} for p, n in sorted(seats.items())],
        )
    replies = []
    for v in verdicts:
        w = first[v.registration.worker_id].event
        if v.confirmed:
            event: Event = EligibilityConfirmed(
                worker_id=w.worker_id,
                program_id=w.program_id,
                nik=w.nik,
                coverage_start=v.term.start,
                coverage_end=v.term.end,
                decided_at=now,
                full_name=w.full_name,
                village=w.village,
                district=w.district,
            )
        else:
            event = EligibilityRejected(
                worker_id=w.worker_id,
                program_id=w.program_id,
                nik=w.nik,
                reasons=v.reasons,
                decided_at=now,
            )
            log.info("eligibility_rejected", nik=mask_nik(w.nik), codes=[r.code for r in v.reasons])
        replies.append(first[w.worker_id].reply(event))
    log.debug("eligibility_decided", decided=len(verdicts), confirmed=sum(seats.values()))
    return replies


def _rules(program: Any) -> ProgramRules:
    """A programme's row as the rules read it."""
    return ProgramRules(
        program_id=program.program_id,
        region_codes=frozenset(program.region_codes.split(",")),
        coverage_start=program.coverage_start,
        coverage_end=program.coverage_end,
        min_age=program.min_age,
        max_age=program.max_age,
    )
