"""The handover to BPJS Ketenagakerjaan, and the membership numbers (nomor KPJ) it gives back.

The handover lists the workers confirmed for one term of a programme (`worker_term`, from their
`eligibility.confirmed`), in the layout of `HANDOVER_COLUMNS` (docs/api.md), as CSV or XLSX. The
rows are read as one streamed query, a page at a time: a 100,000-worker term is never one query
per row, nor all in memory at once. Every cell goes through `safe_cell`, the one rule of every
spreadsheet Lindung writes, so a name sent as `=HYPERLINK(…)` is text, never a formula; in XLSX
every cell is a string cell besides.

The branch gives each worker a number. An uploaded NIK → NOMOR_KPJ spreadsheet is applied at once,
a chunk of rows per transaction, by the same rule and store as the `membership.number-assigned`
consumer (handlers.decide_numbers, record_numbers); each number stored is published on that topic
in its transaction (registration reads it back as a repeat). Uploading the same file again
changes nothing, so a chunk that failed is simply uploaded again.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from lindung_registration.db import MembershipNumber, Worker, WorkerTerm
from lindung_registration.domain import NumberDecision, NumberRow
from lindung_registration.handlers import NumberIntake, decide_numbers, record_numbers
from lindung_registration.imports import UploadTooLarge, take_rows
from lindung_registration.spreadsheet import (
    MEMBERSHIP_NUMBERS,
    Limits,
    SpreadsheetError,
    read_rows,
)
from lindung_runtime import Service
from lindung_runtime.messages import columns
from lindung_runtime.privacy import mask_nik
from lindung_runtime.spreadsheets import csv_line, csv_text, safe_cell

#: The handover's columns, in order (docs/api.md, "Handover to BPJS Ketenagakerjaan").
HANDOVER_COLUMNS = (
    "NIK",
    "NAMA_LENGKAP",
    "TANGGAL_LAHIR",
    "JENIS_KELAMIN",
    "PEKERJAAN",
    "DESA_KELURAHAN",
    "KECAMATAN",
    "NO_HP",
    "AWAL_KEPESERTAAN",
    "AKHIR_KEPESERTAAN",
    "PROGRAM",
    "NOMOR_KPJ",
)
#: The BPU programmes a sponsored vulnerable worker is enrolled in.
PROGRAMMES = "JKK+JKM"
_GENDERS = {"M": "L", "F": "P"}
PAGE_ROWS = 1000

#: The per-row errors an upload's answer lists at most.
MAX_REPORTED_ERRORS = 1000


# --- the handover ---------------------------------------------------------------------------------


def handover_query(program_id: str, term: int) -> Any:
    """The term's confirmed workers with their cover and number, by kecamatan, desa, name."""
    worker, term_of, number = columns(Worker), columns(WorkerTerm), columns(MembershipNumber)
    return (
        select(
            worker.nik,
            worker.full_name,
            worker.birth_date,
            worker.gender,
            worker.occupation,
            worker.village,
            worker.district,
            worker.phone,
            term_of.coverage_start,
            term_of.coverage_end,
            number.kpj,
        )
        .select_from(WorkerTerm)
        .join(Worker, worker.worker_id == term_of.worker_id)
        .outerjoin(MembershipNumber, number.worker_id == term_of.worker_id)
        .where(term_of.program_id == program_id, term_of.term == term)
        .order_by(worker.district, worker.village, worker.full_name, worker.nik)
    )


def _iso(value: date | str | None) -> str:
    return value.isoformat() if isinstance(value, date) else (value or "")


def national_phone(phone: str | None) -> str:
    """`+6281234567890` as Indonesian forms write it: `081234567890`."""
    if not phone:
        return ""
    return "0" + phone[3:] if phone.startswith("+62") else phone


def handover_cells(row: Any) -> list[str]:
    """One worker as the handover's text cells (before `safe_cell`)."""
    return [
        row.nik,
        row.full_name,
        _iso(row.birth_date),
        _GENDERS.get(row.gender, row.gender),
        row.occupation or "",
        row.village,
        row.district,
        national_phone(row.phone),
        _iso(row.coverage_start),
        _iso(row.coverage_end),
        PROGRAMMES,
        row.kpj or "",
    ]


async def streamed_pages(
    service: Service, query: Any, size: int = PAGE_ROWS
) -> AsyncIterator[Sequence[Any]]:
    """A query's rows, `size` at a time, from one streamed (server-side) cursor: an export of
    100,000 workers never holds them all."""
    async with service.database.read_session() as session:
        connection = await session.connection()
        result = await connection.stream(query)
        async for page in result.partitions(size):
            yield page


async def handover_pages(
    service: Service, program_id: str, term: int, size: int = PAGE_ROWS
) -> AsyncIterator[list[list[str]]]:
    """The handover's rows, `size` at a time, from one streamed query."""
    async for page in streamed_pages(service, handover_query(program_id, term), size):
        yield [handover_cells(row) for row in page]


async def handover_csv(service: Service, program_id: str, term: int) -> AsyncIterator[str]:
    """The handover as CSV (UTF-8, comma-separated), a page at a time."""
    yield csv_line(HANDOVER_COLUMNS)
    async for page in handover_pages(service, program_id, term):
        yield csv_text(page)


def _append(sheet: WriteOnlyWorksheet, rows: Sequence[Sequence[str]]) -> None:
    """Each value as a text cell. openpyxl types a string as text unless it starts with `=`
    (which `safe_cell` prevents) or is an error value's name (`#N/A`: made a text cell here)."""
    for values in rows:
        cells: list[Any] = []
        for value in values:
            text = safe_cell(value)
            if text in ERROR_CODES:
                cell = WriteOnlyCell(sheet, value=text)
                cell.data_type = "s"
                cells.append(cell)
            else:
                cells.append(text)
        sheet.append(cells)


async def handover_xlsx(service: Service, program_id: str, term: int) -> bytes:
    """The handover as an XLSX workbook of one sheet, built as the rows are read (openpyxl's
    write-only mode: no cell kept once written) in a worker thread."""
    workbook = Workbook(write_only=True)
    sheet: Any = workbook.create_sheet(f"T{term}")  # write-only: column widths before any row
    widths = (19, 30, 14, 14, 20, 22, 22, 16, 18, 18, 10, 14)
    for column, width in zip("ABCDEFGHIJKL", widths, strict=True):
        sheet.column_dimensions[column].width = width
    _append(sheet, [HANDOVER_COLUMNS])
    async for page in handover_pages(service, program_id, term):
        await asyncio.to_thread(_append, sheet, page)
    out = io.BytesIO()
    await asyncio.to_thread(workbook.save, out)
    return out.getvalue()


# --- membership numbers uploaded ----------------------------------------------------------------


@dataclass(frozen=True)
class RowError:
    row: int  # as the spreadsheet numbers it (the header is row 1)
    nik: str  # as given, masked
    code: str
    message: str


@dataclass
class NumbersReport:
    """What an upload came to: rows read, and per outcome; the errors of the first rows."""

    rows: int = 0
    assigned: int = 0
    repeated: int = 0
    without_kpj: int = 0
    rejected: int = 0
    error: str | None = None  # why the file stopped short (a limit), if it did
    errors: list[RowError] = field(default_factory=list)

    def add(self, number: int, decision: NumberDecision) -> None:
        if decision.status == "assigned":
            self.assigned += 1
        elif decision.status == "repeated":
            self.repeated += 1
        else:
            self.rejected += 1
            nik = mask_nik(decision.row.nik[:64])
            for error in decision.errors:
                if len(self.errors) < MAX_REPORTED_ERRORS:
                    self.errors.append(RowError(number, nik, error.code, error.message))


async def spool(chunks: AsyncIterator[bytes], directory: Path, suffix: str, limit: int) -> Path:
    """The upload on disk, written as it arrives; UploadTooLarge past `limit` bytes."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    path = directory / f"numbers-{uuid.uuid4().hex}.{suffix}"
    size = 0
    try:
        with path.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise UploadTooLarge
                await asyncio.to_thread(out.write, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


async def apply_numbers(
    service: Service,
    path: Path,
    file_format: str,
    limits: Limits,
    *,
    chunk_rows: int,
    program_id: str,
    assigned_on: date,
    reference: str,
    trace: dict[str, str],
) -> NumbersReport:
    """Apply an uploaded NIK → NOMOR_KPJ file, `chunk_rows` per transaction. Rows without a
    number are counted and left alone. Raises SpreadsheetError when not one row could be read
    (not the layout, not CSV/XLSX); a limit met later stops the file there (`error`)."""
    report = NumbersReport()
    rows = read_rows(path, file_format, limits, MEMBERSHIP_NUMBERS)
    while True:
        chunk, stop = await asyncio.to_thread(take_rows, rows, chunk_rows)
        if stop is not None and not chunk and not report.rows:
            raise stop
        report.rows += len(chunk)
        numbered = [(n, values) for n, values in chunk if values.get("kpj", "").strip()]
        report.without_kpj += len(chunk) - len(numbered)
        if numbered:
            intakes = [
                NumberIntake(
                    NumberRow(program_id, values.get("nik", ""), values["kpj"]),
                    assigned_on,
                    reference,
                    trace,
                )
                for _, values in numbered
            ]
            decisions = await _apply(service, intakes)
            for (number, _), decision in zip(numbered, decisions, strict=True):
                report.add(number, decision)
        if stop is not None:
            report.error = str(stop)
            return report
        if len(chunk) < chunk_rows:
            return report


async def _apply(service: Service, intakes: list[NumberIntake]) -> list[NumberDecision]:
    """One chunk in one transaction: decided, stored, the new numbers published. A number
    stored by another request at this very moment fails the insert: decide again."""
    for attempt in range(3):
        try:
            async with service.unit_of_work() as uow:
                tx = await uow.transaction()
                decisions = await decide_numbers(intakes, tx)
                uow.emit_all(await record_numbers(intakes, decisions, tx))
                await uow.commit()
            return decisions
        except sa_exc.IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


__all__ = [
    "HANDOVER_COLUMNS",
    "NumbersReport",
    "RowError",
    "SpreadsheetError",
    "apply_numbers",
    "handover_csv",
    "handover_xlsx",
    "spool",
]
