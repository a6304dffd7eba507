"""The staff pages' Indonesian formatting: thousands with ".", decimals with ",", Indonesian
month names, times with "." in UTC, shares rounded half up, days left in words, and the Jinja
filters that carry them into the templates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from lindung_registration.web import format
from lindung_registration.web.format import (
    angka,
    bulan,
    persen,
    register,
    rupiah,
    sisa_hari,
    tanggal,
    tanggal_panjang,
    waktu,
)

WIB = timezone(timedelta(hours=7))


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (7, "7"),
        (999, "999"),
        (1000, "1.000"),
        (5600, "5.600"),
        (-1234, "-1.234"),
        (-999, "-999"),
        (282_240_000, "282.240.000"),
        (1_000_000_000_000, "1.000.000.000.000"),
    ],
)
def test_angka_separates_thousands_with_a_dot(n: int, text: str) -> None:
    assert angka(n) == text


def test_rupiah_is_whole_rupiah_with_the_currency_first() -> None:
    assert rupiah(282_240_000) == "Rp 282.240.000"
    assert rupiah(0) == "Rp 0"
    assert rupiah(16_800) == "Rp 16.800"
    assert rupiah(-1_000) == "-Rp 1.000"


def test_tanggal_uses_indonesian_month_abbreviations() -> None:
    months = [tanggal(date(2025, month, 1)).split()[1] for month in range(1, 13)]
    assert months == [
        "Jan",
        "Feb",
        "Mar",
        "Apr",
        "Mei",
        "Jun",
        "Jul",
        "Agu",
        "Sep",
        "Okt",
        "Nov",
        "Des",
    ]
    assert tanggal(date(2025, 12, 31)) == "31 Des 2025"
    assert tanggal(date(2026, 1, 5)) == "5 Jan 2026"  # no leading zero
    assert tanggal(None) == ""


def test_tanggal_of_a_datetime_is_its_day_in_utc() -> None:
    assert tanggal(datetime(2025, 10, 29, 23, 59)) == "29 Okt 2025"  # naive: UTC already
    # 05.00 WIB on New Year's Day is still 31 December in UTC, the zone `waktu` shows.
    assert tanggal(datetime(2026, 1, 1, 5, 0, tzinfo=WIB)) == "31 Des 2025"
    assert tanggal(datetime(2026, 1, 1, 7, 0, tzinfo=WIB)) == "1 Jan 2026"


def test_tanggal_panjang_writes_the_month_in_full() -> None:
    assert tanggal_panjang(date(2025, 12, 31)) == "31 Desember 2025"
    assert tanggal_panjang(date(2025, 8, 17)) == "17 Agustus 2025"
    assert tanggal_panjang(date(2026, 2, 1)) == "1 Februari 2026"
    assert tanggal_panjang(datetime(2026, 1, 1, 5, 0, tzinfo=WIB)) == "31 Desember 2025"
    assert tanggal_panjang(None) == ""


def test_waktu_is_utc_with_a_dot_between_hours_and_minutes() -> None:
    assert waktu(datetime(2025, 10, 29, 8, 15)) == "29 Okt 2025 08.15 UTC"
    assert waktu(datetime(2025, 10, 29, 8, 15, 59, tzinfo=UTC)) == "29 Okt 2025 08.15 UTC"
    assert waktu(datetime(2025, 10, 29, 15, 15, tzinfo=WIB)) == "29 Okt 2025 08.15 UTC"
    assert waktu(datetime(2026, 1, 1, 6, 5, tzinfo=WIB)) == "31 Des 2025 23.05 UTC"
    assert waktu(datetime(2025, 3, 1, 0, 0)) == "1 Mar 2025 00.00 UTC"


def test_bulan_reads_a_billing_period() -> None:
    assert bulan("2025-10") == "Okt 2025"
    assert bulan("2026-01") == "Jan 2026"
    assert bulan("2026-05") == "Mei 2026"
    for wrong in ["2025-13", "2025-00", "2025-1", "Okt 2025", "2025-10-01", ""]:
        with pytest.raises(ValueError):
            bulan(wrong)


@pytest.mark.parametrize(
    ("part", "whole", "text"),
    [
        (7, 8, "87,5 %"),
        (1, 3, "33,3 %"),
        (2, 3, "66,7 %"),
        (1, 16, "6,3 %"),  # 6,25 rounds half up, exactly
        (1, 80, "1,3 %"),  # 1,25 likewise
        (1, 2000, "0,1 %"),  # 0,05
        (1, 2001, "0,0 %"),
        (0, 5, "0,0 %"),
        (3, 3, "100,0 %"),
        (5, 0, "0 %"),
        (0, 0, "0 %"),
        (123_450, 10, "1.234.500,0 %"),
        (-1, 8, "-12,5 %"),
    ],
)
def test_persen_has_one_decimal_after_a_comma(part: int, whole: int, text: str) -> None:
    assert persen(part, whole) == text


def test_sisa_hari_says_how_far_the_end_is() -> None:
    today = date(2025, 12, 19)
    assert sisa_hari(date(2025, 12, 31), today) == "12 hari lagi"
    assert sisa_hari(date(2025, 12, 20), today) == "1 hari lagi"
    assert sisa_hari(today, today) == "berakhir hari ini"
    assert sisa_hari(date(2025, 12, 16), today) == "berakhir 3 hari lalu"
    assert sisa_hari(date(2029, 1, 1), today) == "1.109 hari lagi"


NAMES = ["angka", "rupiah", "tanggal", "tanggal_panjang", "waktu", "bulan", "persen", "sisa_hari"]


def test_register_adds_every_formatter_as_a_filter_of_its_name() -> None:
    env = SimpleNamespace(filters={"upper": str.upper})
    register(env)  # type: ignore[arg-type]  # only `filters` is used
    assert env.filters["upper"] is str.upper  # Jinja's own filters stay
    assert set(NAMES) <= set(env.filters)
    assert env.filters["rupiah"](5600) == "Rp 5.600"
    assert env.filters["persen"](7, 8) == "87,5 %"
    assert env.filters["sisa_hari"](date(2025, 12, 31), date(2025, 12, 19)) == "12 hari lagi"


def test_the_filters_render_in_a_jinja_template() -> None:
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment(autoescape=True)
    register(env)
    template = env.from_string(
        "{{ total|rupiah }} | {{ paid|persen(invoiced) }} | {{ end|tanggal_panjang }} | "
        "{{ end|sisa_hari(today) }} | {{ '2025-10'|bulan }}"
    )
    text = template.render(
        total=282_240_000,
        paid=7,
        invoiced=8,
        end=date(2025, 12, 31),
        today=date(2025, 12, 28),
    )
    assert text == "Rp 282.240.000 | 87,5 % | 31 Desember 2025 | 3 hari lagi | Okt 2025"


def test_a_desa_is_named_once() -> None:
    assert format.desa("Kalena Wanno") == "Desa Kalena Wanno"
    assert format.desa("Desa Kodi Balaghar 14") == "Desa Kodi Balaghar 14"
    assert format.desa("kelurahan Weetebula") == "kelurahan Weetebula"


def test_rupiah_for_a_charts_axis_is_short() -> None:
    assert format.rupiah_singkat(200_000_000) == "Rp 200 jt"
    assert format.rupiah_singkat(1_500_000_000) == "Rp 1,5 M"
    assert format.rupiah_singkat(16_800) == "Rp 16,8 rb"
    assert format.rupiah_singkat(500) == "Rp 500"
    assert format.tanggal("2025-12-31") == "31 Des 2025"
