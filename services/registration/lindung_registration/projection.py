"""The worker timeline and programme funnel, projected from every service's events.

Registration answers `GET /workers/{nik}` and `GET /programs/{id}/summary` from these rows; it
never reads another service's database. Topics are consumed independently, so events of one
worker may arrive in any order: each handler fills in what its event knows.

Registration's own events (WorkerRegistered, RegistrationRejected) are projected in the
transaction that emits them (`record_registered`, `record_rejected`), not consumed back from
Kafka: the timeline has them as soon as they exist, and a quarter of registration's events per
worker (bench/) is no longer decoded, deduplicated and committed a second time.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from faststream import Context
from stdnum.id import nik as stdnum_nik

from lindung_contracts import (
    ContributionInvoiced,
    CoverageActivated,
    CoverageExpiring,
    EligibilityConfirmed,
    EligibilityRejected,
    PaymentReceived,
    RegistrationRejected,
    WorkerEvent,
    WorkerRegistered,
)
from lindung_registration.db import PaymentRecord, RejectedRequest, TimelineEntry, WorkerStatus
from lindung_runtime import UnitOfWork
from lindung_runtime.tracing import current_trace_id


def _occurred_at(uow: UnitOfWork, fallback: datetime | None = None) -> datetime:
    """When the producer says the event happened (CloudEvents `time`), else `fallback`/now."""
    raw = uow.event_headers.get("ce_time")
    if raw:
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if moment.tzinfo is not None:
                return moment
        except ValueError:
            pass
    return fallback or uow.now()


def _record(
    uow: UnitOfWork,
    kind: str,
    details: dict[str, Any],
    *,
    nik: str,
    program_id: str,
    worker_id: str | None = None,
    invoice_id: str | None = None,
    at: datetime | None = None,
    emitted_id: str | None = None,
) -> None:
    """One timeline entry, keyed by its event's id: the consumed one, or `emitted_id` for an
    event this transaction emitted (which happened `at`)."""
    uow.create(
        TimelineEntry,
        event_id=emitted_id or uow.event_id or f"{kind}:{worker_id or nik}",
        kind=kind,
        nik=nik,
        program_id=program_id,
        worker_id=worker_id,
        invoice_id=invoice_id,
        occurred_at=at if emitted_id and at else _occurred_at(uow, at),
        trace_id=current_trace_id(),
        details=json.dumps(details, default=str, ensure_ascii=False),
    )


async def preload_status(events: list[WorkerEvent], uow: UnitOfWork) -> None:
    await uow.preload(WorkerStatus, WorkerStatus.worker_id, [e.worker_id for e in events])


async def _status(uow: UnitOfWork, event: WorkerEvent) -> WorkerStatus:
    status = await uow.get(WorkerStatus, event.worker_id)
    if status is None:
        status = uow.create(
            WorkerStatus, worker_id=event.worker_id, program_id=event.program_id, nik=event.nik
        )
    return status


def _place(status: WorkerStatus, village: str, district: str) -> None:
    if village and not status.village:
        status.village = village
    if district and not status.district:
        status.district = district


async def record_registered(uow: UnitOfWork, event: WorkerRegistered, event_id: str) -> None:
    """Timeline: registered (in the transaction that emitted `event` as `event_id`)."""
    _record(
        uow,
        "registered",
        {"full_name": event.full_name, "village": event.village, "district": event.district},
        nik=event.nik,
        program_id=event.program_id,
        worker_id=event.worker_id,
        at=event.registered_at,
        emitted_id=event_id,
    )
    status = await _status(uow, event)
    status.registered = True
    status.village, status.district = event.village, event.district


def record_rejected(uow: UnitOfWork, event: RegistrationRejected, event_id: str) -> None:
    """Timeline and summary: a request refused for its data (in the transaction that emitted
    `event` as `event_id`)."""
    _record(
        uow,
        "registration_rejected",
        {"errors": [e.model_dump() for e in event.errors]},
        nik=stdnum_nik.compact(event.nik)[:64],
        program_id=event.program_id[:64],
        at=uow.now(),
        emitted_id=event_id,
    )
    uow.create(
        RejectedRequest,
        event_id=event_id,
        program_id=event.program_id[:64],
        village=" ".join(event.village.split()),
        district=" ".join(event.district.split()),
    )


async def on_eligibility_confirmed(
    event: EligibilityConfirmed, uow: UnitOfWork = Context("uow")
) -> None:
    """Timeline: eligible, with the coverage term."""
    _record(
        uow,
        "eligibility_confirmed",
        {"coverage_start": event.coverage_start, "coverage_end": event.coverage_end},
        nik=event.nik,
        program_id=event.program_id,
        worker_id=event.worker_id,
        at=event.decided_at,
    )
    status = await _status(uow, event)
    status.eligibility = "confirmed"
    _place(status, event.village, event.district)


async def on_eligibility_rejected(
    event: EligibilityRejected, uow: UnitOfWork = Context("uow")
) -> None:
    """Timeline: not eligible, with the reasons."""
    _record(
        uow,
        "eligibility_rejected",
        {"reasons": [r.model_dump() for r in event.reasons]},
        nik=event.nik,
        program_id=event.program_id,
        worker_id=event.worker_id,
        at=event.decided_at,
    )
    status = await _status(uow, event)
    status.eligibility = "rejected"
    status.ineligible_reasons = ",".join(r.code for r in event.reasons)


async def on_contribution_invoiced(
    event: ContributionInvoiced, uow: UnitOfWork = Context("uow")
) -> None:
    """Timeline: the worker's line on the sponsor's invoice."""
    _record(
        uow,
        "invoiced",
        {
            "invoice_id": event.invoice_id,
            "periods": event.periods,
            "monthly_amount_idr": event.monthly_amount_idr,
            "amount_idr": event.amount_idr,
            "components": event.components,
        },
        nik=event.nik,
        program_id=event.program_id,
        worker_id=event.worker_id,
        invoice_id=event.invoice_id,
    )
    status = await _status(uow, event)
    status.invoice_id = event.invoice_id
    status.invoiced_idr = event.amount_idr


async def on_payment_received(event: PaymentReceived, uow: UnitOfWork = Context("uow")) -> None:
    """Timeline: a payment of an invoice (shown to every worker on that invoice)."""
    uow.add(
        PaymentRecord(
            event_id=uow.event_id or f"payment:{event.invoice_id}:{event.reference}",
            invoice_id=event.invoice_id,
            amount_idr=event.amount_idr,
            paid_at=event.paid_at,
            announced_at=_occurred_at(uow),
            reference=event.reference,
            trace_id=current_trace_id(),
        )
    )


async def on_coverage_activated(event: CoverageActivated, uow: UnitOfWork = Context("uow")) -> None:
    """Timeline: covered by BPJS Ketenagakerjaan."""
    _record(
        uow,
        "coverage_activated",
        {
            "coverage_start": event.coverage_start,
            "coverage_end": event.coverage_end,
            "invoice_id": event.invoice_id,
        },
        nik=event.nik,
        program_id=event.program_id,
        worker_id=event.worker_id,
        invoice_id=event.invoice_id or None,
    )
    status = await _status(uow, event)
    status.activated = True


async def on_coverage_expiring(event: CoverageExpiring, uow: UnitOfWork = Context("uow")) -> None:
    """Timeline: staff were alerted that this worker's coverage ends soon."""
    _record(
        uow,
        "coverage_expiring",
        {
            "coverage_end": event.coverage_end,
            "days_left": event.days_left,
            "alert_id": event.alert_id,
        },
        nik=event.nik,
        program_id=event.program_id,
        worker_id=event.worker_id,
    )
    status = await _status(uow, event)
    status.expiry_alerts += 1
    _place(status, event.village, event.district)
