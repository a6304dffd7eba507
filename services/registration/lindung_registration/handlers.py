"""Registration's handlers: load, ask the domain, save, emit (and project what was emitted into
the worker timeline, in the same transaction).

`register` is the one registration use case; the Kafka intake, `POST /programs/{id}/workers` and
spreadsheet imports all go through it, so they validate and deduplicate the same way. A worker is
registered only for a programme the operator has published (`program.published`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from faststream import Context
from stdnum.id import nik as stdnum_nik

from lindung_contracts import (
    FieldError,
    ProgramPublished,
    RegistrationRejected,
    RegistrationRequested,
    WorkerRegistered,
)
from lindung_registration import projection
from lindung_registration.db import KnownProgram, Worker, WorkerStatus
from lindung_registration.domain import (
    field_error,
    printable,
    validate_registration,
    worker_id_for,
)
from lindung_runtime import NotReadyYet, UnitOfWork
from lindung_runtime.errors import waited_out
from lindung_runtime.logging import get_logger
from lindung_runtime.privacy import mask_nik

log = get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: Literal["registered", "repeated", "rejected"]
    worker_id: str | None = None
    errors: list[FieldError] = field(default_factory=list)


async def preload_workers(requests: list[RegistrationRequested], uow: UnitOfWork) -> None:
    """One query per table for the batch instead of one per request (the idempotency check and
    the timeline status below)."""
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
    result = validate_registration(request)
    program_id = request.program_id.strip()
    if program_id and not await program_known(uow, program_id):
        unknown = field_error("program_id", "program_unknown")
        result = [unknown, *(result if isinstance(result, list) else [])]
    if isinstance(result, list):
        rejection = RegistrationRejected(
            program_id=printable(request.program_id, 64),
            nik=printable(request.nik, 64),
            errors=result,
            request_id=request_id,
            village=printable(request.village, 200),
            district=printable(request.district, 200),
        )
        projection.record_rejected(uow, rejection, uow.emit(rejection))
        log.info(
            "registration_rejected",
            nik=mask_nik(printable(request.nik, 64)),
            codes=[e.code for e in result],
        )
        return Outcome("rejected", errors=result)

    if await uow.get(Worker, result.worker_id) is not None:
        log.debug("registration_repeated", nik=mask_nik(result.nik), worker_id=result.worker_id)
        return Outcome("repeated", worker_id=result.worker_id)

    worker = uow.create(
        Worker,
        worker_id=result.worker_id,
        program_id=result.program_id,
        nik=result.nik,
        full_name=result.full_name,
        birth_date=result.birth_date,
        gender=result.gender,
        occupation=result.occupation,
        village=result.village,
        district=result.district,
        phone=result.phone,
        registered_at=uow.now(),
    )
    registered = WorkerRegistered(
        worker_id=worker.worker_id,
        program_id=worker.program_id,
        nik=worker.nik,
        full_name=worker.full_name,
        birth_date=worker.birth_date,
        gender=result.gender,
        occupation=worker.occupation,
        village=worker.village,
        district=worker.district,
        phone=worker.phone,
        registered_at=worker.registered_at,
    )
    await projection.record_registered(uow, registered, uow.emit(registered))
    log.debug("worker_registered", nik=mask_nik(worker.nik), worker_id=worker.worker_id)
    return Outcome("registered", worker_id=worker.worker_id)


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
    request: RegistrationRequested,
    uow: UnitOfWork = Context("uow"),
) -> None:
    """Register a valid request once; answer an invalid one with every field error.

    A request for a programme not (yet) published waits for it, as the other services do: an
    operator who publishes a programme and its registrations at once expects them to succeed,
    and the two topics are consumed independently. Once the wait runs out
    (CONSUMER_NOT_READY_MAX_WAIT_SECONDS) the request is rejected as `program_unknown`, so the
    village system hears why, rather than dead-lettered."""
    program_id = request.program_id.strip()
    if program_id and not waited_out() and not await program_known(uow, program_id):
        raise NotReadyYet(f"programme {printable(program_id, 64)!r} not published (yet)")
    await register(request, uow, uow.event_id)
