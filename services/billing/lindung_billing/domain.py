"""Pure contribution arithmetic and alert timing for BPU (informal) participants.

Rates come from a dated table, not constants: PP 44/2015 as amended by PP 82/2019 sets
JKK = 1% of reported income and JKM = Rp 6,800 a month; PP 50/2025's 2026 discount does not
apply to APBD-funded participants, so regency programmes keep the full rate (docs/domain.md).
Money is whole Rupiah throughout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class RateSchedule:
    valid_from: date
    jkk_basis_points: int  # of reported monthly income; 100 bp = 1%
    jkm_monthly_idr: int


RATE_TABLE: tuple[RateSchedule, ...] = (
    RateSchedule(valid_from=date(2015, 7, 1), jkk_basis_points=100, jkm_monthly_idr=6_800),
)


@dataclass(frozen=True)
class ContributionLine:
    """One worker's line on the sponsor's invoice."""

    periods: list[str]
    monthly_amount_idr: int
    amount_idr: int
    components: dict[str, int]


def rate_for(month: date, table: tuple[RateSchedule, ...] = RATE_TABLE) -> RateSchedule:
    applicable = [rate for rate in table if rate.valid_from <= month]
    if not applicable:
        raise ValueError(f"no contribution rate for {month:%Y-%m}")
    return max(applicable, key=lambda rate: rate.valid_from)


def monthly_components(reported_income_idr: int, month: date) -> dict[str, int]:
    rate = rate_for(month)
    return {
        "JKK": reported_income_idr * rate.jkk_basis_points // 10_000,
        "JKM": rate.jkm_monthly_idr,
    }


def coverage_months(start: date, end: date) -> list[date]:
    """The calendar months the coverage touches, as their first days."""
    months, current = [], date(start.year, start.month, 1)
    while current <= end:
        months.append(current)
        current = date(current.year + current.month // 12, current.month % 12 + 1, 1)
    return months


def contribution_line(reported_income_idr: int, start: date, end: date) -> ContributionLine:
    months = coverage_months(start, end)
    per_month = [monthly_components(reported_income_idr, month) for month in months]
    first = per_month[0] if per_month else {"JKK": 0, "JKM": 0}
    return ContributionLine(
        periods=[f"{month:%Y-%m}" for month in months],
        monthly_amount_idr=sum(first.values()),
        amount_idr=sum(sum(components.values()) for components in per_month),
        components=first,
    )


def is_paid_up(paid_idr: int, total_idr: int) -> bool:
    """Whether the sponsor has paid the invoice's whole total so far: a line is active once it
    is on a paid-up invoice. So a line added to an invoice paid ahead (paid up with the line
    counted) is active at once; one added beyond what was paid waits, and the payment that
    makes the invoice paid up activates every line that waits."""
    return paid_idr >= total_idr


def invoice_id_for(program_id: str, term: int = 1) -> str:
    """One invoice per programme term: the sponsor pays the term at once. Term 1's is
    `INV-<programme>`, a renewal's `INV-<programme>-T<term>`."""
    return f"INV-{program_id}" if term == 1 else f"INV-{program_id}-T{term}"


@dataclass(frozen=True)
class Term:
    term: int
    term_start: date
    term_end: date


def terms_ending(terms: list[Term], today: date) -> list[Term]:
    """The terms whose cover has ended by `today` with nothing after them: the last day is past
    and the programme has no later term (a renewal's workers get lines of their own)."""
    last = max((t.term for t in terms), default=0)
    return [t for t in terms if t.term_end < today and t.term == last]


def renewed_until(terms: list[Term], term: int) -> date | None:
    """The end of the term after `term`, when a renewal is published already."""
    return next((t.term_end for t in terms if t.term == term + 1), None)


def ending_reason(activated: bool, not_carried: str | None = None) -> tuple[str, str]:
    """A CoverageEnded reason: the renewal's first reason not to carry the worker on (stored as
    JSON), or the term ended unrenewed, with the cover active or never paid."""
    if not_carried:
        first = json.loads(not_carried)[0]
        return first["code"], first["message"]
    if activated:
        return (
            "term_ended_not_renewed",
            "Masa program berakhir dan tidak diperpanjang / The term ended and was not renewed",
        )
    return (
        "term_ended_unpaid",
        "Masa program berakhir sebelum iuran dibayar / The term ended before it was paid",
    )


def alert_windows_due(today: date, alert_days_before_end: list[int]) -> dict[int, date]:
    """For each alert window, the coverage end date that is exactly that many days away today."""
    return {days: date.fromordinal(today.toordinal() + days) for days in alert_days_before_end}


def alert_id(program_id: str, coverage_end: date, days_left: int) -> str:
    return f"{program_id}:{coverage_end.isoformat()}:{days_left}d"


@dataclass(frozen=True)
class Confirmation:
    """What billing needs of one confirmed worker to bill the programme for them."""

    worker_id: str
    program_id: str
    reported_income_idr: int
    coverage_start: date
    coverage_end: date
    term: int = 1


@dataclass(frozen=True)
class BilledLine:
    """A worker's new line, and whether it is active at once (on an invoice paid ahead)."""

    confirmation: Confirmation
    invoice_id: str
    line: ContributionLine
    active: bool


@dataclass
class InvoiceTotals:
    total_idr: int
    paid_idr: int


def bill_lines(
    confirmations: list[Confirmation], invoices: dict[str, InvoiceTotals]
) -> list[BilledLine]:
    """Add each confirmation's line to its programme's invoice, in order; `invoices` (by id) are
    updated in place. A line is active at once while its invoice stays paid up with it counted
    (`is_paid_up`): an invoice paid ahead covers the lines that fit in what was paid, in the
    order they came."""
    billed = []
    for confirmation in confirmations:
        invoice_id = invoice_id_for(confirmation.program_id, confirmation.term)
        line = contribution_line(
            confirmation.reported_income_idr,
            confirmation.coverage_start,
            confirmation.coverage_end,
        )
        totals = invoices.setdefault(invoice_id, InvoiceTotals(0, 0))
        totals.total_idr += line.amount_idr
        active = is_paid_up(totals.paid_idr, totals.total_idr)
        billed.append(BilledLine(confirmation, invoice_id, line, active))
    return billed


@dataclass(frozen=True)
class PaymentIn:
    invoice_id: str
    reference: str
    amount_idr: int


def record_payments(
    payments: list[PaymentIn], invoices: dict[str, InvoiceTotals], known: set[tuple[str, str]]
) -> list[PaymentIn]:
    """The payments to record, in order: each (invoice, reference) counts once, however often
    it is announced (`known`: those recorded before). `invoices` are updated in place."""
    recorded = []
    for payment in payments:
        if (payment.invoice_id, payment.reference) in known:
            continue
        known.add((payment.invoice_id, payment.reference))
        invoices[payment.invoice_id].paid_idr += payment.amount_idr
        recorded.append(payment)
    return recorded
