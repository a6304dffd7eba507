"""Registration's handlers: load, ask the domain, save, emit (and project what was emitted into
the worker timeline, in the same transaction).

`register` is the one registration use case of the HTTP API and spreadsheet imports;
the Kafka intake is its batch form (`on_registration_requested`). Both decide with the same pure
rule (`domain.decide_registrations`), so they validate and deduplicate the same way. A worker is
registered only for a programme the operator has published (`program.published`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from faststream import Context
from sqlalchemy import insert
from sqlmodel import col, select
from stdnum.id import nik as stdnum_nik

from lindung_contracts import (
    FieldError,
    ProgramPublished,
    RegistrationRequested,
)
from lindung_registration import projection
from lindung_registration.db import KnownProgram, RejectedRequest, Worker, WorkerStatus
from lindung_registration.domain import (
    candidate_worker_id,
    decide_registrations,
    printable,
    registration,
    rejection,
    worker_id_for,
)
from lindung_runtime import NotReadyYet, UnitOfWork
from lindung_runtime.errors import waited_out
from lindung_runtime.logging import get_logger
from lindung_runtime.messages import Message, Outgoing, Transaction
from lindung_runtime.privacy import mask_nik

log = get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: Literal["registered", "repeated", "rejected"]
    worker_id: str | None = None
    errors: list[FieldError] = field(default_factory=list)


async def preload_workers(requests: list[RegistrationRequested], uow: UnitOfWork) -> None:
    """For `register` over a chunk of imported rows: one query per table for the chunk instead
    of one per request (the idempotency check and the timeline status below)."""
    ids = [worker_id_for(r.program_id.strip(), stdnum_nik.compact(r.nik)) for r in requests]
    await uow.preload(
        KnownProgram, KnownProgram.program_id, {r.program_id.strip() for r in requests}
    )
    await uow.preload(Worker, Worker.worker_id, ids)
    await uow.preload(WorkerStatus, WorkerStatus.worker_id, ids)


async def register(
    request: RegistrationRequested, uow: UnitOfWork, request_id: str | None
) -> Outcome:
    """Register a valid request once; answer an invalid one with every field error."""
    program_id = request.program_id.strip()
    known = {program_id} if program_id and await program_known(uow, program_id) else set()
    worker_id = candidate_worker_id(request)
    registered = {worker_id} if await uow.get(Worker, worker_id) is not None else set()
    [decision] = decide_registrations([request], known, registered)
    if decision.status == "rejected":
        rejected = rejection(request, decision.errors, request_id)
        projection.record_rejected(uow, rejected, uow.emit(rejected))
        log.info(
            "registration_rejected",
            nik=mask_nik(rejected.nik),
            codes=[e.code for e in decision.errors],
        )
        return Outcome("rejected", errors=decision.errors)
    assert decision.valid is not None
    valid = decision.valid
    if decision.status == "repeated":
        log.debug("registration_repeated", nik=mask_nik(valid.nik), worker_id=valid.worker_id)
        return Outcome("repeated", worker_id=valid.worker_id)

    registered_event = registration(valid, uow.now())
    uow.create(Worker, **_worker_row(registered_event))
    await projection.record_registered(uow, registered_event, uow.emit(registered_event))
    log.debug("worker_registered", nik=mask_nik(valid.nik), worker_id=valid.worker_id)
    return Outcome("registered", worker_id=valid.worker_id)


def _worker_row(event: Any) -> dict[str, Any]:
    """The worker's row, from its WorkerRegistered."""
    return {
        name: getattr(event, name)
        for name in (
            "worker_id",
            "program_id",
            "nik",
            "full_name",
            "birth_date",
            "gender",
            "occupation",
            "village",
            "district",
            "phone",
            "registered_at",
        )
    }


async def program_known(uow: UnitOfWork, program_id: str) -> bool:
    return await uow.get(KnownProgram, program_id) is not None


async def on_program_published(program: ProgramPublished, uow: UnitOfWork = Context("uow")) -> None:
    """A new or amended programme: from now on workers may be registered for it."""
    row = await uow.get(KnownProgram, program.program_id) or KnownProgram(
        program_id=program.program_id,
        name=program.name,
        sponsor=program.sponsor,
        coverage_start=program.coverage_start,
        coverage_end=program.coverage_end,
        published_at=uow.now(),
    )
    row.name, row.sponsor = program.name, program.sponsor
    row.coverage_start, row.coverage_end = program.coverage_start, program.coverage_end
    row.published_at = uow.now()
    uow.add(row)
    log.info("program_known", program_id=program.program_id)


async def on_registration_requested(
    batch: list[Message[RegistrationRequested]], tx: Transaction
) -> list[Outgoing]:
    """Register a valid request once; answer an invalid one with every field error.

    A request for a programme not (yet) published waits for it, as the other services do: an
    operator who publishes a programme and its registrations at once expects them to succeed,
    and the two topics are consumed independently. Once the wait runs out
    (CONSUMER_NOT_READY_MAX_WAIT_SECONDS) the request is rejected as `program_unknown`, so the
    village system hears why, rather than dead-lettered."""
    program_ids = {m.event.program_id.strip() for m in batch} - {""}
    known = set(
        (
            await tx.connection.execute(
                select(KnownProgram.program_id).where(col(KnownProgram.program_id).in_(program_ids))
            )
        ).scalars()
    )
    if (missing := sorted(program_ids - known)) and not waited_out():
        raise NotReadyYet(f"programme {printable(missing[0], 64)!r} not published (yet)")
    registered = set(
        (
            await tx.connection.execute(
                select(Worker.worker_id).where(
                    col(Worker.worker_id).in_({candidate_worker_id(m.event) for m in batch})
                )
            )
        ).scalars()
    )
    decisions = decide_registrations([m.event for m in batch], known, registered)
    now = tx.now()
    workers, entries, changes, refused, replies = [], [], [], [], []
    for message, decision in zip(batch, decisions, strict=True):
        if decision.status == "registered":
            assert decision.valid is not None
            event = registration(decision.valid, now)
            out = message.reply(event)  # its id keys the timeline entry
            workers.append(_worker_row(event))
            entries.append(projection.registered_entry(event, out.event_id, message.trace_id))
            changes.append(projection.registered_change(event))
            replies.append(out)
        elif decision.status == "rejected":
            rejected = rejection(message.event, decision.errors, message.id)
            out = message.reply(rejected)
            entries.append(projection.rejected_entry(rejected, out.event_id, message.trace_id, now))
            refused.append(projection.rejected_row(rejected, out.event_id))
            replies.append(out)
            log.info(
                "registration_rejected",
                nik=mask_nik(rejected.nik),
                codes=[e.code for e in decision.errors],
            )
    if workers:  # a worker another instance registered meanwhile fails the batch: retried
        await tx.connection.execute(insert(Worker), workers)
    await tx.insert_new(RejectedRequest, refused)
    await projection.save(tx, entries, changes)
    log.debug(
        "registrations_decided",
        registered=len(workers),
        rejected=len(refused),
        repeated=len(batch) - len(workers) - len(refused),
    )
    return replies
