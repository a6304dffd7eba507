"""Registration rules: what a request must look like, and the normal form it is stored in."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from lindung_contracts import FieldError, RegistrationRequested
from lindung_registration.domain import (
    MAX_NAME_LENGTH,
    ValidRegistration,
    normalise_nik,
    normalise_phone,
    parse_date,
    validate_registration,
    worker_id_for,
)

PROGRAM = "sbd-pekerja-rentan-2025q4"
NIK = "5318010101900001"  # Loura, born 1 Jan 1990, a man, serial 0001
NIK_WOMAN = "5318054507850042"  # Wewewa Selatan, born 5 Jul 1985 (+40), serial 0042


def request(**overrides: str | None) -> RegistrationRequested:
    fields: dict[str, str | None] = {
        "program_id": PROGRAM,
        "nik": NIK,
        "full_name": "Yohanes Bili",
        "birth_date": "01/01/1990",
        "gender": "L",
        "occupation": "Petani",
        "village": "Desa Loura 01",
        "district": "Loura",
        "phone": "081234567890",
    }
    fields.update(overrides)
    return RegistrationRequested(**fields)


def valid(**overrides: str | None) -> ValidRegistration:
    result = validate_registration(request(**overrides))
    assert isinstance(result, ValidRegistration), result
    return result


def errors_of(**overrides: str | None) -> list[FieldError]:
    result = validate_registration(request(**overrides))
    assert isinstance(result, list), f"expected errors, got {result!r}"
    return result


def codes(**overrides: str | None) -> list[tuple[str, str]]:
    return [(e.field, e.code) for e in errors_of(**overrides)]


# --- the normal form -------------------------------------------------------------------------


def test_valid_request_is_normalised_into_a_valid_registration() -> None:
    result = valid(
        program_id="  " + PROGRAM + " ",
        full_name="  Yohanes \t  Bili\n ",
        village=" Desa  Loura   01 ",
        district="  Loura ",
        occupation="  Pengemudi   ojek ",
        phone="+62 812-3456-7890",
    )
    assert result == ValidRegistration(
        program_id=PROGRAM,
        nik=NIK,
        full_name="Yohanes Bili",
        birth_date=date(1990, 1, 1),
        gender="M",
        occupation="Pengemudi ojek",
        village="Desa Loura 01",
        district="Loura",
        phone="+6281234567890",
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("L", "M"),
        ("l", "M"),
        ("M", "M"),
        (" m ", "M"),
        ("laki-laki", "M"),
        ("Laki-Laki", "M"),
        ("laki laki", "M"),
        ("pria", "M"),
        ("male", "M"),
        ("P", "F"),
        ("p", "F"),
        ("F", "F"),
        (" f", "F"),
        ("perempuan", "F"),
        ("PEREMPUAN", "F"),
        ("wanita", "F"),
        ("female", "F"),
    ],
)
def test_gender_spellings_map_to_m_or_f(given: str, expected: str) -> None:
    assert valid(gender=given).gender == expected


@pytest.mark.parametrize("given", ["X", "", "  ", "LP", "laki", "0", "MF"])
def test_unknown_gender_is_rejected(given: str) -> None:
    assert codes(gender=given) == [("gender", "gender_invalid")]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("31/12/1990", date(1990, 12, 31)),
        ("1/2/1990", date(1990, 2, 1)),
        ("01/02/1990", date(1990, 2, 1)),  # Indonesian order: day first
        ("31.12.1990", date(1990, 12, 31)),
        ("31-12-1990", date(1990, 12, 31)),
        ("1990-12-31", date(1990, 12, 31)),
        (" 1990-12-31 ", date(1990, 12, 31)),
        ("1990-12-31T00:00:00", date(1990, 12, 31)),
        ("29/02/2000", date(2000, 2, 29)),
    ],
)
def test_parse_date_reads_iso_and_day_month_year(given: str, expected: date) -> None:
    assert parse_date(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "",
        "   ",
        "kemarin",
        "31/02/1990",
        "29/02/1990",
        "12/31/1990",
        "1990/12/31",
        "19901231",
        "1990-13-01",
        "00/01/1990",
        "31/12/90",
    ],
)
def test_parse_date_refuses_anything_else(given: str) -> None:
    assert parse_date(given) is None


def test_parse_date_refuses_an_iso_date_followed_by_junk() -> None:
    assert parse_date("1990-12-31 bukan tanggal") is None


def test_birth_date_in_day_month_year_and_iso_give_the_same_registration() -> None:
    assert valid(birth_date="05/07/1985", nik=NIK_WOMAN, gender="P").birth_date == date(1985, 7, 5)
    assert valid(birth_date="1985-07-05", nik=NIK_WOMAN, gender="P").birth_date == date(1985, 7, 5)


@pytest.mark.parametrize(
    "given",
    [
        "081234567890",
        "6281234567890",
        "+6281234567890",
        "+62 812-3456-7890",
        "0812 3456 7890",
        "(0812) 3456-7890",
        " 081234567890 ",
    ],
)
def test_indonesian_mobile_numbers_become_e164(given: str) -> None:
    assert normalise_phone(given) == "+6281234567890"
    assert valid(phone=given).phone == "+6281234567890"


@pytest.mark.parametrize("given", [None, "", "   "])
def test_missing_phone_is_allowed_and_stored_as_none(given: str | None) -> None:
    assert valid(phone=given).phone is None


@pytest.mark.parametrize("given", ["12345", "0812-ABC", "0812", "08", "+62", "1" * 33, "telepon"])
def test_phone_that_is_not_a_number_is_rejected(given: str) -> None:
    error = normalise_phone(given)
    assert isinstance(error, FieldError)
    assert (error.field, error.code) == ("phone", "phone_invalid")
    assert codes(phone=given) == [("phone", "phone_invalid")]


def test_phone_with_letters_is_rejected_not_translated_to_digits() -> None:
    assert isinstance(normalise_phone("0812-ABCD-EFGH"), FieldError)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (NIK, NIK),
        (f"  {NIK} ", NIK),
        ("5318 0101 0190 0001", NIK),
        ("5318-01-010190-0001", NIK),
        (NIK_WOMAN, NIK_WOMAN),
        ("5318012902000001", "5318012902000001"),  # 29 Feb 2000: 1900 is no leap year, 2000 is
    ],
)
def test_normalise_nik_returns_sixteen_plain_digits(given: str, expected: str) -> None:
    assert normalise_nik(given) == expected


@pytest.mark.parametrize(
    ("given", "code"),
    [
        ("", "nik_required"),
        ("   ", "nik_required"),
        ("531801010190000", "nik_invalid_length"),
        ("53180101019000011", "nik_invalid_length"),
        ("1" * 65, "nik_invalid_length"),
        ("O318010101900001", "nik_invalid_format"),
        ("5318010101AB0001", "nik_invalid_format"),
        ("9918010101900001", "nik_invalid_component"),  # no province 99
        ("5318010113900001", "nik_invalid_component"),  # month 13
        ("5318013202900001", "nik_invalid_component"),  # 32 February
        ("5318010002900001", "nik_invalid_component"),  # day 00
        ("5318014002900001", "nik_invalid_component"),  # day 40 is a woman's day 00
        ("5318012902010001", "nik_invalid_component"),  # 29 Feb in 1901 and 2001
    ],
)
def test_normalise_nik_rejects_with_a_stable_code(given: str, code: str) -> None:
    error = normalise_nik(given)
    assert isinstance(error, FieldError)
    assert (error.field, error.code) == ("nik", code)
    assert codes(nik=given) == [("nik", code)]


def test_nik_with_day_field_81_is_rejected() -> None:
    assert isinstance(normalise_nik("5318018101900001"), FieldError)


# --- every error, with field and a bilingual message -------------------------------------------


ALL_CODES = {
    # code: (field, the override that triggers it)
    "program_id_required": ("program_id", {"program_id": "  "}),
    "nik_required": ("nik", {"nik": ""}),
    "nik_invalid_format": ("nik", {"nik": "5318O10101900001"}),
    "nik_invalid_length": ("nik", {"nik": "53180101"}),
    "nik_invalid_component": ("nik", {"nik": "0018010101900001"}),
    "name_required": ("full_name", {"full_name": " \t "}),
    "name_too_long": ("full_name", {"full_name": "A" * (MAX_NAME_LENGTH + 1)}),
    "birth_date_required": ("birth_date", {"birth_date": " "}),
    "birth_date_invalid": ("birth_date", {"birth_date": "31/02/1990"}),
    "gender_invalid": ("gender", {"gender": "X"}),
    "village_required": ("village", {"village": ""}),
    "district_required": ("district", {"district": "  "}),
    "place_too_long": ("village", {"village": "V" * 101}),
    "phone_invalid": ("phone", {"phone": "12345"}),
    "occupation_too_long": ("occupation", {"occupation": "O" * 101}),
}


@pytest.mark.parametrize("code", sorted(ALL_CODES))
def test_each_error_code_names_its_field_with_a_bilingual_message(code: str) -> None:
    field, override = ALL_CODES[code]
    errors = errors_of(**override)
    assert [(e.field, e.code) for e in errors] == [(field, code)]
    indonesian, _, english = errors[0].message.partition(" / ")
    assert indonesian.strip() and english.strip(), errors[0].message
    assert indonesian != english


def test_place_too_long_applies_to_the_district_as_well() -> None:
    assert codes(district="K" * 101) == [("district", "place_too_long")]


def test_lengths_exactly_at_the_limit_are_accepted() -> None:
    result = valid(
        full_name="A" * MAX_NAME_LENGTH, village="V" * 100, district="K" * 100, occupation="O" * 100
    )
    assert len(result.full_name) == MAX_NAME_LENGTH
    assert (len(result.village), len(result.district), len(result.occupation)) == (100, 100, 100)


def test_name_length_is_measured_after_collapsing_whitespace() -> None:
    name = " ".join(["Ana"] * 25)  # 99 characters once collapsed, many more as given
    assert len(valid(full_name=name.replace(" ", "     ")).full_name) == 99


def test_every_error_is_reported_at_once() -> None:
    result = validate_registration(
        RegistrationRequested(
            program_id="",
            nik="12AB",
            full_name="",
            birth_date="kemarin",
            gender="?",
            village="",
            district="",
            occupation="x" * 101,
            phone="12345",
        )
    )
    assert isinstance(result, list)
    assert [(e.field, e.code) for e in result] == [
        ("program_id", "program_id_required"),
        ("nik", "nik_invalid_format"),
        ("full_name", "name_required"),
        ("birth_date", "birth_date_invalid"),
        ("gender", "gender_invalid"),
        ("village", "village_required"),
        ("district", "district_required"),
        ("occupation", "occupation_too_long"),
        ("phone", "phone_invalid"),
    ]


def test_missing_optional_fields_still_give_all_required_errors() -> None:
    result = validate_registration(RegistrationRequested(program_id=PROGRAM, nik=NIK))
    assert isinstance(result, list)
    assert {e.code for e in result} == {
        "name_required",
        "birth_date_required",
        "gender_invalid",
        "village_required",
        "district_required",
    }


# --- the worker's identity ---------------------------------------------------------------------


def test_worker_id_is_deterministic_for_the_same_programme_and_nik() -> None:
    first = worker_id_for(PROGRAM, NIK)
    assert first == worker_id_for(PROGRAM, NIK)
    assert uuid.UUID(first).version == 5
    assert valid().worker_id == first
    # a replayed request that differs only in formatting is the same worker
    assert valid(nik="5318 0101 0190 0001", full_name="YOHANES  BILI").worker_id == first


def test_worker_id_differs_across_programmes_and_niks() -> None:
    ids = {
        worker_id_for(PROGRAM, NIK),
        worker_id_for("sbd-pekerja-rentan-2026q1", NIK),
        worker_id_for(PROGRAM, NIK_WOMAN),
    }
    assert len(ids) == 3
