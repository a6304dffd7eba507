"""Exports never hand Excel a formula: errors.csv and the staff digest's attachment write a cell
that starts with = + - @ (or a tab or CR) behind one apostrophe, and an errors.csv fixed and
uploaded again reads back exactly as the values were (a `+62…` phone keeps its plus)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import httpx
import pytest

from lindung_notification.domain import DigestWorker, compose_digest
from lindung_registration.db import ImportJob, ImportRow
from lindung_registration.spreadsheet import read_rows, rejected_csv_header, rejected_csv_line
from lindung_runtime import Service
from lindung_runtime.spreadsheets import csv_line, restore_cell, safe_cell
from tests.unit.test_api_auth import Keys, api, bearer, keys, service  # noqa: F401 (fixtures)

LINK = '=HYPERLINK("http://contoh.invalid/x","klik")'
DANGEROUS = [LINK, "+6281234567890", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


@pytest.mark.parametrize("value", DANGEROUS)
def test_a_cell_that_a_spreadsheet_would_evaluate_is_written_behind_an_apostrophe(
    value: str,
) -> None:
    assert safe_cell(value) == "'" + value
    assert restore_cell(safe_cell(value)) == value


@pytest.mark.parametrize("value", ["Ana", "", "0812-3456-7890", "'Ahmad", "5318010101900001"])
def test_plain_cells_are_written_and_read_back_unchanged(value: str) -> None:
    assert safe_cell(value) == value
    assert restore_cell(value) == value


def test_errors_csv_lines_are_safe() -> None:
    line = rejected_csv_line(3, {"full_name": LINK, "phone": "+6281234567890"}, "=bad reason")
    cells = next(csv.reader(io.StringIO(line)))
    assert cells[1] == "'" + LINK
    assert cells[7] == "'+6281234567890"
    assert cells[-1] == "'=bad reason"
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)


def test_a_fixed_errors_csv_reads_back_the_values_it_was_written_from(tmp_path: Path) -> None:
    values = {
        "nik": "5318010101900001",
        "full_name": LINK,
        "birth_date": "01/01/1990",
        "gender": "L",
        "village": "Kalena Wanno",
        "district": "Kota Tambolaka",
        "phone": "+62 812 3456 7890",
    }
    path = tmp_path / "ditolak.csv"
    path.write_text(rejected_csv_header() + rejected_csv_line(2, values, "phone: -"))

    [(number, read)] = list(read_rows(path, "csv"))

    assert number == 2
    assert read == {**values, "occupation": ""}


def test_the_digest_attachment_is_safe() -> None:
    worker = DigestWorker("w-1", "5318010101900001", LINK, "@Desa", "-Kec")
    mail = compose_digest("Program", "Pemkab", "p-1", date(2025, 12, 31), 30, [worker], ["a@b"])
    header, row = list(csv.reader(io.StringIO(mail.attachment_csv)))
    assert header[0] == "worker_id"
    assert row[2:5] == ["'" + LINK, "'@Desa", "'-Kec"]
    assert csv_line(["=1"]) == "'=1\r\n"


async def test_the_errors_csv_route_writes_safe_cells(
    service: Service,  # noqa: F811
    keys: Keys,  # noqa: F811
    api: httpx.AsyncClient,  # noqa: F811
) -> None:
    import_id = "a" * 32
    async with service.database.session() as session:
        session.add(
            ImportJob(
                import_id=import_id,
                program_id="p",
                filename="x.csv",
                file_format="csv",
                status="done",
                submitted_by="ops",
                created_at=service.clock.now(),
            )
        )
        session.add(
            ImportRow(
                import_id=import_id,
                row_number=2,
                status="rejected",
                errors=json.dumps([{"field": "full_name", "code": "x", "message": "m"}]),
                values=json.dumps({"nik": "1", "full_name": LINK, "phone": "+6281234567890"}),
            )
        )
        await session.commit()

    response = await api.get(f"/imports/{import_id}/errors.csv", headers=bearer(keys.operator))

    assert response.status_code == 200, response.text
    _, row = list(csv.reader(io.StringIO(response.text)))
    assert row[1] == "'" + LINK
    assert row[7] == "'+6281234567890"
