"""Programme terms as pure rules: numbering renewals, the coverage-start policy and its
deadline, carrying a term's workers into the next (age on the new term, the renewal's quota),
and billing's term arithmetic (invoice per term, terms that end unrenewed)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from lindung_billing.domain import (
    Confirmation,
    InvoiceTotals,
    Term,
    bill_lines,
    invoice_id_for,
    renewed_until,
    terms_ending,
)
from lindung_contracts import ProgramRenewed, renewal_outcome
from lindung_contracts import TermDates as Dates
from lindung_eligibility.domain import Member, ProgramRules, carry_into_term, coverage_term
from tests.unit.handler_kit import founding_program

Q4 = Dates(date(2025, 10, 1), date(2025, 12, 31))
Q1 = Dates(date(2026, 1, 1), date(2026, 3, 31))


def test_a_renewal_after_the_last_term_is_the_next_term_and_a_repeat_is_that_term() -> None:
    assert renewal_outcome([Q4], Q1.term_start, Q1.term_end).kind == "new"
    assert renewal_outcome([Q4], Q1.term_start, Q1.term_end).term == 2
    assert (renewal_outcome([Q4, Q1], Q1.term_start, Q1.term_end).kind, 2) == ("same", 2)
    assert renewal_outcome([Q4, Q1], Q4.term_start, Q4.term_end).term == 1  # term 1 again: a repeat
    later = renewal_outcome([Q4], date(2026, 2, 1), date(2026, 6, 30))  # a gap is allowed
    assert (later.kind, later.term) == ("new", 2)


def test_a_renewal_overlapping_or_before_a_term_is_refused() -> None:
    for start, end in [
        (date(2025, 12, 1), date(2026, 3, 31)),  # starts inside term 1
        (date(2025, 10, 1), date(2025, 11, 30)),  # inside term 1, not the same dates
        (date(2025, 7, 1), date(2025, 9, 30)),  # before term 1: terms only go forward
    ]:
        outcome = renewal_outcome([Q4], start, end)
        assert (outcome.kind, outcome.term) == ("overlaps", 1), (start, end)


def test_a_renewal_ending_before_it_starts_is_invalid() -> None:
    with pytest.raises(ValidationError, match="term_end is before term_start"):
        ProgramRenewed(
            program_id="p",
            term_start=date(2026, 3, 31),
            term_end=date(2026, 1, 1),
            renewed_at=datetime(2025, 12, 15, tzinfo=UTC),
        )


def test_from_term_start_needs_a_deadline_inside_the_term_and_the_approval() -> None:
    with pytest.raises(ValidationError, match="needs a registration_deadline"):
        founding_program(coverage_start_policy="from_term_start")
    with pytest.raises(ValidationError, match="needs a registration_deadline"):
        founding_program(
            coverage_start_policy="from_term_start", registration_deadline=date(2025, 11, 15)
        )
    with pytest.raises(ValidationError, match="outside the term"):
        founding_program(
            coverage_start_policy="from_term_start",
            registration_deadline=date(2026, 1, 15),
            backdating_approval="ND/123/2025",
        )


def rules(policy: str = "from_term_start", **changes: object) -> ProgramRules:
    fields: dict[str, object] = {
        "program_id": "p",
        "region_codes": frozenset({"5318"}),
        "coverage_start": date(2025, 10, 1),
        "coverage_end": date(2025, 12, 31),
        "min_age": 18,
        "max_age": 60,
        "policy": policy,
        "registration_deadline": date(2025, 11, 15),
    }
    return ProgramRules(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "decided", "start"),
    [
        ("from_term_start", date(2025, 10, 29), date(2025, 10, 1)),  # the founding case
        ("from_term_start", date(2025, 11, 15), date(2025, 10, 1)),  # on the deadline
        ("from_term_start", date(2025, 11, 16), date(2025, 12, 1)),  # after it: next month
        ("next_month", date(2025, 10, 29), date(2025, 11, 1)),
        ("next_month", date(2025, 10, 1), date(2025, 10, 1)),  # on the first day
        ("next_month", date(2025, 9, 20), date(2025, 10, 1)),  # before it
    ],
)
def test_the_coverage_start_follows_the_policy_and_the_deadline(
    policy: str, decided: date, start: date
) -> None:
    term = coverage_term(rules(policy), decided)
    assert (term.start, term.end) == (start, date(2025, 12, 31))


def term_2(**changes: object) -> ProgramRules:
    return rules(
        "next_month",
        coverage_start=date(2026, 1, 1),
        coverage_end=date(2026, 3, 31),
        registration_deadline=None,
        term=2,
        **changes,
    )


def test_carrying_checks_the_age_on_the_new_terms_last_day() -> None:
    members = [
        Member("stays", "5318010101650001", date(1965, 4, 1)),  # 60 on 31 Mar 2026
        Member("turns-61", "5318013103650002", date(1965, 3, 31)),  # 61 on its last day
        Member("young", "5318010101900003", date(1990, 1, 1)),
    ]
    verdicts = carry_into_term(members, term_2(), quota=5600, business_date=date(2025, 12, 15))
    outcome = {m.worker_id: [r.code for r in reasons] for m, _, reasons in verdicts}
    assert outcome == {"stays": [], "turns-61": ["age_above_maximum_in_term"], "young": []}
    # Renewed before term 1 ends: cover goes on from the new term's first day, no gap.
    assert {(c.start, c.end) for _, c, _ in verdicts} == {(date(2026, 1, 1), date(2026, 3, 31))}


def test_carrying_fills_the_renewals_quota_in_registration_order() -> None:
    members = [Member(f"w{i}", "5318010101900001", date(1990, 1, 1)) for i in range(4)]
    verdicts = carry_into_term(members, term_2(), quota=2, business_date=date(2025, 12, 15))
    assert [[r.code for r in reasons] for _, _, reasons in verdicts] == [
        [],
        [],
        ["renewal_quota_exhausted"],
        ["renewal_quota_exhausted"],
    ]


def test_a_late_renewal_under_next_month_starts_cover_the_next_month() -> None:
    [(_, cover, reasons)] = carry_into_term(
        [Member("w", "5318010101900001", date(1990, 1, 1))],
        term_2(),
        quota=1,
        business_date=date(2026, 1, 10),
    )
    assert (cover.start, reasons) == (date(2026, 2, 1), [])


def test_each_term_has_its_own_invoice_billed_from_its_own_dates() -> None:
    assert invoice_id_for("sbd") == "INV-sbd"
    assert invoice_id_for("sbd", 2) == "INV-sbd-T2"
    invoices: dict[str, InvoiceTotals] = {}
    [line_1, line_2] = bill_lines(
        [
            Confirmation("w", "sbd", 1_000_000, date(2025, 10, 1), date(2025, 12, 31)),
            Confirmation("w", "sbd", 1_000_000, date(2026, 1, 1), date(2026, 3, 31), term=2),
        ],
        invoices,
    )
    assert (line_1.invoice_id, line_1.line.periods) == (
        "INV-sbd",
        ["2025-10", "2025-11", "2025-12"],
    )
    assert (line_2.invoice_id, line_2.line.periods) == (
        "INV-sbd-T2",
        ["2026-01", "2026-02", "2026-03"],
    )
    assert {k: v.total_idr for k, v in invoices.items()} == {
        "INV-sbd": 50_400,
        "INV-sbd-T2": 50_400,
    }


def test_only_the_last_term_ends_and_only_once_its_last_day_is_past() -> None:
    t1 = Term(1, date(2025, 10, 1), date(2025, 12, 31))
    t2 = Term(2, date(2026, 1, 1), date(2026, 3, 31))
    assert terms_ending([t1], date(2025, 12, 31)) == []
    assert terms_ending([t1], date(2026, 1, 1)) == [t1]
    assert terms_ending([t1, t2], date(2026, 1, 1)) == []  # renewed: term 1's workers go on
    assert terms_ending([t1, t2], date(2026, 4, 1)) == [t2]
    assert renewed_until([t1, t2], 1) == date(2026, 3, 31)
    assert renewed_until([t1, t2], 2) is None


def test_a_worker_another_programme_covers_during_the_new_term_is_not_carried() -> None:
    members = [
        Member("elsewhere", "5318010101900001", date(1990, 1, 1)),
        Member("free", "5318010101900002", date(1990, 1, 1)),
    ]
    verdicts = carry_into_term(
        members,
        term_2(),
        quota=1,
        business_date=date(2025, 12, 15),
        enrolled_elsewhere={"elsewhere"},
    )
    # The worker left out takes no seat: the next one gets it.
    assert [[r.code for r in reasons] for _, _, reasons in verdicts] == [["already_enrolled"], []]
