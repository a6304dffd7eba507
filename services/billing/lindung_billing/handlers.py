"""Billing's handlers: invoice each confirmed worker, activate on payment, warn before expiry.

Instances sharing the database write one invoice at once: lines come from every partition of
`eligibility.confirmed`, payments from another. So each batch that touches an invoice locks its
row first (`SELECT ... FOR UPDATE` in the batch's preload, in invoice-id order so that batches
never wait on each other crosswise) and holds it until commit. A lock, not atomic increments or
sums over the lines, because activation is one decision over three things (total, paid, lines
still waiting) that must not change while it is made; under the lock plain arithmetic is safe
and a payment sees every line. SQLite ignores FOR UPDATE: its writers take turns anyway.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date
from typing import Protocol

from faststream import Context
from sqlalchemy import Table, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from lindung_billing.db import ExpiryAlert, Invoice, InvoiceLine, Payment, Program
from lindung_billing.domain import (
    alert_id,
    alert_windows_due,
    contribution_line,
    invoice_id_for,
    is_paid_up,
)
from lindung_contracts import (
    ContributionInvoiced,
    CoverageActivated,
    CoverageExpiring,
    DayStarted,
    EligibilityConfirmed,
    PaymentReceived,
    ProgramPublished,
)
from lindung_runtime import NotReadyYet, PermanentError, UnitOfWork
from lindung_runtime.logging import get_logger
from lindung_runtime.privacy import mask_nik

log = get_logger(__name__)


class UnknownInvoice(PermanentError):
    code = "unknown_invoice"


async def on_program_published(program: ProgramPublished, uow: UnitOfWork = Context("uow")) -> None:
    row = await uow.get(Program, program.program_id) or Program(
        program_id=program.program_id,
        sponsor=program.sponsor,
        reported_income_idr=program.reported_income_idr,
        coverage_start=program.coverage_start,
        coverage_end=program.coverage_end,
        alert_days_before_end="",
    )
    row.sponsor = program.sponsor
    row.reported_income_idr = program.reported_income_idr
    row.coverage_start = program.coverage_start
    row.coverage_end = program.coverage_end
    row.alert_days_before_end = ",".join(str(d) for d in program.alert_days_before_end)
    uow.add(row)


async def preload_lines(confirmations: list[EligibilityConfirmed], uow: UnitOfWork) -> None:
    """Load the batch's lines, and open and lock the invoices it will add lines to."""
    await uow.preload(InvoiceLine, InvoiceLine.worker_id, [c.worker_id for c in confirmations])
    known = [
        program_id
        for program_id in sorted({c.program_id for c in confirmations})
        if await uow.get(Program, program_id) is not None  # unknown ones wait: NotReadyYet
    ]
    await _open_invoices(uow, known)
    await _lock_invoices(uow, (invoice_id_for(program_id) for program_id in known))


async def preload_payments(payments: list[PaymentReceived], uow: UnitOfWork) -> None:
    """Lock the invoices the batch pays, before any handler reads them."""
    await _lock_invoices(uow, (p.invoice_id for p in payments))


async def _open_invoices(uow: UnitOfWork, program_ids: list[str]) -> None:
    """Create the programmes' invoices that do not exist yet, in one statement that leaves an
    existing one alone: two instances opening the same invoice at once both go on, instead of
    one failing on the primary key and retrying its whole batch."""
    if not program_ids:
        return
    connection = await uow.session.connection()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    rows = [
        {"invoice_id": invoice_id_for(p), "program_id": p, "total_idr": 0, "paid_idr": 0}
        for p in sorted(program_ids, key=invoice_id_for)  # one order: no crosswise waits
    ]
    await connection.execute(dialect.insert(Invoice).on_conflict_do_nothing(), rows)


async def _lock_invoices(uow: UnitOfWork, invoice_ids: Iterable[str]) -> None:
    """Lock each invoice row until commit, in invoice-id order (see the module's docstring);
    later `uow.get(Invoice, id, for_update=True)` calls answer from the batch's locked rows."""
    for invoice_id in sorted(set(invoice_ids)):
        await uow.get(Invoice, invoice_id, for_update=True)


async def on_eligibility_confirmed(
    confirmed: EligibilityConfirmed, uow: UnitOfWork = Context("uow")
) -> None:
    """Add the worker's line to the programme term's invoice (locked: see the module's
    docstring); if the sponsor has already paid for it, the line is active at once."""
    if await uow.get(InvoiceLine, confirmed.worker_id) is not None:
        return
    program = await uow.get(Program, confirmed.program_id)
    if program is None:
        raise NotReadyYet(f"programme {confirmed.program_id!r} not published (yet)")
    line = contribution_line(
        program.reported_income_idr, confirmed.coverage_start, confirmed.coverage_end
    )
    invoice_id = invoice_id_for(program.program_id)
    invoice = await uow.get(Invoice, invoice_id, for_update=True) or Invoice(
        invoice_id=invoice_id, program_id=program.program_id
    )
    invoice.total_idr += line.amount_idr
    row = uow.create(
        InvoiceLine,
        worker_id=confirmed.worker_id,
        invoice_id=invoice_id,
        program_id=program.program_id,
        nik=confirmed.nik,
        full_name=confirmed.full_name,
        village=confirmed.village,
        district=confirmed.district,
        coverage_start=confirmed.coverage_start,
        coverage_end=confirmed.coverage_end,
        periods=json.dumps(line.periods),
        amount_idr=line.amount_idr,
    )
    uow.add(invoice)
    uow.emit(
        ContributionInvoiced(
            invoice_id=invoice_id,
            worker_id=confirmed.worker_id,
            program_id=program.program_id,
            nik=confirmed.nik,
            periods=line.periods,
            monthly_amount_idr=line.monthly_amount_idr,
            amount_idr=line.amount_idr,
            components=line.components,
        )
    )
    if is_paid_up(invoice.paid_idr, invoice.total_idr):  # paid ahead, this line included
        row.activated_at = uow.now()
        _emit_activated(uow, row)
    log.debug("contribution_invoiced", nik=mask_nik(confirmed.nik), amount_idr=line.amount_idr)


async def on_payment_received(payment: PaymentReceived, uow: UnitOfWork = Context("uow")) -> None:
    """Record the payment; once the invoice is covered, activate every line waiting on it
    (the invoice is locked: see the module's docstring)."""
    invoice = await uow.get(Invoice, payment.invoice_id, for_update=True)
    if invoice is None:
        raise UnknownInvoice(f"no invoice {payment.invoice_id!r}")
    if await uow.get(Payment, (payment.invoice_id, payment.reference)) is not None:
        log.info("payment_repeated", invoice_id=payment.invoice_id, reference=payment.reference)
        return
    uow.add(
        Payment(
            invoice_id=payment.invoice_id,
            reference=payment.reference,
            amount_idr=payment.amount_idr,
            paid_at=payment.paid_at,
        )
    )
    invoice.paid_idr += payment.amount_idr
    uow.add(invoice)
    if not is_paid_up(invoice.paid_idr, invoice.total_idr):
        log.warning(
            "invoice_partly_paid",
            invoice_id=invoice.invoice_id,
            paid_idr=invoice.paid_idr,
            total_idr=invoice.total_idr,
        )
        return
    activated = await _activate_waiting_lines(uow, invoice.invoice_id)
    log.info("invoice_paid", invoice_id=invoice.invoice_id, activated=activated)


async def _activate_waiting_lines(uow: UnitOfWork, invoice_id: str) -> int:
    """Activate the invoice's lines not active yet, in one statement that says which it changed:
    each of those gets its CoverageActivated, and a line is never activated (nor announced) twice,
    even by a second payment of the same batch."""
    await uow.flush()  # lines created earlier in this transaction are waiting too
    table: Table = InvoiceLine.__table__  # type: ignore[attr-defined]
    lines = table.c
    activate = (
        update(table)
        .where(lines.invoice_id == invoice_id, lines.activated_at.is_(None))
        .values(activated_at=uow.now())
        .returning(
            lines.worker_id,
            lines.program_id,
            lines.nik,
            lines.coverage_start,
            lines.coverage_end,
            lines.invoice_id,
        )
    )
    connection = await uow.session.connection()
    activated = (await connection.execute(activate)).all()
    for line in activated:
        _emit_activated(uow, line)
    return len(activated)


class _ActivatedLine(Protocol):
    worker_id: str
    program_id: str
    nik: str
    coverage_start: date
    coverage_end: date
    invoice_id: str


def _emit_activated(uow: UnitOfWork, line: _ActivatedLine) -> None:
    uow.emit(
        CoverageActivated(
            worker_id=line.worker_id,
            program_id=line.program_id,
            nik=line.nik,
            coverage_start=line.coverage_start,
            coverage_end=line.coverage_end,
            invoice_id=line.invoice_id,
        )
    )


async def on_day_started(day: DayStarted, uow: UnitOfWork = Context("uow")) -> None:
    """Warn about every active coverage whose end is exactly one alert window away."""
    session = uow.session
    await uow.flush()  # activations and alerts earlier in this batch must count below
    for program in (await session.exec(select(Program))).all():
        for days_left, coverage_end in alert_windows_due(day.date, program.alert_days).items():
            active = col(InvoiceLine.activated_at).is_not(None)
            in_window = (
                InvoiceLine.program_id == program.program_id,
                InvoiceLine.coverage_end == coverage_end,
                active,
            )
            lines = (await session.exec(select(InvoiceLine).where(*in_window))).all()
            if not lines:
                continue
            already = set(
                (
                    await session.exec(
                        select(ExpiryAlert.worker_id).where(
                            ExpiryAlert.coverage_end == coverage_end,
                            ExpiryAlert.days_left == days_left,
                        )
                    )
                ).all()
            )
            window = alert_id(program.program_id, coverage_end, days_left)
            for line in lines:
                if line.worker_id in already:
                    continue
                uow.create(
                    ExpiryAlert,
                    worker_id=line.worker_id,
                    coverage_end=coverage_end,
                    days_left=days_left,
                )
                uow.emit(
                    CoverageExpiring(
                        worker_id=line.worker_id,
                        program_id=line.program_id,
                        nik=line.nik,
                        coverage_end=coverage_end,
                        days_left=days_left,
                        full_name=line.full_name,
                        village=line.village,
                        district=line.district,
                        alert_id=window,
                        alert_size=len(lines),
                    )
                )
            log.info("coverage_expiring", alert_id=window, workers=len(lines))
