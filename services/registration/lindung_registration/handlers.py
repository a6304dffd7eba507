"""Registration's handlers: load, ask the domain, save, emit (and project what was emitted into
the worker timeline, in the same transaction).

`register` is the one registration use case; the Kafka intake, `POST /programs/{id}/workers` and
spreadsheet imports all go through it, so they validate and deduplicate the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from faststream import Context
from stdnum.id import nik as stdnum_nik

from lindung_contracts import (
    FieldError,
    RegistrationRejected,
    RegistrationRequested,
    WorkerRegistered,
)
from lindung_registration import projection
from lindung_registration.db import Worker, WorkerStatus
from lindung_registration.domain import printable, validate_registration, worker_id_for
from lindung_runtime import UnitOfWork
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
    await uow.preload(Worker, Worker.worker_id, ids)
    await uow.preload(WorkerStatus, WorkerStatus.worker_id, ids)


async def register(
    request: RegistrationRequested, uow: UnitOfWork, request_id: str | None
) -> Outcome:
    """Register a valid request once; answer an invalid one with every field error."""
    result = validate_registration(request)
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


async def on_registration_requested(
    request: RegistrationRequested,
    uow: UnitOfWork = Context("uow"),
) -> None:
    """Register a valid request once; answer an invalid one with every field error."""
    await register(request, uow, uow.event_id)
