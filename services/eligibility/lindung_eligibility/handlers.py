"""Eligibility's handlers: keep programmes and the business date; decide each registered worker.

A programme's seats are counted on its row (`confirmed_count`), and instances sharing the
database decide workers of one programme at once (registrations come from every partition). So a
batch locks the rows of the programmes it will take seats in (`SELECT ... FOR UPDATE` in its
preload, in programme-id order, so that two batches spanning the same programmes never wait on
each other crosswise: PostgreSQL would abort one as a deadlock) and holds them until commit. A
lock, not an atomic `confirmed_count + 1`, because the seat is one decision (is one left?) made
before the count moves: under the lock the check and the increment see the same count, and a
batch's later workers see its earlier ones' seats. SQLite ignores FOR UPDATE: its writers take
turns anyway.
"""

from __future__ import annotations

import json

from faststream import Context

from lindung_contracts import (
    DayStarted,
    EligibilityConfirmed,
    EligibilityRejected,
    ProgramPublished,
    WorkerRegistered,
)
from lindung_eligibility.db import BusinessDay, Decision, Program
from lindung_eligibility.domain import (
    QUOTA_EXHAUSTED,
    Applicant,
    CoverageTerm,
    ProgramRules,
    assess,
)
from lindung_runtime import NotReadyYet, UnitOfWork
from lindung_runtime.logging import get_logger
from lindung_runtime.privacy import mask_nik

log = get_logger(__name__)


async def on_program_published(program: ProgramPublished, uow: UnitOfWork = Context("uow")) -> None:
    """A new or amended programme; seats already taken stay taken."""
    row = await uow.get(Program, program.program_id) or Program(
        program_id=program.program_id,
        region_codes="",
        quota=program.quota,
        coverage_start=program.coverage_start,
        coverage_end=program.coverage_end,
        min_age=program.min_age,
        max_age=program.max_age,
    )
    row.region_codes = ",".join(sorted(program.region_codes))
    row.quota = program.quota
    row.coverage_start = program.coverage_start
    row.coverage_end = program.coverage_end
    row.min_age = program.min_age
    row.max_age = program.max_age
    uow.add(row)
    log.info("program_known", program_id=program.program_id, quota=program.quota)


async def on_day_started(day: DayStarted, uow: UnitOfWork = Context("uow")) -> None:
    """Days only move forward: a late or repeated DayStarted does not turn the clock back."""
    row = await uow.get(BusinessDay, 1)
    if row is None:
        uow.add(BusinessDay(id=1, today=day.date))
    elif day.date > row.today:
        row.today = day.date
        uow.add(row)


async def preload_decisions(workers: list[WorkerRegistered], uow: UnitOfWork) -> None:
    """Load the batch's decisions, and lock the programmes its undecided workers may take seats
    in, in programme-id order (see the module's docstring)."""
    await uow.preload(Decision, Decision.worker_id, [w.worker_id for w in workers])
    await uow.preload(Decision, Decision.nik, [w.nik for w in workers])
    undecided = [w for w in workers if await uow.get(Decision, w.worker_id) is None]
    for program_id in sorted({w.program_id for w in undecided}):
        await uow.get(Program, program_id, for_update=True)


async def on_worker_registered(worker: WorkerRegistered, uow: UnitOfWork = Context("uow")) -> None:
    """Confirm or reject, first come first served against the programme's quota."""
    if await uow.get(Decision, worker.worker_id) is not None:
        return
    # Locked by the preload until commit (see the module's docstring): this answers from it.
    program = await uow.get(Program, worker.program_id, for_update=True)
    if program is None:
        raise NotReadyYet(f"programme {worker.program_id!r} not published (yet)")
    business_day = await uow.get(BusinessDay, 1)
    enrolled = [
        d for d in await uow.find(Decision, Decision.nik, worker.nik) if d.status == "confirmed"
    ]
    assessment = assess(
        ProgramRules(
            program_id=program.program_id,
            region_codes=frozenset(program.region_codes.split(",")),
            coverage_start=program.coverage_start,
            coverage_end=program.coverage_end,
            min_age=program.min_age,
            max_age=program.max_age,
        ),
        Applicant(nik=worker.nik, birth_date=worker.birth_date, gender=worker.gender),
        business_day.today if business_day else None,
        [CoverageTerm(d.coverage_start, d.coverage_end) for d in enrolled],
    )
    reasons = assessment.reasons
    if not reasons:
        if program.confirmed_count < program.quota:
            program.confirmed_count += 1
            uow.add(program)
        else:
            reasons = [QUOTA_EXHAUSTED]

    now = uow.now()
    uow.create(
        Decision,
        worker_id=worker.worker_id,
        program_id=worker.program_id,
        nik=worker.nik,
        status="rejected" if reasons else "confirmed",
        coverage_start=assessment.term.start,
        coverage_end=assessment.term.end,
        reasons=json.dumps([r.model_dump() for r in reasons]),
        decided_at=now,
    )
    if reasons:
        uow.emit(
            EligibilityRejected(
                worker_id=worker.worker_id,
                program_id=worker.program_id,
                nik=worker.nik,
                reasons=reasons,
                decided_at=now,
            )
        )
        log.info("eligibility_rejected", nik=mask_nik(worker.nik), codes=[r.code for r in reasons])
        return
    uow.emit(
        EligibilityConfirmed(
            worker_id=worker.worker_id,
            program_id=worker.program_id,
            nik=worker.nik,
            coverage_start=assessment.term.start,
            coverage_end=assessment.term.end,
            decided_at=now,
            full_name=worker.full_name,
            village=worker.village,
            district=worker.district,
        )
    )
    log.debug("eligibility_confirmed", nik=mask_nik(worker.nik), worker_id=worker.worker_id)
