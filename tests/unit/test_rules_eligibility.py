"""Eligibility rules: region, identity consistency, age, coverage term and double enrolment."""

from __future__ import annotations

from datetime import date

import pytest

from lindung_eligibility.domain import (
    QUOTA_EXHAUSTED,
    Applicant,
    CoverageTerm,
    ProgramRules,
    age_on,
    assess,
    coverage_term,
    first_of_next_month,
    nik_birth_parts,
)

START, END = date(2025, 10, 1), date(2025, 12, 31)
PROGRAM = ProgramRules(
    program_id="sbd-pekerja-rentan-2025q4",
    region_codes=frozenset({"5318"}),
    coverage_start=START,
    coverage_end=END,
    min_age=18,
    max_age=60,
)


def nik(
    born: date, gender: str = "M", region: str = "5318", district: str = "01", serial: int = 1
) -> str:
    day = born.day + (40 if gender == "F" else 0)
    return f"{region}{district}{day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"


def applicant(born: date = date(1990, 1, 1), gender: str = "M", **nik_parts: str) -> Applicant:
    return Applicant(nik=nik(born, gender, **nik_parts), birth_date=born, gender=gender)  # type: ignore[arg-type]


def reason_codes(
    who: Applicant,
    business_date: date | None = None,
    enrolled: list[CoverageTerm] | None = None,
    program: ProgramRules = PROGRAM,
) -> list[str]:
    return [r.code for r in assess(program, who, business_date, enrolled or []).reasons]


def test_consistent_applicant_in_region_is_eligible_for_the_whole_term() -> None:
    result = assess(PROGRAM, applicant(), None, [])
    assert result.eligible
    assert result.reasons == []
    assert result.term == CoverageTerm(START, END)


# --- region ------------------------------------------------------------------------------------


def test_nik_from_another_regency_is_a_region_mismatch() -> None:
    result = assess(PROGRAM, applicant(region="5311"), None, [])  # Sumba Timur
    assert not result.eligible
    assert [r.code for r in result.reasons] == ["region_mismatch"]
    message = result.reasons[0].message
    assert "5311" in message and "5318" in message and " / " in message


def test_additional_region_codes_are_accepted() -> None:
    program = ProgramRules(
        program_id="p",
        region_codes=frozenset({"5318", "5312"}),
        coverage_start=START,
        coverage_end=END,
        min_age=18,
        max_age=60,
    )
    assert reason_codes(applicant(region="5312"), program=program) == []
    assert reason_codes(applicant(region="5318"), program=program) == []
    assert reason_codes(applicant(region="5311"), program=program) == ["region_mismatch"]


# --- the NIK must agree with the stated birth date and gender -----------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5318010101900001", (1, 1, 90, "M")),
        ("5318054507850042", (5, 7, 85, "F")),
        ("5318117112000001", (31, 12, 0, "F")),
        ("5318093112059999", (31, 12, 5, "M")),
    ],
)
def test_nik_birth_parts_reads_day_month_year_and_gender(value: str, expected: tuple) -> None:
    assert nik_birth_parts(value) == expected


def test_birth_date_that_disagrees_with_the_nik_is_a_mismatch() -> None:
    who = Applicant(nik=nik(date(1990, 1, 1)), birth_date=date(1970, 1, 1), gender="M")
    assert reason_codes(who) == ["birth_date_mismatch"]


@pytest.mark.parametrize(
    "stated",
    [date(1990, 1, 2), date(1990, 2, 1), date(1991, 1, 1), date(1980, 1, 1)],
    ids=["day", "month", "year", "decade"],
)
def test_any_differing_birth_date_part_is_a_mismatch(stated: date) -> None:
    who = Applicant(nik=nik(date(1990, 1, 1)), birth_date=stated, gender="M")
    assert "birth_date_mismatch" in reason_codes(who)


def test_womans_nik_day_has_forty_added_and_matches_her_real_birth_date() -> None:
    born = date(1985, 7, 5)
    woman = Applicant(nik=nik(born, "F"), birth_date=born, gender="F")
    assert woman.nik[6:8] == "45"
    assert reason_codes(woman) == []
    assert nik_birth_parts(woman.nik) == (5, 7, 85, "F")


def test_gender_that_disagrees_with_the_nik_is_a_mismatch() -> None:
    born = date(1985, 7, 5)
    man_says_woman = Applicant(nik=nik(born, "M"), birth_date=born, gender="F")
    woman_says_man = Applicant(nik=nik(born, "F"), birth_date=born, gender="M")
    assert reason_codes(man_says_woman) == ["gender_mismatch"]
    assert reason_codes(woman_says_man) == ["gender_mismatch"]


# --- age at the start of coverage ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("born", "on", "age"),
    [
        (date(2007, 10, 1), date(2025, 10, 1), 18),
        (date(2007, 10, 2), date(2025, 10, 1), 17),
        (date(2007, 9, 30), date(2025, 10, 1), 18),
        (date(2000, 2, 29), date(2025, 2, 28), 24),
        (date(2000, 2, 29), date(2025, 3, 1), 25),
        (date(1990, 12, 31), date(1990, 12, 31), 0),
    ],
)
def test_age_on_counts_completed_years(born: date, on: date, age: int) -> None:
    assert age_on(born, on) == age


def test_turning_minimum_age_exactly_on_coverage_start_is_eligible() -> None:
    assert reason_codes(applicant(date(2007, 10, 1))) == []


def test_one_day_short_of_minimum_age_at_coverage_start_is_below_minimum() -> None:
    result = assess(PROGRAM, applicant(date(2007, 10, 2)), None, [])
    assert [r.code for r in result.reasons] == ["age_below_minimum"]
    assert "17" in result.reasons[0].message and "18" in result.reasons[0].message


def test_maximum_age_is_inclusive_until_the_next_birthday() -> None:
    assert reason_codes(applicant(date(1965, 10, 1))) == []  # 60 today
    assert reason_codes(applicant(date(1964, 10, 2))) == []  # 60, turns 61 tomorrow


def test_turning_one_over_maximum_on_coverage_start_is_above_maximum() -> None:
    result = assess(PROGRAM, applicant(date(1964, 10, 1)), None, [])
    assert [r.code for r in result.reasons] == ["age_above_maximum"]
    assert "61" in result.reasons[0].message and "60" in result.reasons[0].message


def test_age_is_judged_at_the_coverage_start_not_the_programme_start() -> None:
    born = date(2007, 10, 15)  # 17 on 1 Oct, 18 by 1 Nov
    assert reason_codes(applicant(born), business_date=None) == ["age_below_minimum"]
    assert reason_codes(applicant(born), business_date=date(2025, 10, 20)) == []


# --- the coverage term ---------------------------------------------------------------------------


@pytest.mark.parametrize("business_date", [None, date(2025, 6, 30), date(2025, 9, 30), START])
def test_coverage_starts_with_the_programme_when_decided_by_its_start(
    business_date: date | None,
) -> None:
    assert coverage_term(PROGRAM, business_date) == CoverageTerm(START, END)


@pytest.mark.parametrize(
    ("business_date", "start"),
    [
        (date(2025, 10, 2), date(2025, 11, 1)),
        (date(2025, 10, 31), date(2025, 11, 1)),
        (date(2025, 11, 1), date(2025, 12, 1)),
        (date(2025, 11, 30), date(2025, 12, 1)),
    ],
)
def test_coverage_starts_on_the_first_of_next_month_when_decided_later(
    business_date: date, start: date
) -> None:
    result = assess(PROGRAM, applicant(), business_date, [])
    assert result.term == CoverageTerm(start, END)
    assert result.eligible


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2025, 1, 31), date(2025, 2, 1)),
        (date(2025, 11, 15), date(2025, 12, 1)),
        (date(2025, 12, 1), date(2026, 1, 1)),
        (date(2025, 12, 31), date(2026, 1, 1)),
        (date(2024, 2, 29), date(2024, 3, 1)),
    ],
)
def test_first_of_next_month_rolls_december_into_january(day: date, expected: date) -> None:
    assert first_of_next_month(day) == expected


def test_decided_in_december_a_december_programme_cannot_start_coverage() -> None:
    december = ProgramRules("p", frozenset({"5318"}), date(2025, 12, 1), date(2026, 3, 31), 18, 60)
    assert coverage_term(december, date(2025, 12, 10)) == CoverageTerm(
        date(2026, 1, 1), date(2026, 3, 31)
    )
    assert reason_codes(applicant(), date(2025, 12, 10), program=december) == []


@pytest.mark.parametrize("business_date", [date(2026, 1, 1), date(2026, 1, 5), date(2027, 6, 1)])
def test_decided_after_the_end_the_programme_has_ended(business_date: date) -> None:
    result = assess(PROGRAM, applicant(), business_date, [])
    assert "program_ended" in [r.code for r in result.reasons]
    assert result.term.start > result.term.end
    assert not result.eligible


def test_decided_in_the_last_month_leaves_no_month_to_cover() -> None:
    assert reason_codes(applicant(), date(2025, 12, 15)) == ["program_ended"]


# --- double enrolment ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "existing",
    [
        CoverageTerm(START, END),
        CoverageTerm(date(2025, 7, 1), date(2025, 10, 1)),  # shares one day at the start
        CoverageTerm(date(2025, 12, 31), date(2026, 3, 31)),  # shares one day at the end
        CoverageTerm(date(2025, 11, 1), date(2025, 11, 30)),  # inside
        CoverageTerm(date(2025, 1, 1), date(2026, 12, 31)),  # around
    ],
)
def test_an_overlapping_existing_term_means_already_enrolled(existing: CoverageTerm) -> None:
    assert reason_codes(applicant(), None, [existing]) == ["already_enrolled"]


@pytest.mark.parametrize(
    "existing",
    [
        CoverageTerm(date(2025, 7, 1), date(2025, 9, 30)),  # ends the day before
        CoverageTerm(date(2026, 1, 1), date(2026, 3, 31)),  # starts the day after
        CoverageTerm(date(2024, 1, 1), date(2024, 12, 31)),
    ],
)
def test_adjacent_or_disjoint_terms_do_not_overlap(existing: CoverageTerm) -> None:
    assert reason_codes(applicant(), None, [existing]) == []


def test_overlap_is_judged_against_the_actual_term_when_decided_late() -> None:
    october_only = CoverageTerm(date(2025, 10, 1), date(2025, 10, 31))
    assert reason_codes(applicant(), None, [october_only]) == ["already_enrolled"]
    # decided in October the term starts 1 November, after the October coverage
    assert reason_codes(applicant(), date(2025, 10, 15), [october_only]) == []


def test_coverage_term_overlaps_is_symmetric_and_inclusive() -> None:
    a = CoverageTerm(date(2025, 1, 1), date(2025, 1, 31))
    assert a.overlaps(date(2025, 1, 31), date(2025, 2, 28))
    assert a.overlaps(date(2024, 12, 1), date(2025, 1, 1))
    assert not a.overlaps(date(2025, 2, 1), date(2025, 2, 28))
    assert not a.overlaps(date(2024, 12, 1), date(2024, 12, 31))


# --- several reasons at once, and the quota reason --------------------------------------------


def test_every_failing_rule_is_reported_together() -> None:
    born = date(1950, 3, 3)
    who = Applicant(nik=nik(born, "F", region="5311"), birth_date=date(1950, 3, 4), gender="M")
    codes = reason_codes(who, None, [CoverageTerm(START, END)])
    assert codes == [
        "region_mismatch",
        "birth_date_mismatch",
        "gender_mismatch",
        "age_above_maximum",
        "already_enrolled",
    ]


def test_every_reason_message_is_bilingual() -> None:
    born = date(2010, 3, 3)
    who = Applicant(nik=nik(born, "F", region="5311"), birth_date=date(2010, 3, 4), gender="M")
    result = assess(PROGRAM, who, date(2026, 2, 1), [CoverageTerm(START, date(2026, 12, 31))])
    assert {r.code for r in result.reasons} == {
        "region_mismatch",
        "birth_date_mismatch",
        "gender_mismatch",
        "program_ended",
        "age_below_minimum",
        "already_enrolled",
    }
    for r in result.reasons:
        indonesian, sep, english = r.message.partition(" / ")
        assert sep and indonesian.strip() and english.strip(), r


def test_quota_exhausted_reason_is_stable() -> None:
    assert QUOTA_EXHAUSTED.code == "quota_exhausted"
    assert " / " in QUOTA_EXHAUSTED.message
