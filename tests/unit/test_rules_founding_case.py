"""The founding case's generated rows agree with the rules and with the counts the demo expects."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from lindung_cli.founding_case import Expected, founding_program, generate_rows
from lindung_contracts import ProgramPublished, RegistrationRequested
from lindung_eligibility.domain import Applicant, ProgramRules, assess
from lindung_registration.domain import _MESSAGES as REGISTRATION_MESSAGES
from lindung_registration.domain import ValidRegistration, validate_registration
from lindung_registration.spreadsheet import TEMPLATE_COLUMNS

REGISTRATION_CODES = set(REGISTRATION_MESSAGES)
ELIGIBILITY_CODES = {
    "region_mismatch",
    "birth_date_mismatch",
    "gender_mismatch",
    "age_below_minimum",
    "age_above_maximum",
    "program_ended",
    "already_enrolled",
}
QUOTA, OVER_QUOTA, INELIGIBLE, BAD, REPEATS = 5_600, 5, 17, 20, 5


@pytest.fixture(scope="module")
def program() -> ProgramPublished:
    return founding_program()


@pytest.fixture(scope="module")
def generated(program: ProgramPublished) -> tuple[list[dict[str, str]], Expected]:
    return generate_rows(program)


@pytest.fixture(scope="module")
def validated(
    program: ProgramPublished, generated: tuple[list[dict[str, str]], Expected]
) -> list[tuple[dict[str, str], Any]]:
    rows, _ = generated
    return [(row, validate_registration(to_request(program, row))) for row in rows]


def to_request(program: ProgramPublished, row: dict[str, str]) -> RegistrationRequested:
    return RegistrationRequested(
        program_id=program.program_id, **{**row, "phone": row["phone"] or None}
    )


def rules_of(program: ProgramPublished) -> ProgramRules:
    return ProgramRules(
        program_id=program.program_id,
        region_codes=program.region_codes,
        coverage_start=program.coverage_start,
        coverage_end=program.coverage_end,
        min_age=program.min_age,
        max_age=program.max_age,
    )


def test_founding_programme_is_sumba_barat_daya_q4_2025(program: ProgramPublished) -> None:
    assert program.region_code == "5318"
    assert program.quota == QUOTA
    assert (program.coverage_start.isoformat(), program.coverage_end.isoformat()) == (
        "2025-10-01",
        "2025-12-31",
    )
    assert (program.min_age, program.max_age, program.reported_income_idr) == (18, 60, 1_000_000)


def test_same_seed_gives_the_same_rows_and_expectations(
    program: ProgramPublished, generated: tuple[list[dict[str, str]], Expected]
) -> None:
    again = generate_rows(program)
    assert again[0] == generated[0]
    assert again[1] == generated[1]


def test_another_seed_gives_other_rows_with_the_same_counts(
    program: ProgramPublished, generated: tuple[list[dict[str, str]], Expected]
) -> None:
    rows, expected = generate_rows(program, seed=7)
    assert rows != generated[0]
    assert expected == generated[1]


def test_row_counts_are_quota_plus_over_quota_ineligible_bad_and_repeats(
    generated: tuple[list[dict[str, str]], Expected],
) -> None:
    rows, expected = generated
    assert len(rows) == QUOTA + OVER_QUOTA + INELIGIBLE + BAD + REPEATS == 5_647
    assert expected.requests == len(rows)
    assert expected.registered == QUOTA + OVER_QUOTA + INELIGIBLE
    assert expected.registration_rejected == BAD
    assert expected.confirmed == QUOTA
    assert expected.quota_exhausted == OVER_QUOTA
    assert expected.eligibility_rejected == INELIGIBLE + OVER_QUOTA
    assert expected.malformed == 0
    assert sum(expected.reasons.values()) == BAD + INELIGIBLE + OVER_QUOTA


def test_exactly_five_rows_are_repeats_of_earlier_rows(
    generated: tuple[list[dict[str, str]], Expected],
) -> None:
    rows, _ = generated
    copies = Counter(tuple(sorted(row.items())) for row in rows)
    assert sorted(n for n in copies.values() if n > 1) == [2] * REPEATS


def test_rows_have_the_registration_request_fields(
    generated: tuple[list[dict[str, str]], Expected],
) -> None:
    rows, _ = generated
    fields = set(TEMPLATE_COLUMNS.values())
    assert fields == set(RegistrationRequested.model_fields) - {"program_id"}
    assert all(set(row) == fields for row in rows)
    assert all(isinstance(value, str) for row in rows for value in row.values())


def test_registration_rejects_exactly_the_bad_rows_with_the_expected_codes(
    generated: tuple[list[dict[str, str]], Expected], validated: list[tuple[dict[str, str], Any]]
) -> None:
    _, expected = generated
    rejected = [result for _, result in validated if isinstance(result, list)]
    assert len(rejected) == expected.registration_rejected == BAD
    # one deliberate mistake per bad row, so one error each
    assert all(len(errors) == 1 for errors in rejected), [e for e in rejected if len(e) != 1]
    got = Counter(errors[0].code for errors in rejected)
    want = {code: n for code, n in expected.reasons.items() if code in REGISTRATION_CODES}
    assert got == want
    assert all(" / " in errors[0].message for errors in rejected)


def test_every_expected_reason_is_a_known_code(
    generated: tuple[list[dict[str, str]], Expected],
) -> None:
    _, expected = generated
    assert set(expected.reasons) <= REGISTRATION_CODES | ELIGIBILITY_CODES | {"quota_exhausted"}


def test_eligibility_rejects_exactly_the_ineligible_rows_with_the_expected_reasons(
    program: ProgramPublished,
    generated: tuple[list[dict[str, str]], Expected],
    validated: list[tuple[dict[str, str], Any]],
) -> None:
    _, expected = generated
    rules = rules_of(program)
    verdicts = [
        assess(rules, Applicant(nik=v.nik, birth_date=v.birth_date, gender=v.gender), None, [])
        for _, v in validated
        if isinstance(v, ValidRegistration)
    ]
    assert len(verdicts) == expected.registered + REPEATS
    refused = [v for v in verdicts if not v.eligible]
    assert len(refused) == INELIGIBLE
    assert all(len(v.reasons) == 1 for v in refused)
    got = Counter(v.reasons[0].code for v in refused)
    want = {code: n for code, n in expected.reasons.items() if code in ELIGIBILITY_CODES}
    assert got == want


def test_eligible_rows_are_quota_plus_over_quota_with_unique_5318_niks(
    program: ProgramPublished, validated: list[tuple[dict[str, str], Any]]
) -> None:
    rules = rules_of(program)
    eligible = [
        v
        for _, v in validated
        if isinstance(v, ValidRegistration)
        and assess(
            rules, Applicant(nik=v.nik, birth_date=v.birth_date, gender=v.gender), None, []
        ).eligible
    ]
    assert len(eligible) == QUOTA + OVER_QUOTA + REPEATS  # the repeats are of eligible workers
    niks = {v.nik for v in eligible}
    assert len(niks) == QUOTA + OVER_QUOTA
    assert all(nik.startswith("5318") and len(nik) == 16 for nik in niks)
    assert len({v.worker_id for v in eligible}) == QUOTA + OVER_QUOTA


def test_all_rows_with_a_valid_nik_have_distinct_niks_except_the_repeats(
    validated: list[tuple[dict[str, str], Any]],
) -> None:
    niks = Counter(v.nik for _, v in validated if isinstance(v, ValidRegistration))
    assert sorted(n for n in niks.values() if n > 1) == [2] * REPEATS


def test_generated_rows_use_both_date_formats_and_some_phones(
    validated: list[tuple[dict[str, str], Any]],
) -> None:
    valid = [(row, v) for row, v in validated if isinstance(v, ValidRegistration)]
    assert any("/" in row["birth_date"] for row, _ in valid)
    assert any("-" in row["birth_date"] for row, _ in valid)
    phones = [v.phone for _, v in valid if v.phone]
    assert phones and all(p.startswith("+62812") and len(p) == 14 for p in phones)
    assert any(v.phone is None for _, v in valid)
    assert {v.gender for _, v in valid} == {"M", "F"}
