"""Billing's handlers: invoice each confirmed worker, activate on payment, warn before expiry.

Instances sharing the database write one invoice at once: lines come from every partition of
`eligibility.confirmed`, payments from another. So each batch that touches an invoice locks its
row first (`SELECT ... FOR UPDATE`, in invoice-id order so that batches never wait on each
other crosswise) and holds it until commit. A lock, not only atomic increments, because
activation is one decision over three things (total, paid, lines still waiting) that must not
change while it is made; under the lock the totals read, the lines read after them and the
increments agree, and a payment sees every line. SQLite ignores FOR UPDATE: its writers take
turns anyway.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, Protocol

from sqlalchemy import bindparam, select, update

from lindung_billing.db import ExpiryAlert, Invoice, InvoiceLine, Payment, Program, ProgramTerm
from lindung_billing.domain import (
    BilledLine,
    Confirmation,
    InvoiceTotals,
    PaymentIn,
    Term,
    alert_id,
    alert_windows_due,
    bill_lines,
    ending_reason,
    invoice_id_for,
    is_paid_up,
    record_payments,
    renewed_until,
    terms_ending,
)
from lindung_contracts import (
    ContributionInvoiced,
    CoverageActivated,
    CoverageEnded,
    CoverageExpiring,
    DayStarted,
    EligibilityConfirmed,
    EligibilityRejected,
    PaymentReceived,
    ProgramPublished,
    ProgramRenewed,
    Reason,
    renewal_outcome,
)
from lindung_runtime import NotReadyYet, PermanentError
from lindung_runtime.logging import get_logger
from lindung_runtime.messages import Message, Outgoing, Transaction, columns, latest

log = get_logger(__name__)

PROGRAM, TERM, INVOICE, LINE, PAYMENT = (
    columns(m) for m in (Program, ProgramTerm, Invoice, InvoiceLine, Payment)
)


class UnknownInvoice(PermanentError):
    code = "unknown_invoice"


class TermOverlaps(PermanentError):
    """A renewal overlapping a term the programme has: refused (eligibility refuses it alike)."""

    code = "term_overlaps"


async def on_program_published(
    batch: list[Message[ProgramPublished]], tx: Transaction
) -> list[Outgoing]:
    """A new or amended programme: its term 1 (the batch's last word on each programme wins)."""
    programs = latest(batch, lambda p: p.program_id)
    await tx.upsert(
        Program,
        [
            {
                "program_id": p.program_id,
                "sponsor": p.sponsor,
                "reported_income_idr": p.reported_income_idr,
                "coverage_start": p.coverage_start,
                "coverage_end": p.coverage_end,
                "alert_days_before_end": ",".join(str(d) for d in p.alert_days_before_end),
            }
            for p in programs
        ],
        keys=["program_id"],
    )
    await tx.upsert(
        ProgramTerm,
        [
            {
                "program_id": p.program_id,
                "term": 1,
                "term_start": p.coverage_start,
                "term_end": p.coverage_end,
                "reported_income_idr": p.reported_income_idr,
            }
            for p in programs
        ],
        keys=["program_id", "term"],
    )
    return []


async def on_program_renewed(
    batch: list[Message[ProgramRenewed]], tx: Transaction
) -> list[Outgoing]:
    """Record the programme's next term (its invoice opens with its first line). A repeated
    renewal changes nothing; an overlapping one is refused (`TermOverlaps`, dead-lettered)."""
    for message in batch:  # a programme's renewals come in order, one partition
        renewal = message.event
        terms = await tx.rows(
            select(*TERM).where(TERM.program_id == renewal.program_id).order_by(TERM.term)
        )
        if not terms:
            raise NotReadyYet(f"programme {renewal.program_id!r} not published (yet)")
        outcome = renewal_outcome(terms, renewal.term_start, renewal.term_end)
        if outcome.kind == "overlaps":
            raise TermOverlaps(outcome.refusal)
        if outcome.kind == "new":
            await tx.insert_new(
                ProgramTerm,
                [
                    {
                        "program_id": renewal.program_id,
                        "term": outcome.term,
                        "term_start": renewal.term_start,
                        "term_end": renewal.term_end,
                        "reported_income_idr": renewal.reported_income_idr
                        or terms[-1].reported_income_idr,
                    }
                ],
            )
        log.info("program_renewed", program_id=renewal.program_id, term=outcome.term)
    return []


async def _lock_invoices(
    tx: Transaction, invoice_ids: list[str], open_: Mapping[str, tuple[str, int]] | None = None
) -> dict[str, InvoiceTotals]:
    """Lock the invoices until commit, in invoice-id order (see the module's docstring), and
    return their totals. With `open_` ((programme, term) by invoice id), first create those
    that do not exist yet, in one statement that leaves an existing one alone: two instances
    opening the same invoice at once both go on, instead of one failing on the primary key."""
    if open_:
        await tx.insert_new(
            Invoice,
            [
                {
                    "invoice_id": invoice_id,
                    "program_id": open_[invoice_id][0],
                    "term": open_[invoice_id][1],
                    "total_idr": 0,
                    "paid_idr": 0,
                }
                for invoice_id in sorted(open_)  # one order: no crosswise waits
            ],
        )
    rows = await tx.rows(
        select(INVOICE.invoice_id, INVOICE.total_idr, INVOICE.paid_idr)
        .where(INVOICE.invoice_id.in_(sorted(set(invoice_ids))))
        .order_by(INVOICE.invoice_id)
        .with_for_update()
    )
    return {row.invoice_id: InvoiceTotals(row.total_idr, row.paid_idr) for row in rows}


async def _add_to_invoices(
    tx: Transaction, column: str, invoices: dict[str, InvoiceTotals], before: dict[str, int]
) -> None:
    """Add to each invoice's `column` what the batch added (atomic `SET x = x + :added`)."""
    added = [
        {"id": invoice_id, "added": getattr(totals, column) - before[invoice_id]}
        for invoice_id, totals in invoices.items()
        if getattr(totals, column) != before[invoice_id]
    ]
    if added:
        await tx.connection.execute(
            update(Invoice)
            .where(INVOICE.invoice_id == bindparam("id"))
            .values({column: INVOICE[column] + bindparam("added")}),
            added,
        )


async def on_eligibility_confirmed(
    batch: list[Message[EligibilityConfirmed]], tx: Transaction
) -> list[Outgoing]:
    """Add each confirmed worker's line to the programme term's invoice (locked: see the
    module's docstring); a line on an invoice paid ahead is active at once."""
    wanted = sorted({(m.event.program_id, m.event.term) for m in batch})
    known = {
        (row.program_id, row.term): row
        for row in await tx.rows(
            select(TERM.program_id, TERM.term, TERM.reported_income_idr).where(
                TERM.program_id.in_({p for p, _ in wanted})
            )
        )
    }
    if missing := [w for w in wanted if w not in known]:
        raise NotReadyYet(f"programme {missing[0][0]!r} term {missing[0][1]} not published (yet)")
    opening = {invoice_id_for(p, t): (p, t) for p, t in wanted}
    invoices = await _lock_invoices(tx, list(opening), open_=opening)
    # Read under the invoices' locks: a line another instance added meanwhile is seen here.
    billed_before = {
        (row.worker_id, row.term)
        for row in await tx.rows(
            select(LINE.worker_id, LINE.term).where(
                LINE.worker_id.in_({m.event.worker_id for m in batch})
            )
        )
    }
    new: dict[tuple[str, int], Message[EligibilityConfirmed]] = {}
    for message in batch:  # once per worker and term, whatever the batch repeats
        if (key := (message.event.worker_id, message.event.term)) not in billed_before:
            new.setdefault(key, message)
    before = {invoice_id: totals.total_idr for invoice_id, totals in invoices.items()}
    billed = bill_lines(
        [
            Confirmation(
                worker_id=c.worker_id,
                program_id=c.program_id,
                reported_income_idr=known[(c.program_id, c.term)].reported_income_idr,
                coverage_start=c.coverage_start,
                coverage_end=c.coverage_end,
                term=c.term,
            )
            for c in (m.event for m in new.values())
        ],
        invoices,
    )
    now = tx.now()
    await tx.insert_new(
        InvoiceLine,
        [
            {
                "worker_id": b.confirmation.worker_id,
                "term": b.confirmation.term,
                "invoice_id": b.invoice_id,
                "program_id": b.confirmation.program_id,
                "nik": (c := new[_key(b)].event).nik,
                "full_name": c.full_name,
                "village": c.village,
                "district": c.district,
                "coverage_start": c.coverage_start,
                "coverage_end": c.coverage_end,
                "periods": json.dumps(b.line.periods),
                "amount_idr": b.line.amount_idr,
                "activated_at": now if b.active else None,
            }
            for b in billed
        ],
    )
    await _add_to_invoices(tx, "total_idr", invoices, before)
    replies = []
    for b in billed:
        message = new[_key(b)]
        c = message.event
        replies.append(
            message.reply(
                ContributionInvoiced(
                    invoice_id=b.invoice_id,
                    worker_id=c.worker_id,
                    program_id=c.program_id,
                    nik=c.nik,
                    periods=b.line.periods,
                    monthly_amount_idr=b.line.monthly_amount_idr,
                    amount_idr=b.line.amount_idr,
                    components=b.line.components,
                    term=c.term,
                )
            )
        )
        if b.active:
            replies.append(message.reply(_activated(c, b.invoice_id)))
    return replies


def _key(billed: BilledLine) -> tuple[str, int]:
    return billed.confirmation.worker_id, billed.confirmation.term


def _activated(line: _ActivatedLine, invoice_id: str) -> CoverageActivated:
    return CoverageActivated(
        worker_id=line.worker_id,
        program_id=line.program_id,
        nik=line.nik,
        coverage_start=line.coverage_start,
        coverage_end=line.coverage_end,
        invoice_id=invoice_id,
        term=line.term,
    )


async def on_payment_received(
    batch: list[Message[PaymentReceived]], tx: Transaction
) -> list[Outgoing]:
    """Record the payments; once an invoice is covered, activate every line waiting on it
    (the invoices are locked: see the module's docstring)."""
    invoice_ids = sorted({m.event.invoice_id for m in batch})
    invoices = await _lock_invoices(tx, invoice_ids)
    if unknown := [i for i in invoice_ids if i not in invoices]:
        raise UnknownInvoice(f"no invoice {unknown[0]!r}")
    known = {
        (row.invoice_id, row.reference)
        for row in await tx.rows(
            select(PAYMENT.invoice_id, PAYMENT.reference).where(
                PAYMENT.invoice_id.in_(invoice_ids),
                PAYMENT.reference.in_({m.event.reference for m in batch}),
            )
        )
    }
    before = {invoice_id: totals.paid_idr for invoice_id, totals in invoices.items()}
    paying = {(m.event.invoice_id, m.event.reference): m for m in batch}
    recorded = record_payments(
        [PaymentIn(m.event.invoice_id, m.event.reference, m.event.amount_idr) for m in batch],
        invoices,
        known,
    )
    if repeated := len(batch) - len(recorded):
        log.info("payments_repeated", payments=repeated)
    await tx.insert_new(
        Payment,
        [
            {
                "invoice_id": p.invoice_id,
                "reference": p.reference,
                "amount_idr": p.amount_idr,
                "paid_at": paying[(p.invoice_id, p.reference)].event.paid_at,
            }
            for p in recorded
        ],
    )
    await _add_to_invoices(tx, "paid_idr", invoices, before)
    replies = []
    # The last payment of each invoice in the batch answers for its activations.
    for payment in {p.invoice_id: p for p in recorded}.values():
        totals = invoices[payment.invoice_id]
        if not is_paid_up(totals.paid_idr, totals.total_idr):
            log.warning(
                "invoice_partly_paid",
                invoice_id=payment.invoice_id,
                paid_idr=totals.paid_idr,
                total_idr=totals.total_idr,
            )
            continue
        cause = paying[(payment.invoice_id, payment.reference)]
        activated = await _activate_waiting_lines(tx, payment.invoice_id)
        replies += [cause.reply(_activated(line, line.invoice_id)) for line in activated]
        log.info("invoice_paid", invoice_id=payment.invoice_id, activated=len(activated))
    return replies


async def _activate_waiting_lines(tx: Transaction, invoice_id: str) -> Sequence[Any]:
    """Activate the invoice's lines not active yet, in one statement that says which it
    changed: each of those gets its CoverageActivated, and a line is never activated (nor
    announced) twice."""
    lines = LINE
    return await tx.rows(
        update(InvoiceLine)
        .where(lines.invoice_id == invoice_id, lines.activated_at.is_(None))
        .values(activated_at=tx.now())
        .returning(
            lines.worker_id,
            lines.term,
            lines.program_id,
            lines.nik,
            lines.coverage_start,
            lines.coverage_end,
            lines.invoice_id,
        )
    )


class _ActivatedLine(Protocol):
    """A confirmation, or a line as the activating UPDATE returns it."""

    @property
    def worker_id(self) -> str: ...
    @property
    def program_id(self) -> str: ...
    @property
    def nik(self) -> str: ...
    @property
    def coverage_start(self) -> date: ...
    @property
    def coverage_end(self) -> date: ...
    @property
    def term(self) -> int: ...


async def on_day_started(batch: list[Message[DayStarted]], tx: Transaction) -> list[Outgoing]:
    """Warn about every active coverage whose end is exactly one alert window away, once per
    worker and window (`expiry_alert`), however often a day is announced; then end the cover
    of every term that is over with no renewal after it (`CoverageEnded`, once per line)."""
    programs = await tx.rows(select(PROGRAM.program_id, PROGRAM.alert_days_before_end))
    terms: dict[str, list[Term]] = {}
    for t in await tx.rows(select(TERM.program_id, TERM.term, TERM.term_start, TERM.term_end)):
        terms.setdefault(t.program_id, []).append(Term(t.term, t.term_start, t.term_end))
    replies: list[Outgoing] = []
    for day in {m.event.date: m for m in batch}.values():  # each day once, in the batch's order
        for program in programs:
            days = [int(d) for d in program.alert_days_before_end.split(",") if d]
            for days_left, coverage_end in alert_windows_due(day.event.date, days).items():
                replies += await _alert(tx, day, program.program_id, terms, coverage_end, days_left)
        replies += await _end_terms(tx, day, terms)
    return replies


async def _alert(
    tx: Transaction,
    day: Message[DayStarted],
    program_id: str,
    terms: Mapping[str, list[Term]],
    coverage_end: date,
    days_left: int,
) -> list[Outgoing]:
    lines, alerts = LINE, columns(ExpiryAlert)
    in_window = await tx.rows(
        select(
            lines.worker_id,
            lines.term,
            lines.program_id,
            lines.nik,
            lines.full_name,
            lines.village,
            lines.district,
        ).where(
            lines.program_id == program_id,
            lines.coverage_end == coverage_end,
            lines.activated_at.is_not(None),
        )
    )
    if not in_window:
        return []
    window = alert_id(program_id, coverage_end, days_left)
    # Only the rows this statement inserted are new alerts: an alert sent before, or by
    # another instance meanwhile, is left alone and not announced again.
    new = await tx.insert_new(
        ExpiryAlert,
        [
            {"worker_id": line.worker_id, "coverage_end": coverage_end, "days_left": days_left}
            for line in in_window
        ],
        returning=[alerts.worker_id],
    )
    fresh = {row.worker_id for row in new}
    log.info("coverage_expiring", alert_id=window, workers=len(in_window))
    return [
        day.reply(
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
                alert_size=len(in_window),
                term=line.term,
                renewed_until=renewed_until(terms.get(program_id, []), line.term),
            )
        )
        for line in in_window
        if line.worker_id in fresh
    ]


async def _end_terms(
    tx: Transaction, day: Message[DayStarted], terms: Mapping[str, list[Term]]
) -> list[Outgoing]:
    """End the cover of every line whose term is over by `day` and that nothing carries on:
    the lines of a term with no renewal after it (one statement per term, which then closes,
    so the days after it do not look at its lines again), and the lines of workers a renewal
    did not carry (`not_carried`). Each statement says which lines it ended, so each gets its
    CoverageEnded once, however often the day is announced or whichever instance gets there
    first."""
    lines = LINE
    ending = update(InvoiceLine).values(ended_at=tx.now())
    returned = (
        lines.worker_id,
        lines.term,
        lines.program_id,
        lines.nik,
        lines.full_name,
        lines.village,
        lines.district,
        lines.coverage_end,
        lines.activated_at,
        lines.not_carried,
    )
    closed = {
        (row.program_id, row.term)
        for row in await tx.rows(
            select(TERM.program_id, TERM.term).where(TERM.closed_on.is_not(None))
        )
    }
    ended = list(
        await tx.rows(
            ending.where(
                lines.not_carried.is_not(None),
                lines.ended_at.is_(None),
                lines.coverage_end < day.event.date,
            ).returning(*returned)
        )
    )
    for program_id, program_terms in sorted(terms.items()):
        for term in terms_ending(program_terms, day.event.date):
            if (program_id, term.term) in closed:
                continue
            ended += await tx.rows(
                ending.where(
                    lines.program_id == program_id,
                    lines.term == term.term,
                    lines.ended_at.is_(None),
                ).returning(*returned)
            )
            await tx.connection.execute(
                update(ProgramTerm)
                .where(TERM.program_id == program_id, TERM.term == term.term)
                .values(closed_on=day.event.date)
            )
    windows: dict[str, list[Any]] = {}
    for line in ended:  # one staff mail per programme and end date
        windows.setdefault(f"{line.program_id}:{line.coverage_end.isoformat()}:ended", []).append(
            line
        )
    replies: list[Outgoing] = []
    for window, in_window in sorted(windows.items()):
        log.info("coverage_ended", alert_id=window, workers=len(in_window))
        for line in sorted(in_window, key=lambda line: line.worker_id):
            reason = ending_reason(line.activated_at is not None, line.not_carried)
            replies.append(
                day.reply(
                    CoverageEnded(
                        worker_id=line.worker_id,
                        program_id=line.program_id,
                        nik=line.nik,
                        coverage_end=line.coverage_end,
                        term=line.term,
                        reason=Reason(code=reason[0], message=reason[1]),
                        full_name=line.full_name,
                        village=line.village,
                        district=line.district,
                        alert_id=window,
                        alert_size=len(in_window),
                    )
                )
            )
    return replies


async def on_eligibility_rejected(
    batch: list[Message[EligibilityRejected]], tx: Transaction
) -> list[Outgoing]:
    """A renewal that did not carry a worker on: mark the worker's line of the term before,
    whose end is then the end of the worker's cover (`_end_terms`). Other rejections concern
    workers billing never invoiced."""
    marks = [
        {"id": m.event.worker_id, "before": m.event.term - 1, "why": not_carried_reasons(m.event)}
        for m in batch
        if m.event.carried and m.event.term > 1
    ]
    if marks:
        await tx.connection.execute(
            update(InvoiceLine)
            .where(
                LINE.worker_id == bindparam("id"),
                LINE.term == bindparam("before"),
                LINE.not_carried.is_(None),
            )
            .values(not_carried=bindparam("why")),
            marks,
        )
    return []


def not_carried_reasons(rejection: EligibilityRejected) -> str:
    return json.dumps([r.model_dump() for r in rejection.reasons], ensure_ascii=False)
