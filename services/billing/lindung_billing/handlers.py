"""Billing's handlers: invoice each confirmed worker, activate on payment, warn before expiry."""

from __future__ import annotations

import json

from faststream import Context
from sqlmodel import col, select

from lindung_billing.db import ExpiryAlert, Invoice, InvoiceLine, Payment, Program
from lindung_billing.domain import alert_id, alert_windows_due, contribution_line, invoice_id_for
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
    await uow.preload(InvoiceLine, InvoiceLine.worker_id, [c.worker_id for c in confirmations])


async def on_eligibility_confirmed(
    confirmed: EligibilityConfirmed, uow: UnitOfWork = Context("uow")
) -> None:
    """Add the worker's line to the programme term's invoice."""
    if await uow.get(InvoiceLine, confirmed.worker_id) is not None:
        return
    program = await uow.get(Program, confirmed.program_id)
    if program is None:
        raise NotReadyYet(f"programme {confirmed.program_id!r} not published (yet)")
    line = contribution_line(
        program.reported_income_idr, confirmed.coverage_start, confirmed.coverage_end
    )
    invoice_id = invoice_id_for(program.program_id)
    invoice = await uow.get(Invoice, invoice_id) or Invoice(
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
    if invoice.paid_idr >= invoice.total_idr:  # the sponsor already paid enough for this line
        _activate(uow, row)
    log.debug("contribution_invoiced", nik=mask_nik(confirmed.nik), amount_idr=line.amount_idr)


async def on_payment_received(payment: PaymentReceived, uow: UnitOfWork = Context("uow")) -> None:
    """Record the payment; once the invoice is covered, activate every line waiting on it."""
    session = uow.session
    invoice = await uow.get(Invoice, payment.invoice_id)
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
    if invoice.paid_idr < invoice.total_idr:
        log.warning(
            "invoice_partly_paid",
            invoice_id=invoice.invoice_id,
            paid_idr=invoice.paid_idr,
            total_idr=invoice.total_idr,
        )
        return
    await uow.flush()  # lines activated earlier in this batch are not waiting any more
    waiting = (
        await session.exec(
            select(InvoiceLine).where(
                InvoiceLine.invoice_id == invoice.invoice_id,
                col(InvoiceLine.activated_at).is_(None),
            )
        )
    ).all()
    for line in waiting:
        _activate(uow, line)
    log.info("invoice_paid", invoice_id=invoice.invoice_id, activated=len(waiting))


def _activate(uow: UnitOfWork, line: InvoiceLine) -> None:
    line.activated_at = uow.now()
    uow.add(line)
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
