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

from sqlalchemy import and_, bindparam, or_, select, update

from lindung_contracts import (
    DayStarted,
    EligibilityConfirmed,
    EligibilityRejected,
    Event,
    ProgramPublished,
    ProgramRenewed,
    Reason,
    WorkerRegistered,
    renewal_outcome,
)
from lindung_eligibility.db import BusinessDay, Decision, Program, ProgramTerm
from lindung_eligibility.domain import (
    Applicant,
    CoverageTerm,
    Member,
    ProgramRules,
    Registration,
    Seats,
    carry_into_term,
    coverage_term,
    decide_batch,
    latest_day,
)
from lindung_runtime import NotReadyYet, PermanentError
from lindung_runtime.logging import get_logger
from lindung_runtime.messages import Message, Outgoing, Transaction, columns, latest
from lindung_runtime.privacy import mask_nik

log = get_logger(__name__)

# The batch handler's statements are SQLAlchemy Core, over the tables.
PROGRAM, TERM, DECISION, BUSINESS_DAY = (
    columns(m) for m in (Program, ProgramTerm, Decision, BusinessDay)
)


class TermOverlaps(PermanentError):
    """A renewal overlapping a term the programme has: refused, never half-applied."""

    code = "term_overlaps"


async def on_program_published(
    batch: list[Message[ProgramPublished]], tx: Transaction
) -> list[Outgoing]:
    """A new or amended programme (the batch's last word on each wins): its term 1. Seats
    already taken stay taken; once renewed, the current term's dates and quota are the
    renewal's."""
    programs = latest(batch, lambda p: p.program_id)
    term_1 = [
        {
            "id": p.program_id,
            "start": p.coverage_start,
            "end": p.coverage_end,
            "seats": p.quota,
            "deadline": p.registration_deadline,
        }
        for p in programs
    ]
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
                "term": 1,
                "policy": p.coverage_start_policy,
                "registration_deadline": p.registration_deadline,
            }
            for p in programs
        ],
        keys=["program_id"],
        update=["region_codes", "min_age", "max_age", "policy"],
    )
    await tx.connection.execute(
        update(Program)
        .where(PROGRAM.program_id == bindparam("id"), PROGRAM.term == 1)
        .values(
            coverage_start=bindparam("start"),
            coverage_end=bindparam("end"),
            quota=bindparam("seats"),
            registration_deadline=bindparam("deadline"),
        ),
        term_1,
    )
    await tx.upsert(
        ProgramTerm,
        [
            {"program_id": t["id"], "term": 1, "term_start": t["start"], "term_end": t["end"]}
            | {"quota": t["seats"]}
            for t in term_1
        ],
        keys=["program_id", "term"],
    )
    for p in programs:
        log.info("program_known", program_id=p.program_id, quota=p.quota)
    return []


async def on_program_renewed(
    batch: list[Message[ProgramRenewed]], tx: Transaction
) -> list[Outgoing]:
    """Carry every worker confirmed for a programme's current term into the renewal's term, in
    registration order, each checked again against the new term (`carry_into_term`); then
    the programme's new registrations go to the new term. A repeated renewal changes nothing;
    one overlapping a term the programme has is refused (`TermOverlaps`, dead-lettered)."""
    replies: list[Outgoing] = []
    today = await _today(tx)
    for message in batch:  # renewals of one programme come in order, one partition
        replies += await _renew(tx, message, today)
    return replies


async def _renew(tx: Transaction, message: Message[ProgramRenewed], today: Any) -> list[Outgoing]:
    renewal = message.event
    program = (
        await tx.rows(
            select(*PROGRAM).where(PROGRAM.program_id == renewal.program_id).with_for_update()
        )
    )[:1]
    if not program:
        raise NotReadyYet(f"programme {renewal.program_id!r} not published (yet)")
    row = program[0]
    terms = await tx.rows(
        select(*TERM).where(TERM.program_id == renewal.program_id).order_by(TERM.term)
    )
    outcome = renewal_outcome(terms, renewal.term_start, renewal.term_end)
    if outcome.kind == "overlaps":
        raise TermOverlaps(outcome.refusal)
    if outcome.kind == "same":
        log.info("renewal_repeated", program_id=renewal.program_id, term=outcome.term)
        return []
    quota = renewal.quota or row.quota
    rules = ProgramRules(
        program_id=row.program_id,
        region_codes=frozenset(row.region_codes.split(",")),
        coverage_start=renewal.term_start,
        coverage_end=renewal.term_end,
        min_age=row.min_age,
        max_age=row.max_age,
        policy=row.policy,
        registration_deadline=renewal.registration_deadline,
        term=outcome.term,
    )
    members = await tx.rows(
        select(*DECISION)
        .where(
            DECISION.program_id == renewal.program_id,
            DECISION.term == row.term,
            DECISION.status == "confirmed",
        )
        .order_by(DECISION.registered_at, DECISION.decided_at, DECISION.worker_id)
    )
    # One membership per NIK: a worker another programme covers during the new term stays out.
    mine, theirs = Decision.__table__.alias("mine"), Decision.__table__.alias("theirs")  # type: ignore[attr-defined]
    cover = coverage_term(rules, today)
    elsewhere = set(
        (
            await tx.connection.execute(
                select(mine.c.worker_id)
                .join(theirs, theirs.c.nik == mine.c.nik)
                .where(
                    mine.c.program_id == renewal.program_id,
                    mine.c.term == row.term,
                    mine.c.status == "confirmed",
                    theirs.c.program_id != renewal.program_id,
                    theirs.c.status == "confirmed",
                    theirs.c.coverage_start <= cover.end,
                    theirs.c.coverage_end >= cover.start,
                )
            )
        ).scalars()
    )
    verdicts = carry_into_term(
        [Member(m.worker_id, m.nik, m.birth_date) for m in members],
        rules,
        quota,
        today,
        enrolled_elsewhere=elsewhere,
    )
    carried = sum(1 for _, _, reasons in verdicts if not reasons)
    now = tx.now()
    by_worker = {m.worker_id: m for m in members}
    await tx.insert_new(
        Decision,
        [
            {
                **{k: v for k, v in by_worker[member.worker_id]._mapping.items()},
                "term": outcome.term,
                "status": "rejected" if reasons else "confirmed",
                "coverage_start": cover.start,
                "coverage_end": cover.end,
                "reasons": json.dumps([r.model_dump() for r in reasons]),
                "decided_at": now,
            }
            for member, cover, reasons in verdicts
        ],
    )
    await tx.insert_new(
        ProgramTerm,
        [
            {
                "program_id": renewal.program_id,
                "term": outcome.term,
                "term_start": renewal.term_start,
                "term_end": renewal.term_end,
                "quota": quota,
            }
        ],
    )
    await tx.connection.execute(
        update(Program)
        .where(PROGRAM.program_id == renewal.program_id)
        .values(
            term=outcome.term,
            coverage_start=renewal.term_start,
            coverage_end=renewal.term_end,
            quota=quota,
            confirmed_count=carried,
            registration_deadline=renewal.registration_deadline,
        )
    )
    log.info(
        "program_renewed",
        program_id=renewal.program_id,
        term=outcome.term,
        carried=carried,
        not_carried=len(verdicts) - carried,
    )
    return [
        message.reply(
            _verdict(by_worker[member.worker_id], outcome.term, cover, reasons, now, carried=True)
        )
        for member, cover, reasons in verdicts
    ]


def _verdict(
    w: Any, term: int, cover: CoverageTerm, reasons: list[Reason], now: Any, carried: bool
) -> Event:
    """A worker's EligibilityConfirmed or EligibilityRejected for `term`."""
    if reasons:
        return EligibilityRejected(
            worker_id=w.worker_id,
            program_id=w.program_id,
            nik=w.nik,
            reasons=reasons,
            decided_at=now,
            term=term,
            carried=carried,
        )
    return EligibilityConfirmed(
        worker_id=w.worker_id,
        program_id=w.program_id,
        nik=w.nik,
        coverage_start=cover.start,
        coverage_end=cover.end,
        decided_at=now,
        full_name=w.full_name,
        village=w.village,
        district=w.district,
        term=term,
        carried=carried,
    )


async def _today(tx: Transaction) -> Any:
    return (
        await tx.connection.execute(select(BUSINESS_DAY.today).where(BUSINESS_DAY.id == 1))
    ).scalar_one_or_none()


async def on_day_started(batch: list[Message[DayStarted]], tx: Transaction) -> list[Outgoing]:
    """Days only move forward: a late or repeated DayStarted does not turn the clock back."""
    known = await _today(tx)
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
            select(*PROGRAM)
            .where(PROGRAM.program_id.in_(program_ids))
            .order_by(PROGRAM.program_id)
            .with_for_update()
        )
    }
    if missing := [p for p in program_ids if p not in programs]:
        raise NotReadyYet(f"programme {missing[0]!r} not published (yet)")
    # Read under the programmes' locks: a decision another instance made meanwhile is seen here.
    decisions = await tx.rows(
        select(
            DECISION.worker_id,
            DECISION.nik,
            DECISION.status,
            DECISION.coverage_start,
            DECISION.coverage_end,
        ).where(
            or_(
                DECISION.worker_id.in_({m.event.worker_id for m in batch}),
                and_(
                    DECISION.nik.in_({m.event.nik for m in batch}),
                    DECISION.status == "confirmed",
                ),
            )
        )
    )
    enrolled: dict[str, list[CoverageTerm]] = {}
    for d in decisions:
        if d.status == "confirmed":
            enrolled.setdefault(d.nik, []).append(CoverageTerm(d.coverage_start, d.coverage_end))
    today = await _today(tx)
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
                "term": programs[v.registration.program_id].term,
                "birth_date": (w := first[v.registration.worker_id].event).birth_date,
                "gender": w.gender,
                "full_name": w.full_name,
                "village": w.village,
                "district": w.district,
                "registered_at": w.registered_at,
            }
            for v in verdicts
        ],
    )
    seats = Counter(v.registration.program_id for v in verdicts if v.confirmed)
    if seats:
        await tx.connection.execute(
            update(Program)
            .where(PROGRAM.program_id == bindparam("id"))
            .values(confirmed_count=PROGRAM.confirmed_count + bindparam("taken")),
            [{"id": p, "taken": n} for p, n in sorted(seats.items())],
        )
    replies = []
    for v in verdicts:
        w = first[v.registration.worker_id].event
        event = _verdict(w, programs[w.program_id].term, v.term, v.reasons, now, carried=False)
        if not v.confirmed:
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
        policy=program.policy,
        registration_deadline=program.registration_deadline,
        term=program.term,
    )
