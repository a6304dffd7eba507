"""The worker timeline and programme funnel, projected from every service's events.

Registration answers `GET /workers/{nik}` and `GET /programs/{id}/summary` from these rows; it
never reads another service's database. Topics are consumed independently, so events of one
worker may arrive in any order: each handler fills in what its event knows.

Registration's own events (WorkerRegistered, RegistrationRejected) are projected in the
transaction that emits them (`record_registered`, `record_rejected`), not consumed back from
Kafka: the timeline has them as soon as they exist, and a quarter of registration's events per
worker (bench/) is no longer decoded, deduplicated and committed a second time.

The consumers take a batch at once: one timeline row per event (keyed by the event's id, so a
redelivery adds nothing) and one upsert of the funnel rows that changes only the columns the
event kind changes (`domain.StatusChange`), so topics projected at once do not undo each other.

A worker's coverage status (awaiting payment, active, ended, carried into or not carried into a
renewal's term) is the `coverage_rank` column: each coverage event raises it to its own rank
(`domain.STAGES`) and never lowers it, so the status is the same whatever order the invoice,
activation, carry and end topics are projected in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import case
from stdnum.id import nik as stdnum_nik

from lindung_contracts import (
    ContributionInvoiced,
    CoverageActivated,
    CoverageEnded,
    CoverageExpiring,
    EligibilityConfirmed,
    EligibilityRejected,
    MembershipNumberAssigned,
    PaymentReceived,
    RegistrationRejected,
    WorkerEvent,
    WorkerRegistered,
)
from lindung_registration.db import (
    PaymentRecord,
    TermLine,
    TimelineEntry,
    WorkerStatus,
    WorkerTerm,
)
from lindung_registration.domain import (
    CoverageStatus,
    StatusChange,
    coverage_rank,
    merge_status_changes,
    status_row,
)
from lindung_runtime.messages import Message, Outgoing, Transaction, columns

W = TypeVar("W", bound=WorkerEvent)


def _registered_details(event: WorkerRegistered) -> dict[str, Any]:
    return {"full_name": event.full_name, "village": event.village, "district": event.district}


def _rejected_details(event: RegistrationRejected) -> dict[str, Any]:
    return {"errors": [e.model_dump() for e in event.errors]}


def registered_entry(
    event: WorkerRegistered, event_id: str, trace_id: str | None
) -> dict[str, Any]:
    return _entry(
        event_id,
        "registered",
        _registered_details(event),
        trace_id,
        nik=event.nik,
        program_id=event.program_id,
        worker_id=event.worker_id,
        at=event.registered_at,
    )


def registered_change(event_id: str, event: WorkerRegistered) -> tuple[str, StatusChange]:
    return _change(
        event_id,
        event,
        sets={"registered": True, "village": event.village, "district": event.district},
    )


def rejected_entry(
    event: RegistrationRejected, event_id: str, trace_id: str | None, at: datetime
) -> dict[str, Any]:
    return _entry(
        event_id,
        "registration_rejected",
        _rejected_details(event),
        trace_id,
        nik=stdnum_nik.compact(event.nik)[:64],
        program_id=event.program_id[:64],
        at=at,
    )


def rejected_row(event: RegistrationRejected, event_id: str) -> dict[str, Any]:
    """The summary's count of refusals per desa."""
    return {
        "event_id": event_id,
        "program_id": event.program_id[:64],
        "village": " ".join(event.village.split()),
        "district": " ".join(event.district.split()),
    }


def number_entry(
    event: MembershipNumberAssigned,
    event_id: str,
    trace_id: str | None,
    worker_id: str,
    at: datetime,
) -> dict[str, Any]:
    """Timeline: the worker's membership number (nomor KPJ), as BPJS Ketenagakerjaan issued it
    (a worker's, not a term's: no `term`)."""
    return _entry(
        event_id,
        "membership_number_assigned",
        {"kpj": event.kpj, "assigned_on": event.assigned_on, "reference": event.reference},
        trace_id,
        nik=event.nik,
        program_id=event.program_id,
        worker_id=worker_id,
        at=at,
    )


# --- batches --------------------------------------------------------------------------------------


def _entry(
    event_id: str,
    kind: str,
    details: dict[str, Any],
    trace_id: str | None,
    *,
    nik: str,
    program_id: str,
    at: datetime,
    worker_id: str | None = None,
    invoice_id: str | None = None,
) -> dict[str, Any]:
    """One timeline row, keyed by its event's id."""
    return {
        "event_id": event_id,
        "kind": kind,
        "nik": nik,
        "program_id": program_id,
        "worker_id": worker_id,
        "invoice_id": invoice_id,
        "occurred_at": at,
        "trace_id": trace_id,
        "details": json.dumps(details, default=str, ensure_ascii=False),
    }


def _change(
    event_id: str,
    event: WorkerEvent,
    *,
    sets: Mapping[str, Any] | None = None,
    fills: Mapping[str, str] | None = None,
    adds: Mapping[str, int] | None = None,
    raises: Mapping[str, int] | None = None,
) -> tuple[str, StatusChange]:
    """What an event changes in its worker's funnel row, under the event's id."""
    return event_id, StatusChange(
        event.worker_id,
        event.program_id,
        event.nik,
        sets or {},
        fills or {},
        adds or {},
        raises or {},
    )


async def save(
    tx: Transaction, entries: list[dict[str, Any]], changes: list[tuple[str, StatusChange]]
) -> set[str]:
    """Append the timeline rows and apply the funnel changes of the events whose rows were
    new: a redelivered event's row is there already, so it changes nothing (the timeline is its
    own inbox: the projections are consumed with `inbox=False`). A change touches only its own
    columns (a place only while empty, a counter by adding, a rank only upwards), so another
    topic's batch changing the same worker loses nothing. One statement per set of columns
    changed: events of a kind change the same ones, but a renewal's carry changes fewer.
    Returns the ids of the events whose rows were new."""
    fresh = {
        row.event_id
        for row in await tx.insert_new(
            TimelineEntry, entries, returning=[columns(TimelineEntry).event_id]
        )
    }
    merged = merge_status_changes([change for event_id, change in changes if event_id in fresh])
    alike: dict[tuple[frozenset[str], ...], list[StatusChange]] = {}
    for change in merged:
        alike.setdefault(change.columns(), []).append(change)
    for group in alike.values():
        statement = tx.insert(WorkerStatus)
        now, new = columns(WorkerStatus), statement.excluded
        first = group[0]
        update: dict[str, Any] = {name: new[name] for name in first.sets}
        update |= {
            name: case((now[name] == "", new[name]), else_=now[name]) for name in first.fills
        }
        update |= {name: now[name] + new[name] for name in first.adds}
        update |= {
            name: case((new[name] > now[name], new[name]), else_=now[name]) for name in first.raises
        }
        statement = (
            statement.on_conflict_do_update(index_elements=["worker_id"], set_=update)
            if update
            else statement.on_conflict_do_nothing()
        )
        await tx.connection.execute(statement, [status_row(c) for c in group])
    return fresh


@dataclass(frozen=True)
class Seen:
    """What one event puts on its worker's timeline (`details`) and funnel row (`sets`,
    `fills`, `adds`, `raises`: see domain.StatusChange)."""

    details: dict[str, Any]
    sets: Mapping[str, Any] = field(default_factory=dict)
    fills: Mapping[str, str] = field(default_factory=dict)
    adds: Mapping[str, int] = field(default_factory=dict)
    raises: Mapping[str, int] = field(default_factory=dict)
    at: datetime | None = None  # when it happened, if the event says; else its `ce_time`
    invoice_id: str | None = None


async def _project(
    tx: Transaction, batch: list[Message[W]], kind: str, seen: Callable[[W], Seen]
) -> set[str]:
    """One timeline entry and one funnel change per event, saved together (`save`); the ids of
    the events seen for the first time."""
    entries, changes = [], []
    for m in batch:
        event, what = m.event, seen(m.event)
        entries.append(
            _entry(
                m.id,
                kind,
                what.details,
                m.trace_id,
                nik=event.nik,
                program_id=event.program_id,
                worker_id=event.worker_id,
                invoice_id=what.invoice_id,
                at=what.at or m.time,
            )
        )
        changes.append(
            _change(
                m.id, event, sets=what.sets, fills=what.fills, adds=what.adds, raises=what.raises
            )
        )
    return await save(tx, entries, changes)


def _place(e: EligibilityConfirmed | CoverageExpiring | CoverageEnded) -> dict[str, str]:
    return {"village": e.village, "district": e.district}


def _rank(term: int, status: CoverageStatus) -> dict[str, int]:
    return {"coverage_rank": coverage_rank(term, status)}


async def on_eligibility_confirmed(
    batch: list[Message[EligibilityConfirmed]], tx: Transaction
) -> list[Outgoing]:
    """Timeline: eligible, with the coverage term. A renewal's carry (`carried`) leaves the
    funnel's decision as it was (the worker was confirmed for term 1 already) and moves the
    coverage status to "carried into term N". Either way the worker is on the term's handover
    (`worker_term`)."""
    fresh = await _project(
        tx,
        batch,
        "eligibility_confirmed",
        lambda e: Seen(
            {
                "coverage_start": e.coverage_start,
                "coverage_end": e.coverage_end,
                "term": e.term,
                "carried": e.carried,
            },
            sets={} if e.carried else {"eligibility": "confirmed"},
            fills=_place(e),
            raises=_rank(e.term, "carried") if e.carried else {},
            at=e.decided_at,
        ),
    )
    # The handover lists the workers confirmed for a term: a redelivery (not fresh) changes
    # nothing; the batch's last confirmation of a worker's term wins.
    terms = {
        (m.event.worker_id, m.event.term): {
            "worker_id": m.event.worker_id,
            "term": m.event.term,
            "program_id": m.event.program_id,
            "coverage_start": m.event.coverage_start,
            "coverage_end": m.event.coverage_end,
        }
        for m in batch
        if m.id in fresh
    }
    await tx.upsert(WorkerTerm, [terms[k] for k in sorted(terms)], keys=["worker_id", "term"])
    return []


async def on_eligibility_rejected(
    batch: list[Message[EligibilityRejected]], tx: Transaction
) -> list[Outgoing]:
    """Timeline: not eligible, with the reasons. A worker a renewal did not carry (`carried`)
    keeps the decision they had; their coverage status becomes "not carried into term N"."""
    await _project(
        tx,
        batch,
        "eligibility_rejected",
        lambda e: Seen(
            {"reasons": [r.model_dump() for r in e.reasons], "term": e.term, "carried": e.carried},
            sets=(
                {}
                if e.carried
                else {
                    "eligibility": "rejected",
                    "ineligible_reasons": ",".join(r.code for r in e.reasons),
                }
            ),
            raises=_rank(e.term, "not_carried") if e.carried else {},
            at=e.decided_at,
        ),
    )
    return []


async def on_contribution_invoiced(
    batch: list[Message[ContributionInvoiced]], tx: Transaction
) -> list[Outgoing]:
    """Timeline: the worker's line on the sponsor's invoice for the term. Billing invoices a
    worker once per term, so the funnel adds up the amounts of every term. The line is kept in
    columns too (`term_line`), for the staff page's sums per invoice and month."""
    fresh = await _project(
        tx,
        batch,
        "invoiced",
        lambda e: Seen(
            {
                "invoice_id": e.invoice_id,
                "periods": e.periods,
                "monthly_amount_idr": e.monthly_amount_idr,
                "amount_idr": e.amount_idr,
                "components": e.components,
                "term": e.term,
            },
            sets={"invoice_id": e.invoice_id},
            adds={"invoiced_idr": e.amount_idr},
            raises=_rank(e.term, "awaiting_payment"),
            invoice_id=e.invoice_id,
        ),
    )
    # As for the handover: a redelivery (not fresh) changes nothing; the batch's last line of a
    # worker's term wins. A line of no period has no first month: not one of the page's.
    lines = {
        (m.event.worker_id, m.event.term): term_line(m.event)
        for m in batch
        if m.id in fresh and m.event.periods
    }
    await tx.upsert(TermLine, [lines[k] for k in sorted(lines)], keys=["worker_id", "term"])
    return []


def term_line(event: ContributionInvoiced) -> dict[str, Any]:
    """The `term_line` row of an invoice line (one that invoices at least one period)."""
    return {
        "worker_id": event.worker_id,
        "term": event.term,
        "program_id": event.program_id,
        "invoice_id": event.invoice_id,
        "first_month": first_month(event.periods),
        "months": len(event.periods),
        "monthly_amount_idr": event.monthly_amount_idr,
        "amount_idr": event.amount_idr,
    }


def first_month(periods: list[str]) -> date:
    """The 1st day of the earliest period ("YYYY-MM")."""
    year, month = min(periods).split("-")
    return date(int(year), int(month), 1)


async def on_payment_received(
    batch: list[Message[PaymentReceived]], tx: Transaction
) -> list[Outgoing]:
    """Timeline: a payment of an invoice (shown to every worker on that invoice)."""
    await tx.insert_new(
        PaymentRecord,
        [
            {
                "event_id": m.id,
                "invoice_id": m.event.invoice_id,
                "amount_idr": m.event.amount_idr,
                "paid_at": m.event.paid_at,
                "announced_at": m.time,
                "reference": m.event.reference,
                "trace_id": m.trace_id,
            }
            for m in batch
        ],
    )
    return []


async def on_coverage_activated(
    batch: list[Message[CoverageActivated]], tx: Transaction
) -> list[Outgoing]:
    """Timeline: covered by BPJS Ketenagakerjaan for the term."""
    await _project(
        tx,
        batch,
        "coverage_activated",
        lambda e: Seen(
            {
                "coverage_start": e.coverage_start,
                "coverage_end": e.coverage_end,
                "invoice_id": e.invoice_id,
                "term": e.term,
            },
            sets={"activated": True},
            raises=_rank(e.term, "active"),
            invoice_id=e.invoice_id or None,
        ),
    )
    return []


async def on_coverage_expiring(
    batch: list[Message[CoverageExpiring]], tx: Transaction
) -> list[Outgoing]:
    """Timeline: staff were alerted that this worker's coverage ends soon."""
    await _project(
        tx,
        batch,
        "coverage_expiring",
        lambda e: Seen(
            {
                "coverage_end": e.coverage_end,
                "days_left": e.days_left,
                "alert_id": e.alert_id,
                "term": e.term,
                "renewed_until": e.renewed_until,
            },
            adds={"expiry_alerts": 1},
            fills=_place(e),
        ),
    )
    return []


async def on_coverage_ended(batch: list[Message[CoverageEnded]], tx: Transaction) -> list[Outgoing]:
    """Timeline: the worker's cover ended with its term, unrenewed (the reason says whether it
    was ever paid)."""
    await _project(
        tx,
        batch,
        "coverage_ended",
        lambda e: Seen(
            {
                "coverage_end": e.coverage_end,
                "term": e.term,
                "reason": e.reason.model_dump(),
                "alert_id": e.alert_id,
            },
            fills=_place(e),
            raises=_rank(e.term, "ended"),
        ),
    )
    return []
