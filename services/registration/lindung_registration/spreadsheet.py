"""Registration spreadsheets as staff fill them in: CSV or XLSX, Indonesian or English headers.

Read row by row (csv module, openpyxl in read-only mode), never whole, so a 100,000-row file
needs no more memory than a small one. Values are handed on as text for the domain to judge.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from lindung_contracts import RegistrationRequested

#: Column headers accepted for each field (compared case-, space- and underscore-insensitively).
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
#: The template staff fill in: Indonesian header → field, in column order.
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
ROW_COLUMN = "Baris / Row"
ERRORS_COLUMN = "Alasan Ditolak / Rejection Reason"
MAX_CELL_CHARS = 1000  # longer cells are cut: no field is valid beyond 100 characters anyway
FORMATS = ("csv", "xlsx")


class SpreadsheetError(ValueError):
    """The file as a whole cannot be read (not the template, not CSV/XLSX)."""


def _normal(header: str) -> str:
    return " ".join(header.strip().lower().replace("_", " ").split())


_LOOKUP = {_normal(alias): field for field, aliases in COLUMN_ALIASES.items() for alias in aliases}


def format_of(filename: str, content_type: str | None = None) -> str | None:
    name = filename.lower()
    if name.endswith(".xlsx") or (content_type or "").endswith("spreadsheetml.sheet"):
        return "xlsx"
    if name.endswith((".csv", ".txt")) or (content_type or "").startswith("text/"):
        return "csv"
    return None


def read_rows(path: Path, file_format: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number as the spreadsheet shows it, field → text) for each non-empty row."""
    rows = _csv_rows(path) if file_format == "csv" else _xlsx_rows(path)
    header = next(rows, None)
    if header is None:
        raise SpreadsheetError("Berkas kosong / The file is empty")
    fields = [_LOOKUP.get(_normal(h)) for h in header]
    if "nik" not in fields:
        raise SpreadsheetError(
            "Kolom NIK tidak ditemukan; gunakan template / No NIK column; use the template "
            f"({', '.join(TEMPLATE_COLUMNS)})"
        )
    for number, row in enumerate(rows, start=2):
        values = {f: v[:MAX_CELL_CHARS] for f, v in zip(fields, row, strict=False) if f}
        if any(v.strip() for v in values.values()):
            yield number, values


def _csv_rows(path: Path) -> Iterator[list[str]]:
    with path.open("rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        first_line = text.readline(65536)
        text.seek(0)
        # Excel in an Indonesian locale saves CSV with `;` (the comma is the decimal sign).
        delimiter = max((",", ";", "\t"), key=first_line.count)
        try:
            yield from csv.reader(text, delimiter=delimiter)
        except csv.Error as error:
            raise SpreadsheetError(f"CSV tidak terbaca / CSV is unreadable: {error}") from error


def _xlsx_rows(path: Path) -> Iterator[list[str]]:
    from zipfile import BadZipFile

    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (BadZipFile, KeyError, OSError, ValueError) as error:
        raise SpreadsheetError(f"XLSX tidak terbaca / XLSX is unreadable: {error}") from error
    try:
        sheet = workbook.worksheets[0]
        for row in sheet.iter_rows(values_only=True):
            yield [_cell_text(value) for value in row]
    finally:
        workbook.close()


def _cell_text(value: Any) -> str:
    """Cells as the text staff typed: dates as ISO, whole numbers without `.0`."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def template_csv() -> str:
    return _csv_line(list(TEMPLATE_COLUMNS))


def request_from_row(program_id: str, values: dict[str, str]) -> RegistrationRequested:
    """A row as a registration request, values as given (the domain judges them)."""
    return RegistrationRequested(
        program_id=program_id,
        nik=values.get("nik", ""),
        full_name=values.get("full_name", ""),
        birth_date=values.get("birth_date", ""),
        gender=values.get("gender", ""),
        occupation=values.get("occupation", ""),
        village=values.get("village", ""),
        district=values.get("district", ""),
        phone=values.get("phone") or None,
    )


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue()


def rejected_csv_header() -> str:
    """errors.csv: the template's columns, then the row number and the reason. Staff fix the
    rows and upload this same file again (the extra columns are ignored)."""
    return _csv_line([*TEMPLATE_COLUMNS, ROW_COLUMN, ERRORS_COLUMN])


def rejected_csv_line(number: int, values: dict[str, str], reason: str) -> str:
    return _csv_line([*(values.get(f, "") for f in TEMPLATE_COLUMNS.values()), number, reason])


def write_template_csv(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """Write rows in the template layout (how the demo prepares its spreadsheet)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TEMPLATE_COLUMNS)
        for row in rows:
            writer.writerow([row.get(field) or "" for field in TEMPLATE_COLUMNS.values()])
