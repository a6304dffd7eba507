"""Cells Lindung writes into spreadsheets (CSV, XLSX) for staff to open in Excel or LibreOffice.

A cell that starts with `=`, `+`, `-` or `@` (or a tab or carriage return, which spreadsheet
programs skip before looking) is taken as a formula: a worker's name sent as
`=HYPERLINK("http://…","klik")` would run when staff open the file (OWASP "CSV injection"). Every
export goes through `safe_cell`, which prefixes such a cell with one apostrophe: the program shows
the text as typed. `restore_cell` takes that apostrophe off again, so a downloaded file can be fixed
and uploaded (a phone written `+62 812…` keeps its plus).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
APOSTROPHE = "'"


def safe_cell(value: object) -> str:
    """The cell as text a spreadsheet program shows but never evaluates."""
    text = "" if value is None else str(value)
    return APOSTROPHE + text if text.startswith(FORMULA_STARTS) else text


def restore_cell(text: str) -> str:
    """The value `safe_cell` was given: only an apostrophe it could have added is removed (a name
    such as `'Ahmad` typed by a person stays as it is)."""
    if text.startswith(APOSTROPHE) and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text


def csv_line(values: Iterable[object]) -> str:
    """One CSV record (with its line end), each cell made safe."""
    out = io.StringIO()
    csv.writer(out).writerow([safe_cell(v) for v in values])
    return out.getvalue()


def csv_text(rows: Iterable[Iterable[object]]) -> str:
    """A whole CSV document, each cell made safe."""
    return "".join(csv_line(row) for row in rows)
