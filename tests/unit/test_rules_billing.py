"""Contribution arithmetic (whole Rupiah) and the timing of expiry alerts."""

from __future__ import annotations

from datetime import date

import pytest

from lindung_billing.domain import (
    RATE_TABLE,
    Confirmation,
    ContributionLine,
    InvoiceTotals,
    PaymentIn,
    RateSchedule,
    alert_id,
    alert_windows_due,
    bill_lines,
    contribution_line,
    coverage_months,
    invoice_id_for,
    monthly_components,
    rate_for,
    record_payments,
)

START, END = date(2025, 10, 1), date(2025, 12, 31)


def assert_all_int(line: ContributionLine) -> None:
    assert type(line.monthly_amount_idr) is int
    assert type(line.amount_idr) is int
    assert all(type(v) is int for v in line.components.values()), line.components


def test_founding_case_line_is_three_months_of_16800() -> None:
    line = contribution_line(1_000_000, START, END)
    assert line == ContributionLine(
        periods=["2025-10", "2025-11", "2025-12"],
        monthly_amount_idr=16_800,
        amount_idr=50_400,
        components={"JKK": 10_000, "JKM": 6_800},
    )
    assert_all_int(line)


def test_founding_case_invoice_for_5600_workers_is_282240000() -> None:
    lines = [contribution_line(1_000_000, START, END) for _ in range(5_600)]
    total = sum(line.amount_idr for line in lines)
    assert total == 282_240_000
    assert type(total) is int


def test_worker_starting_in_november_pays_two_months() -> None:
    line = contribution_line(1_000_000, date(2025, 11, 1), END)
    assert line.periods == ["2025-11", "2025-12"]
    assert line.amount_idr == 33_600
    assert line.monthly_amount_idr == 16_800


def test_higher_reported_income_raises_jkk_but_not_jkm() -> None:
    line = contribution_line(2_500_000, START, END)
    assert line.components == {"JKK": 25_000, "JKM": 6_800}
    assert line.monthly_amount_idr == 31_800
    assert line.amount_idr == 95_400
    assert_all_int(line)


@pytest.mark.parametrize("income", [1_000_000, 1_000_099, 1_234_567, 3_333_333, 10_000_001])
def test_amounts_are_whole_rupiah_with_jkk_rounded_down(income: int) -> None:
    line = contribution_line(income, START, END)
    assert_all_int(line)
    assert line.components["JKK"] == income // 100
    assert line.amount_idr == 3 * line.monthly_amount_idr


def test_monthly_components_are_one_percent_jkk_and_flat_jkm() -> None:
    parts = monthly_components(1_000_000, date(2025, 10, 1))
    assert parts == {"JKK": 10_000, "JKM": 6_800}
    assert all(type(v) is int for v in parts.values())


def test_coverage_spanning_the_year_end_counts_each_calendar_month() -> None:
    line = contribution_line(1_000_000, date(2025, 11, 15), date(2026, 2, 10))
    assert line.periods == ["2025-11", "2025-12", "2026-01", "2026-02"]
    assert line.amount_idr == 4 * 16_800


@pytest.mark.parametrize(
    ("start", "end", "months"),
    [
        (date(2025, 12, 1), date(2026, 1, 31), [date(2025, 12, 1), date(2026, 1, 1)]),
        (date(2025, 12, 31), date(2026, 1, 1), [date(2025, 12, 1), date(2026, 1, 1)]),
        (date(2025, 10, 1), date(2025, 10, 1), [date(2025, 10, 1)]),
        (date(2025, 10, 20), date(2025, 10, 25), [date(2025, 10, 1)]),
        (date(2025, 1, 1), date(2025, 12, 31), [date(2025, m, 1) for m in range(1, 13)]),
    ],
)
def test_coverage_months_are_the_first_days_of_touched_months(
    start: date, end: date, months: list[date]
) -> None:
    assert coverage_months(start, end) == months


def test_coverage_ending_before_it_starts_has_no_months_and_costs_nothing() -> None:
    assert coverage_months(date(2026, 1, 1), date(2025, 12, 31)) == []
    line = contribution_line(1_000_000, date(2026, 1, 1), date(2025, 12, 31))
    assert line.periods == [] and line.amount_idr == 0 and line.monthly_amount_idr == 0


def test_rate_for_picks_the_latest_schedule_in_force() -> None:
    table = (
        RateSchedule(valid_from=date(2015, 7, 1), jkk_basis_points=100, jkm_monthly_idr=6_800),
        RateSchedule(valid_from=date(2026, 1, 1), jkk_basis_points=50, jkm_monthly_idr=3_400),
    )
    assert rate_for(date(2025, 12, 1), table).jkm_monthly_idr == 6_800
    assert rate_for(date(2026, 1, 1), table).jkm_monthly_idr == 3_400
    assert rate_for(date(2030, 1, 1), table).jkk_basis_points == 50


def test_default_rate_table_is_one_percent_and_6800() -> None:
    rate = rate_for(date(2025, 10, 1))
    assert (rate.jkk_basis_points, rate.jkm_monthly_idr) == (100, 6_800)
    assert rate in RATE_TABLE


def test_no_rate_before_the_table_starts_is_an_error() -> None:
    with pytest.raises(ValueError, match="2015-06"):
        rate_for(date(2015, 6, 1))
    with pytest.raises(ValueError):
        contribution_line(1_000_000, date(2015, 6, 1), date(2015, 7, 31))


def test_invoice_id_is_one_per_programme() -> None:
    assert invoice_id_for("sbd-pekerja-rentan-2025q4") == "INV-sbd-pekerja-rentan-2025q4"
    assert invoice_id_for("a") != invoice_id_for("b")


def test_alert_windows_give_the_coverage_end_that_many_days_away() -> None:
    assert alert_windows_due(date(2025, 12, 1), [30, 14, 7]) == {
        30: date(2025, 12, 31),
        14: date(2025, 12, 15),
        7: date(2025, 12, 8),
    }


@pytest.mark.parametrize("days", [30, 14, 7, 0])
def test_founding_case_end_is_due_exactly_on_each_window_day(days: int) -> None:
    today = date.fromordinal(END.toordinal() - days)
    assert alert_windows_due(today, [30, 14, 7, 0])[days] == END
    assert alert_windows_due(date.fromordinal(today.toordinal() + 1), [days])[days] != END


def test_alert_windows_cross_month_and_year_boundaries() -> None:
    assert alert_windows_due(date(2025, 12, 20), [14]) == {14: date(2026, 1, 3)}
    assert alert_windows_due(date(2024, 2, 15), [14]) == {14: date(2024, 2, 29)}


def test_no_alert_windows_means_nothing_due() -> None:
    assert alert_windows_due(date(2025, 12, 1), []) == {}


def test_alert_id_names_programme_end_and_window() -> None:
    assert alert_id("sbd", date(2025, 12, 31), 14) == "sbd:2025-12-31:14d"
    assert alert_id("sbd", date(2025, 12, 31), 14) != alert_id("sbd", date(2025, 12, 31), 7)


def confirmation(n: int, program: str = "P1") -> Confirmation:
    return Confirmation(f"w-{n}", program, 1_000_000, START, END)


def test_lines_on_an_invoice_paid_ahead_are_active_while_the_payment_covers_them() -> None:
    per_line = contribution_line(1_000_000, START, END).amount_idr  # 50,400
    invoices = {invoice_id_for("P1"): InvoiceTotals(total_idr=0, paid_idr=2 * per_line)}
    billed = bill_lines([confirmation(n) for n in range(3)], invoices)
    assert [b.active for b in billed] == [True, True, False]
    assert invoices[invoice_id_for("P1")].total_idr == 3 * per_line
    # A programme without an invoice yet starts one at zero, unpaid.
    [other] = bill_lines([confirmation(9, "P2")], invoices)
    assert not other.active and invoices[invoice_id_for("P2")].total_idr == per_line


def test_a_payment_counts_once_however_often_it_is_announced() -> None:
    invoices = {"INV-P1": InvoiceTotals(total_idr=100, paid_idr=0)}
    known = {("INV-P1", "old")}
    recorded = record_payments(
        [
            PaymentIn("INV-P1", "old", 40),  # recorded by an earlier batch
            PaymentIn("INV-P1", "new", 60),
            PaymentIn("INV-P1", "new", 60),  # announced twice in this batch
        ],
        invoices,
        known,
    )
    assert [p.reference for p in recorded] == ["new"]
    assert invoices["INV-P1"].paid_idr == 60
