"""Numbers, money, dates and times as Indonesian staff read them, for the web pages' templates.

Pure functions, registered as Jinja filters of the same names by `register`. Indonesian writes
"." between thousands and "," before decimals (5.600; 87,5 %), "." between hours and minutes
(08.15), and its own month names; Python's locale machinery is not used, because the process
locale is the server's, not the reader's, and switching it is global and not thread-safe.
Money is whole Rupiah (int) everywhere in Lindung, so nothing here rounds money.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from lindung_runtime.bahasa import BULAN, BULAN_SINGKAT

if TYPE_CHECKING:  # the pages import jinja2; these functions do not need it
    import jinja2

BULAN_PANJANG = BULAN

_PERIOD = re.compile(r"(\d{4})-(\d{2})")


def angka(n: int) -> str:
    """`n` with "." between thousands: 5.600, -1.234, 0 (a "," would read as a decimal)."""
    return f"{n:,}".replace(",", ".")


def rupiah(n: int) -> str:
    """Whole Rupiah as invoices write them: "Rp 282.240.000"; a negative amount "-Rp 1.000"."""
    return f"-Rp {angka(-n)}" if n < 0 else f"Rp {angka(n)}"


def _day(d: date | datetime | str) -> date:
    """The calendar day of `d`; an aware datetime's day in UTC, the zone `waktu` shows. A string
    is an ISO date (as events' details carry them)."""
    if isinstance(d, str):
        return date.fromisoformat(d[:10])
    if isinstance(d, datetime):
        return (d.astimezone(UTC) if d.tzinfo is not None else d).date()
    return d


def rupiah_singkat(n: int) -> str:
    """Rupiah for a chart's axis, where "Rp 200.000.000" would take a third of a phone's
    width: "Rp 200 jt", "Rp 1,5 M", "Rp 17 rb"."""
    for size, unit in ((1_000_000_000, "M"), (1_000_000, "jt"), (1_000, "rb")):
        if abs(n) >= size:
            value = f"{n / size:.1f}".rstrip("0").rstrip(".").replace(".", ",")
            return f"Rp {value} {unit}"
    return rupiah(n)


def desa(name: str) -> str:
    """ "Desa Kalena Wanno", but a name written with its kind already ("Desa ...", "Kelurahan
    ...") as it is."""
    if name.split(" ", 1)[0].casefold() in {"desa", "kelurahan"}:
        return name
    return f"Desa {name}"


def tanggal(d: date | datetime | str | None) -> str:
    """A short date, "31 Des 2025", for tables where space is scarce; "" for no date.

    Day and abbreviated month name, never 31/12/2025: numeric dates are read day-first or
    month-first depending on the reader, a month name is not."""
    if not d:
        return ""
    day = _day(d)
    return f"{day.day} {BULAN_SINGKAT[day.month - 1]} {day.year}"


def tanggal_panjang(d: date | datetime | str | None) -> str:
    """A date in full, "31 Desember 2025", for sentences and headings; "" for no date."""
    if not d:
        return ""
    day = _day(d)
    return f"{day.day} {BULAN_PANJANG[day.month - 1]} {day.year}"


def waktu(dt: datetime) -> str:
    """A moment, "29 Okt 2025 08.15 UTC", always in UTC and saying so.

    Staff sit in three Indonesian time zones (WIB, WITA, WIT); the server does not know which
    one the reader is in, so it names the zone it shows rather than guessing. Stored naive
    datetimes are UTC."""
    moment = dt.astimezone(UTC) if dt.tzinfo is not None else dt
    return f"{tanggal(moment)} {moment.hour:02d}.{moment.minute:02d} UTC"


def bulan(period: str) -> str:
    """A billing period "2025-10" (as SQL and the events write it) as "Okt 2025"."""
    match = _PERIOD.fullmatch(period)
    if match is None or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"not a YYYY-MM period: {period!r}")
    return f"{BULAN_SINGKAT[int(match[2]) - 1]} {match[1]}"


def persen(part: int, whole: int) -> str:
    """`part` as a share of `whole`, "87,5 %", one decimal rounded half up; "0 %" for no whole.

    Computed in integers, so 1 of 8 is exactly 12,5 % and never 12,4 % from a float's error;
    a whole of 0 (nothing yet) reads as 0 % rather than failing the page."""
    if whole == 0:
        return "0 %"
    negative = (part < 0) != (whole < 0) and part != 0
    tenths = (abs(part) * 2000 // abs(whole) + 1) // 2  # 1000 × part / whole, rounded half up
    sign = "-" if negative and tenths else ""
    return f"{sign}{angka(tenths // 10)},{tenths % 10} %"


def sisa_hari(end: date, today: date) -> str:
    """How far `end` (a last covered day, a deadline) is from `today`, in words staff act on:
    "12 hari lagi", "berakhir hari ini", "berakhir 3 hari lalu"."""
    days = (end - today).days
    if days == 0:
        return "berakhir hari ini"
    if days > 0:
        return f"{angka(days)} hari lagi"
    return f"berakhir {angka(-days)} hari lalu"


FILTERS: dict[str, Callable[..., str]] = {
    "angka": angka,
    "rupiah": rupiah,
    "rupiah_singkat": rupiah_singkat,
    "desa": desa,
    "tanggal": tanggal,
    "tanggal_panjang": tanggal_panjang,
    "waktu": waktu,
    "bulan": bulan,
    "persen": persen,
    "sisa_hari": sisa_hari,
}


def register(env: jinja2.Environment) -> None:
    """Make every formatter a filter of `env` under its own name: `{{ total|rupiah }}`,
    `{{ paid|persen(invoiced) }}`, `{{ term_end|sisa_hari(today) }}`."""
    filters: dict[str, Any] = env.filters
    filters.update(FILTERS)
