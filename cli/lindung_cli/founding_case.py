"""The founding case as data: Sumba Barat Daya's programme and a generated list of its workers.

Deterministic (seeded), so the demo and the end-to-end test expect exact counts. Names and villages
are synthetic; kecamatan are the regency's real ones (Kemendagri 53.18.01–11, docs/domain.md).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from importlib import resources

import yaml

from lindung_contracts import ProgramPublished

KECAMATAN = {
    "01": "Loura",
    "02": "Wewewa Utara",
    "03": "Wewewa Timur",
    "04": "Wewewa Barat",
    "05": "Wewewa Selatan",
    "06": "Kodi Bangedo",
    "07": "Kodi",
    "08": "Kodi Utara",
    "09": "Kota Tambolaka",
    "10": "Wewewa Tengah",
    "11": "Kodi Balaghar",
}
MALE = [
    "Yohanes",
    "Petrus",
    "Agustinus",
    "Daniel",
    "Umbu",
    "Markus",
    "Yakobus",
    "Lukas",
    "Stefanus",
    "Paulus",
]
FEMALE = [
    "Maria",
    "Yuliana",
    "Magdalena",
    "Rambu",
    "Margaretha",
    "Elisabeth",
    "Agustina",
    "Kristina",
    "Ana",
    "Veronika",
]
FAMILY = [
    "Bili",
    "Lede",
    "Malo",
    "Dappa",
    "Kaka",
    "Ngongo",
    "Tanggu",
    "Bulu",
    "Wora",
    "Lero",
    "Kaleka",
    "Mbani",
]
OCCUPATIONS = [
    "Petani",
    "Nelayan",
    "Peternak",
    "Pedagang",
    "Pengemudi ojek",
    "Perajin tenun",
    "Buruh harian",
]


def founding_program() -> ProgramPublished:
    text = (
        resources.files("lindung_cli").joinpath("examples/sumba-barat-daya-2025q4.yaml").read_text()
    )
    return ProgramPublished.model_validate(yaml.safe_load(text))


@dataclass
class Expected:
    """What the demo must end with, whatever order the broker delivers in."""

    requests: int = 0
    registered: int = 0
    repeated: int = 0
    registration_rejected: int = 0
    confirmed: int = 0
    eligibility_rejected: int = 0
    quota_exhausted: int = 0
    malformed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def _nik(district: str, born: date, gender: str, serial: int, region: str = "5318") -> str:
    day = born.day + (40 if gender == "F" else 0)
    return f"{region}{district}{day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"


def generate_rows(
    program: ProgramPublished, seed: int = 20251001
) -> tuple[list[dict[str, str]], Expected]:
    """`quota` eligible workers plus a few over the quota, deliberately bad and ineligible rows."""
    rng = random.Random(seed)
    serial = 0

    home = program.region_code
    elsewhere = "5311" if home != "5311" else "5318"  # Sumba Timur, or Sumba Barat Daya

    def worker(*, age: int | None = None, region: str = home) -> dict[str, str]:
        nonlocal serial
        serial += 1
        gender = rng.choice("MF")
        years = age if age is not None else rng.randint(program.min_age + 1, program.max_age - 1)
        born = date(program.coverage_start.year - years - 1, rng.randint(1, 12), rng.randint(1, 28))
        district = rng.choice(sorted(KECAMATAN))
        first = rng.choice(MALE if gender == "M" else FEMALE)
        return {
            "nik": _nik(district, born, gender, serial % 10000, region),
            "full_name": f"{first} {rng.choice(FAMILY)}",
            "birth_date": born.strftime("%d/%m/%Y") if serial % 2 else born.isoformat(),
            "gender": gender,
            "occupation": rng.choice(OCCUPATIONS),
            "village": f"Desa {KECAMATAN[district]} {rng.randint(1, 15):02d}",
            "district": KECAMATAN[district],
            "phone": f"0812{rng.randint(10_000_000, 99_999_999)}" if serial % 3 == 0 else "",
        }

    expected = Expected()
    rows = [worker() for _ in range(program.quota)]
    over_quota = [worker() for _ in range(5)]

    bad: list[tuple[dict[str, str], str]] = []
    for code, change in [
        ("nik_invalid_length", lambda r: r.update(nik=r["nik"][:15])),
        ("nik_invalid_length", lambda r: r.update(nik=r["nik"] + "7")),
        ("nik_required", lambda r: r.update(nik="")),
        ("nik_invalid_format", lambda r: r.update(nik=r["nik"][:10] + "AB" + r["nik"][12:])),
        ("nik_invalid_format", lambda r: r.update(nik="O" + r["nik"][1:])),
        ("nik_invalid_component", lambda r: r.update(nik=r["nik"][:8] + "13" + r["nik"][10:])),
        ("nik_invalid_component", lambda r: r.update(nik="99" + r["nik"][2:])),
        ("name_required", lambda r: r.update(full_name="")),
        ("name_required", lambda r: r.update(full_name="   ")),
        ("birth_date_invalid", lambda r: r.update(birth_date="31/02/1990")),
        ("birth_date_invalid", lambda r: r.update(birth_date="kemarin")),
        ("birth_date_required", lambda r: r.update(birth_date="")),
        ("gender_invalid", lambda r: r.update(gender="X")),
        ("gender_invalid", lambda r: r.update(gender="")),
        ("phone_invalid", lambda r: r.update(phone="12345")),
        ("phone_invalid", lambda r: r.update(phone="0812-ABC")),
        ("village_required", lambda r: r.update(village="")),
        ("district_required", lambda r: r.update(district="")),
        ("name_too_long", lambda r: r.update(full_name="A" * 150)),
        ("nik_required", lambda r: r.update(nik="  ")),
    ]:
        row = worker()
        change(row)
        bad.append((row, code))

    ineligible: list[tuple[dict[str, str], str]] = []
    for _ in range(5):
        ineligible.append((worker(region=elsewhere), "region_mismatch"))  # another regency
    for _ in range(3):
        ineligible.append((worker(age=program.min_age - 3), "age_below_minimum"))
    for _ in range(3):
        ineligible.append((worker(age=program.max_age + 10), "age_above_maximum"))
    for _ in range(3):
        row = worker()
        row["birth_date"] = "1970-01-01"  # the NIK says otherwise
        ineligible.append((row, "birth_date_mismatch"))
    for _ in range(3):
        row = worker()
        row["gender"] = "F" if row["gender"] == "M" else "M"
        ineligible.append((row, "gender_mismatch"))

    repeats = [dict(rows[i]) for i in range(0, 50, 10)]  # the same worker sent again

    everything = rows + over_quota + [r for r, _ in bad] + [r for r, _ in ineligible] + repeats
    rng.shuffle(everything)

    expected.requests = len(everything)
    expected.registered = len(rows) + len(over_quota) + len(ineligible)
    expected.registration_rejected = len(bad)
    expected.repeated = len(repeats)
    expected.confirmed = program.quota
    expected.quota_exhausted = len(over_quota)
    expected.eligibility_rejected = len(ineligible) + len(over_quota)
    reasons: dict[str, int] = {}
    for _, code in [*bad, *ineligible]:
        reasons[code] = reasons.get(code, 0) + 1
    reasons["quota_exhausted"] = len(over_quota)
    expected.reasons = reasons
    return everything, expected


MALFORMED_MESSAGES = [
    b'{"program_id": "sbd-pekerja-rentan-2025q4", "nik": "5318',  # cut off mid-way
    b"NIK;Nama Lengkap\n5318010101900001;Ana",  # a CSV line sent as a message
]
