"""Spreadsheet bombs against the import reader, in a process of their own: each file, small on
disk but dangerous if read without limits, must end (a clear refusal, or the rows within the
limits) with the process's peak RSS under registration's memory limit in Kubernetes.

Before the limits, an import that blew the memory was OOM-killed mid-`running`, claimed again when
its lease ran out and killed again: a crash loop any village key could start. The child process
loads the whole registration service first (its real baseline), then reads the bomb with the
default settings, as the importer's counting pass does.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

WORKSPACE = Path(__file__).resolve().parents[2]
#: deploy/k8s/base/registration.yaml: resources.limits.memory.
POD_LIMIT_MIB = 256
#: The whole service peaks at up to 157 MiB on a 100,000-row import (test_import_100k.py): what a
#: file may add on top of what the reader process itself starts with.
HEADROOM_MIB = POD_LIMIT_MIB - 157
HEADER = "NIK,Nama Lengkap,Tanggal Lahir,Jenis Kelamin,Pekerjaan,Desa/Kelurahan,Kecamatan,No HP"
ROW = "5318010101900001,Ana,01/01/1990,P,Petani,Kalena Wanno,Kota Tambolaka,081234567890"

# The child's peak is its memory map's high-water mark (VmHWM), which starts afresh at exec: Linux
# carries ru_maxrss over exec, so a child of a large pytest process would report the parent's.
CHILD = """
import json, sys
from pathlib import Path
import lindung_registration.app  # noqa: F401  (the service's own baseline)
from lindung_registration.imports import limits_of
from lindung_registration.settings import RegistrationSettings
from lindung_registration.spreadsheet import SpreadsheetError, read_rows

def vm_hwm_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")

baseline = vm_hwm_kib()
rows, error = 0, None
try:
    for _ in read_rows(Path(sys.argv[1]), sys.argv[2], limits_of(RegistrationSettings())):
        rows += 1
except SpreadsheetError as e:
    error = str(e)
peak = vm_hwm_kib()
print(json.dumps({"rows": rows, "error": error, "baseline_kib": baseline, "peak_kib": peak}))
"""

SHEET_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


CONTENT_TYPES = (
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.spreadsheetml.sharedStrings+xml"/>'
    "</Types>"
)


def xlsx(
    path: Path, sheet: bytes | Callable[[zipfile.ZipFile], None], strings: bytes = b""
) -> None:
    """A minimal workbook; `sheet` is its first worksheet's XML, or writes it itself."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as book:
        book.writestr("[Content_Types].xml", CONTENT_TYPES)
        book.writestr(
            "_rels/.rels",
            f'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{REL_NS}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>",
        )
        book.writestr(
            "xl/workbook.xml",
            f'<workbook {SHEET_NS} xmlns:r="{REL_NS}"><sheets>'
            '<sheet name="Peserta" sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        book.writestr(
            "xl/_rels/workbook.xml.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{REL_NS}/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>",
        )
        book.writestr("xl/sharedStrings.xml", strings or f"<sst {SHEET_NS}/>".encode())
        if callable(sheet):
            sheet(book)
        else:
            book.writestr("xl/worksheets/sheet1.xml", sheet)


def inline_row(number: int, values: list[str]) -> str:
    cells = "".join(
        f'<c r="{chr(65 + i)}{number}" t="inlineStr"><is><t>{v}</t></is></c>'
        for i, v in enumerate(values)
    )
    return f'<row r="{number}">{cells}</row>'


def csv_columns(path: Path) -> None:
    """20 MB of commas in one row: ~270 MB of Python strings when split."""
    with path.open("w") as out:
        out.write(HEADER + "\n" + ROW + "\n")
        out.write("," * 20_000_000 + "\n")


def csv_long_row(path: Path) -> None:
    """A 200 MB line without a line end (a sparse file: nothing to write)."""
    with path.open("w") as out:
        out.write(HEADER + "\n" + ROW + "\n")
    os.truncate(path, 200 * 1024 * 1024)


def xlsx_dimension(path: Path) -> None:
    """2 KB declaring A1:XFD1048576: read padded to it, that is 1.7e10 cells."""
    sheet = (
        f'<worksheet {SHEET_NS}><dimension ref="A1:XFD1048576"/><sheetData>'
        + inline_row(1, HEADER.split(","))
        + inline_row(2, ROW.split(","))
        + '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
        + "</sheetData></worksheet>"
    )
    xlsx(path, sheet.encode())


def xlsx_ratio(path: Path) -> None:
    """One cell of 200 MB of blanks, zipped to ~200 KB (under the unzipped-size limit)."""

    def write(book: zipfile.ZipFile) -> None:
        with book.open("xl/worksheets/sheet1.xml", "w") as out:
            out.write(f"<worksheet {SHEET_NS}><sheetData>".encode())
            out.write(inline_row(1, HEADER.split(",")).encode())
            out.write(b'<row r="2"><c r="A2" t="inlineStr"><is><t>')
            blanks = b" " * (1024 * 1024)
            for _ in range(200):
                out.write(blanks)
            out.write(b"</t></is></c></row></sheetData></worksheet>")

    xlsx(path, write)


def xlsx_shared_strings(path: Path) -> None:
    """1.2 million distinct shared strings of 28 characters (54 MB of XML, zipped ~10 times): a
    list of str (openpyxl) holds them in over 200 MB."""
    strings = io.BytesIO()
    strings.write(f'<sst {SHEET_NS} count="1200000" uniqueCount="1200000">'.encode())
    for block in range(120):
        strings.write(
            b"".join(b"<si><t>%028x</t></si>" % (block * 10_000 + i) for i in range(10_000))
        )
    strings.write(b"</sst>")
    header = "".join(
        f'<c r="{chr(65 + i)}1" t="inlineStr"><is><t>{v}</t></is></c>'
        for i, v in enumerate(HEADER.split(","))
    )
    sheet = (
        f'<worksheet {SHEET_NS}><sheetData><row r="1">{header}</row>'
        '<row r="2"><c r="A2" t="s"><v>1199999</v></c></row></sheetData></worksheet>'
    )
    xlsx(path, sheet.encode(), strings.getvalue())


BOMBS: dict[str, tuple[str, Callable[[Path], None], str, int]] = {
    # name: (format, builder, words the refusal must contain, rows read before it)
    "csv_columns": ("csv", csv_columns, "longer than", 1),
    "csv_long_row": ("csv", csv_long_row, "longer than", 1),
    "xlsx_dimension": ("xlsx", xlsx_dimension, "more than 200000 data rows", 1),
    # Refused from the zip's directory, before a row is read.
    "xlsx_ratio": ("xlsx", xlsx_ratio, "compressed more than", 0),
    "xlsx_shared_strings": ("xlsx", xlsx_shared_strings, "shared strings take more than", 0),
}


def _limit_address_space() -> None:
    # Should a limit regress, the child fails alone instead of taking the machine's memory.
    resource.setrlimit(resource.RLIMIT_AS, (3 * 1024**3, 3 * 1024**3))


def read_in_child(path: Path, file_format: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), file_format],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=WORKSPACE,
        preexec_fn=_limit_address_space,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_a_spreadsheet_bomb_is_refused_within_the_pod_memory_limit(
    bomb: str, tmp_path: Path
) -> None:
    file_format, build, refusal, rows_before = BOMBS[bomb]
    path = tmp_path / f"{bomb}.{file_format}"
    build(path)

    result = read_in_child(path, file_format)

    peak_mib = int(result["peak_kib"]) / 1024  # type: ignore[call-overload]
    added_mib = peak_mib - int(result["baseline_kib"]) / 1024  # type: ignore[call-overload]
    assert peak_mib < POD_LIMIT_MIB, result
    assert added_mib < HEADROOM_MIB, result
    error = str(result["error"])
    assert refusal in error and " / " in error, result  # bilingual, and says which limit
    assert result["rows"] == rows_before, result  # rows before the bomb are still imported
