"""Spreadsheet limits: past a cap, reading stops with a bilingual reason after the rows before it;
the declared XLSX dimension is ignored; an import whose process keeps dying is given up."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from lindung_registration.db import ImportJob
from lindung_registration.imports import Importer
from lindung_registration.spreadsheet import Limits, SpreadsheetLimit, read_rows
from lindung_runtime import Service
from tests.integration.test_import_bombs import HEADER, ROW, inline_row, xlsx
from tests.unit.test_api_auth import service  # noqa: F401 (fixture)

SMALL = Limits(rows=3, columns=10, cell_chars=100, xlsx_entries=20, xlsx_strings_bytes=4096)
SHEET = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'


def read_until_limit(path: Path, file_format: str) -> tuple[list[int], str]:
    numbers: list[int] = []
    with pytest.raises(SpreadsheetLimit) as refused:
        for number, _ in read_rows(path, file_format, SMALL):
            numbers.append(number)
    assert " / " in str(refused.value)  # Bahasa Indonesia / English
    return numbers, str(refused.value)


def csv_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "x.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def test_csv_rows_past_the_row_limit_are_refused(tmp_path: Path) -> None:
    numbers, reason = read_until_limit(csv_file(tmp_path, *[ROW] * 5), "csv")
    assert numbers == [2, 3, 4]
    assert "more than 3 data rows" in reason


def test_csv_row_with_too_many_columns_is_refused(tmp_path: Path) -> None:
    numbers, reason = read_until_limit(csv_file(tmp_path, ROW, ROW + ",x" * 5), "csv")
    assert numbers == [2]
    assert "Row 3 has more than 10 filled columns" in reason


def test_empty_cells_at_the_end_of_a_row_do_not_count_as_columns(tmp_path: Path) -> None:
    [(number, values)] = list(read_rows(csv_file(tmp_path, ROW + "," * 50), "csv", SMALL))
    assert number == 2 and values["nik"] == ROW.split(",")[0]


def test_csv_cell_and_line_length_limits(tmp_path: Path) -> None:
    numbers, reason = read_until_limit(csv_file(tmp_path, ROW, "x" * 101), "csv")
    assert numbers == [2] and "more than 100 characters" in reason
    numbers, reason = read_until_limit(csv_file(tmp_path, ROW, "x" * 5000), "csv")
    assert numbers == [2] and "Row 3 is longer than" in reason


def test_xlsx_declared_dimension_is_ignored_and_rows_are_not_padded(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    sheet = (
        f'<worksheet {SHEET}><dimension ref="A1:XFD1048576"/><sheetData>'
        + inline_row(1, HEADER.split(","))
        + inline_row(2, ROW.split(","))
        + "</sheetData></worksheet>"
    )
    xlsx(path, sheet.encode())
    [(number, values)] = list(read_rows(path, "xlsx", SMALL))
    assert number == 2 and len(values) == 8


def test_xlsx_limits(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    far = '<row r="3"><c r="XFD3"><v>1</v></c></row>'
    xlsx(
        path,
        f"<worksheet {SHEET}><sheetData>{inline_row(1, HEADER.split(','))}"
        f"{inline_row(2, ROW.split(','))}{far}</sheetData></worksheet>".encode(),
    )
    numbers, reason = read_until_limit(path, "xlsx")
    assert numbers == [2] and "Row 3 has more than 10 filled columns" in reason

    strings = f"<sst {SHEET}>" + "".join(f"<si><t>{i:040d}</t></si>" for i in range(200))
    xlsx(
        path, f"<worksheet {SHEET}><sheetData/></worksheet>".encode(), (strings + "</sst>").encode()
    )
    assert "shared strings take more than" in read_until_limit(path, "xlsx")[1]


async def test_an_import_claimed_past_its_retries_is_failed_not_handed_out(
    service: Service,  # noqa: F811
) -> None:
    importer = Importer(service, service.settings)  # type: ignore[arg-type]
    expired = service.clock.now() - timedelta(minutes=5)
    async with service.database.session() as session:
        for import_id, attempts in (("a" * 32, 4), ("b" * 32, 3)):  # IMPORT_MAX_RETRIES = 3
            session.add(
                ImportJob(
                    import_id=import_id,
                    program_id="p",
                    filename="x.csv",
                    file_format="csv",
                    status="running",
                    submitted_by="ops",
                    attempts=attempts,
                    lease_until=expired,
                    created_at=expired,
                )
            )
        await session.commit()

    claimed = await importer._next_job()

    given_up, retried = await importer.job("a" * 32), await importer.job("b" * 32)
    assert given_up is not None and given_up.status == "failed"
    assert given_up.error and "died 4 times" in given_up.error and " / " in given_up.error
    assert claimed is not None and claimed.import_id == "b" * 32
    assert retried is not None and retried.attempts == 4 and retried.status == "running"
