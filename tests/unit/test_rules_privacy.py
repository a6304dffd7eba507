"""Masking of NIKs and phone numbers, property-based: a full NIK never reaches a log or a mail."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lindung_eligibility.domain import nik_birth_parts
from lindung_registration.domain import normalise_nik
from lindung_runtime.privacy import mask_nik, mask_phone, mask_text, mask_values

FAST = settings(max_examples=200, deadline=None, database=None)

ascii_digits = st.text(alphabet="0123456789", min_size=16, max_size=16)
# Text with no decimal digit of any script, to surround generated NIKs.
non_digit_text = st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs")), max_size=40)


@st.composite
def valid_niks(draw: st.DrawFn) -> tuple[str, date, str, int]:
    """A well-formed Sumba Barat Daya NIK and the facts it encodes."""
    district = draw(st.integers(min_value=1, max_value=11))
    born = draw(st.dates(min_value=date(1930, 1, 1), max_value=date(2025, 12, 31)))
    gender = draw(st.sampled_from("MF"))
    serial = draw(st.integers(min_value=1, max_value=9999))
    day = born.day + (40 if gender == "F" else 0)
    nik = f"5318{district:02d}{day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"
    return nik, born, gender, serial


# --- mask_nik ----------------------------------------------------------------------------------


def test_mask_nik_keeps_region_and_serial() -> None:
    assert mask_nik("5318010101900001") == "5318********0001"


@FAST
@given(ascii_digits)
def test_mask_nik_keeps_first_and_last_four_and_stars_eight(nik: str) -> None:
    masked = mask_nik(nik)
    assert len(masked) == 16
    assert masked[:4] == nik[:4]
    assert masked[-4:] == nik[-4:]
    assert masked[4:12] == "*" * 8
    assert masked.count("*") == 8


@FAST
@given(ascii_digits)
def test_mask_nik_is_idempotent(nik: str) -> None:
    assert mask_nik(mask_nik(nik)) == mask_nik(nik)


@pytest.mark.parametrize("short", ["", "1", "1234", "12345678"])
def test_mask_nik_hides_short_values_entirely(short: str) -> None:
    assert mask_nik(short) == "*" * len(short)


# --- mask_phone --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+6281234567890", "+6281******890"),
        ("081234567890", "08123****890"),
        ("1234567", "*******"),
    ],
)
def test_mask_phone_keeps_prefix_and_last_three(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


@FAST
@given(st.text(alphabet="0123456789", min_size=9, max_size=13))
def test_masked_e164_phone_never_shows_the_full_number(national: str) -> None:
    phone = "+628" + national
    masked = mask_phone(phone)
    assert len(masked) == len(phone)
    assert masked != phone
    assert masked[:5] == phone[:5] and masked[-3:] == phone[-3:]


# --- mask_text ---------------------------------------------------------------------------------


@FAST
@given(prefix=non_digit_text, nik=ascii_digits, suffix=non_digit_text)
def test_mask_text_never_contains_an_embedded_nik(prefix: str, nik: str, suffix: str) -> None:
    masked = mask_text(prefix + nik + suffix)
    assert nik not in masked
    assert nik[:4] + "*" * 8 + nik[-4:] in masked


@FAST
@given(st.lists(st.tuples(non_digit_text, ascii_digits), min_size=1, max_size=5), non_digit_text)
def test_mask_text_masks_every_nik_in_a_text(pieces: list[tuple[str, str]], tail: str) -> None:
    text = "".join(f"{words} {nik} " for words, nik in pieces) + tail
    masked = mask_text(text)
    for _, nik in pieces:
        assert nik not in masked


@FAST
@given(st.text(max_size=80))
def test_mask_text_is_idempotent_on_any_text(text: str) -> None:
    once = mask_text(text)
    assert mask_text(once) == once


@FAST
@given(prefix=non_digit_text, nik=ascii_digits, suffix=non_digit_text)
def test_mask_text_is_idempotent_on_text_with_a_nik(prefix: str, nik: str, suffix: str) -> None:
    once = mask_text(prefix + nik + suffix)
    assert mask_text(once) == once


@FAST
@given(st.text(alphabet="0123456789", min_size=9, max_size=12), st.sampled_from(["0", "62", "+62"]))
def test_mask_text_hides_mobile_numbers(rest: str, prefix: str) -> None:
    phone = f"{prefix}8{rest}"
    masked = mask_text(f"hubungi {phone} segera")
    assert phone not in masked
    assert masked.startswith("hubungi ") and masked.endswith(" segera")


def test_mask_text_leaves_ordinary_numbers_alone() -> None:
    text = "Iuran Rp 16800 untuk 3 bulan, total 50400; 17 digit 12345678901234567"
    assert mask_text(text) == text


def test_nik_after_a_non_ascii_digit_is_still_masked() -> None:
    assert "5318010101900001" not in mask_text("٣5318010101900001")


def test_formatted_phone_number_in_text_is_masked() -> None:
    masked = mask_text("HP: +62 812-3456-7890")
    assert "3456-7890" not in masked


# --- mask_values -------------------------------------------------------------------------------


def test_mask_values_recurses_into_dicts_lists_and_tuples() -> None:
    event = {
        "nik": "5318010101900001",
        "nested": {"phones": ["+6281234567890", "no phone"], "pair": ("x 5318010101900001 y", 5)},
        "count": 3,
        "flag": None,
    }
    assert mask_values(event) == {
        "nik": "5318********0001",
        "nested": {"phones": ["+6281******890", "no phone"], "pair": ("x 5318********0001 y", 5)},
        "count": 3,
        "flag": None,
    }
    assert isinstance(mask_values(event)["nested"]["pair"], tuple)


json_like = st.recursive(
    st.one_of(st.none(), st.integers(), st.booleans(), non_digit_text, ascii_digits),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.text(alphabet="abcdefgh_", min_size=1, max_size=6), children, max_size=4
        ),
    ),
    max_leaves=12,
)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


@FAST
@given(json_like)
def test_mask_values_masks_every_string_at_any_depth_and_keeps_the_shape(value: object) -> None:
    masked = mask_values(value)
    originals, results = _strings(value), _strings(masked)
    assert len(originals) == len(results)
    for original, result in zip(originals, results, strict=True):
        assert result == mask_text(original)
        if len(original) == 16 and original.isascii() and original.isdigit():
            assert original not in result
    assert mask_values(masked) == masked


# --- generated valid NIKs ----------------------------------------------------------------------


@FAST
@given(valid_niks())
def test_generated_valid_niks_are_accepted_and_their_birth_parts_recovered(
    case: tuple[str, date, str, int],
) -> None:
    nik, born, gender, serial = case
    assert normalise_nik(nik) == nik
    assert nik_birth_parts(nik) == (born.day, born.month, born.year % 100, gender)
    assert int(nik[-4:]) == serial
    assert mask_nik(nik) == nik[:4] + "********" + nik[-4:]


@FAST
@given(valid_niks())
def test_valid_nik_with_its_day_pushed_past_31_is_rejected(
    case: tuple[str, date, str, int],
) -> None:
    nik, _, gender, _ = case
    bad_day = 32 + (40 if gender == "F" else 0)  # the 32nd (72nd for a woman) is never a date
    error = normalise_nik(nik[:6] + f"{bad_day:02d}" + nik[8:])
    assert not isinstance(error, str)
    assert (error.field, error.code) == ("nik", "nik_invalid_component")
