"""Reading registration spreadsheets (CSV) as staff fill them in: English or Indonesian headers."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from lindung_contracts import RegistrationRequested

#: Column headers accepted for each contract field (compared case- and space-insensitively).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "program_id": ("program_id", "program", "kode program"),
    "nik": ("nik", "no nik", "nomor induk kependudukan"),
    "full_name": ("full_name", "nama lengkap", "nama", "name"),
    "birth_date": ("birth_date", "tanggal lahir", "tgl lahir"),
    "gender": ("gender", "jenis kelamin", "jk"),
    "occupation": ("occupation", "pekerjaan"),
    "village": ("village", "desa/kelurahan", "desa", "kelurahan"),
    "district": ("district", "kecamatan"),
    "phone": ("phone", "no hp", "nomor hp", "telepon"),
}
#: The template staff fill in: Indonesian header → contract field, in column order.
TEMPLATE_COLUMNS: dict[str, str] = {
    "NIK": "nik",
    "Nama Lengkap": "full_name",
    "Tanggal Lahir": "birth_date",
    "Jenis Kelamin": "gender",
    "Pekerjaan": "occupation",
    "Desa/Kelurahan": "village",
    "Kecamatan": "district",
    "No HP": "phone",
}


def _normal(header: str) -> str:
    return " ".join(header.strip().lower().replace("_", " ").split())


_LOOKUP = {_normal(alias): field for field, aliases in COLUMN_ALIASES.items() for alias in aliases}


def read_requests(path: Path, program_id: str | None) -> Iterator[RegistrationRequested]:
    """One request per row, streamed; values are passed on as given for the service to judge."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        fields = [_LOOKUP.get(_normal(h)) for h in header]
        if "nik" not in fields:
            raise ValueError(f"{path}: no NIK column (expected one of {COLUMN_ALIASES['nik']})")
        if "program_id" not in fields and not program_id:
            raise ValueError(f"{path}: no program column; pass --program")
        for row in reader:
            values = {f: v for f, v in zip(fields, row, strict=False) if f}
            if program_id:
                values["program_id"] = program_id
            values["phone"] = values.get("phone") or None  # type: ignore[assignment]
            yield RegistrationRequested(**values)  # type: ignore[arg-type]


def write_requests(path: Path, rows: list[dict[str, str]]) -> None:
    """Write rows in the Indonesian template layout (what the demo hands to `register`)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TEMPLATE_COLUMNS)
        for row in rows:
            writer.writerow([row.get(field) or "" for field in TEMPLATE_COLUMNS.values()])
