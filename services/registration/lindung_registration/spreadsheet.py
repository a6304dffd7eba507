"""Registration spreadsheets as staff fill them in: CSV or XLSX, Indonesian or English headers.

Read row by row, never whole, and within limits (`Limits`) that bound the memory an import needs
whatever the file says about itself: a spreadsheet may come from anyone holding a village key, and
the service runs in 256 MiB. XLSX is read straight from its XML with expat (see `_xlsx_rows`), not
with openpyxl, whose reader keeps every shared string and every element it does not know as a tree
node (5-20 times the XML's size) and pads rows to the sheet's declared dimension. Values are handed
on as text for the domain to judge.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
import struct
import zipfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from xml.parsers import expat

from lindung_contracts import RegistrationRequested
from lindung_runtime.spreadsheets import csv_line, restore_cell

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
FORMATS = ("csv", "xlsx")
MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one spreadsheet may hold (registration's IMPORT_MAX_* settings)."""

    rows: int = 200_000  # data rows, below the header
    columns: int = 100  # filled columns in a row (empty ones at its end do not count)
    cell_chars: int = 1000  # no field is valid beyond 100 characters anyway
    xlsx_bytes: int = 256 * MiB  # all files of the XLSX, unzipped
    xlsx_entries: int = 1000
    xlsx_ratio: int = 200  # unzipped / zipped, for files inside the XLSX above 1 MiB
    xlsx_strings_bytes: int = 32 * MiB  # the shared-strings table, as held in memory

    def row_chars(self) -> int:
        """Longest CSV record: every column full, every character a doubled quote."""
        return self.columns * (2 * self.cell_chars + 3)


class SpreadsheetError(ValueError):
    """The file cannot be read any further (not the template, not CSV/XLSX, damaged)."""


class SpreadsheetLimit(SpreadsheetError):
    """The file passes one of the `Limits`: reading stops there (the rows before it were read)."""


def _too_many_rows(limit: int) -> SpreadsheetLimit:
    return SpreadsheetLimit(
        f"Berkas berisi lebih dari {limit} baris data; baris sesudahnya tidak diproses / "
        f"The file has more than {limit} data rows; the rows after them were not imported"
    )


def _too_many_columns(row: int, limit: int) -> SpreadsheetLimit:
    return SpreadsheetLimit(
        f"Baris {row} berisi lebih dari {limit} kolom; baris ini dan sesudahnya tidak diproses / "
        f"Row {row} has more than {limit} filled columns; it and the rows after it were not "
        "imported"
    )


def _cell_too_long(row: int, limit: int) -> SpreadsheetLimit:
    return SpreadsheetLimit(
        f"Baris {row}: isi sel lebih dari {limit} karakter; baris ini dan sesudahnya tidak "
        f"diproses / Row {row}: a cell holds more than {limit} characters; it and the rows after "
        "it were not imported"
    )


def _xlsx_refused(what: str, why: str) -> SpreadsheetLimit:
    return SpreadsheetLimit(f"XLSX ditolak: {what} / XLSX refused: {why}")


def _normal(header: str) -> str:
    return " ".join(header.strip().lower().replace("_", " ").split())


@dataclass(frozen=True)
class Layout:
    """The columns of a kind of spreadsheet: the headers accepted for each field, the fields a
    file must have (by their header in the template), and the template's headers."""

    aliases: dict[str, tuple[str, ...]]
    required: dict[str, str]  # field -> its header, named when the column is missing
    template: tuple[str, ...]

    def field_of(self, header: str) -> str | None:
        return self._lookup.get(_normal(header))

    @cached_property
    def _lookup(self) -> dict[str, str]:
        return {_normal(a): field for field, aliases in self.aliases.items() for a in aliases}


#: Staff's registration spreadsheet (`GET /imports/template.csv`).
REGISTRATIONS = Layout(COLUMN_ALIASES, {"nik": "NIK"}, tuple(TEMPLATE_COLUMNS))
#: BPJS Ketenagakerjaan's membership numbers: NIK → NOMOR_KPJ (other columns are ignored, so
#: the handover file itself, its NOMOR_KPJ filled in, is one).
MEMBERSHIP_NUMBERS = Layout(
    {"nik": COLUMN_ALIASES["nik"], "kpj": ("nomor_kpj", "nomor kpj", "no kpj", "kpj")},
    {"nik": "NIK", "kpj": "NOMOR_KPJ"},
    ("NIK", "NOMOR_KPJ"),
)


def format_of(filename: str, content_type: str | None = None) -> str | None:
    name = filename.lower()
    if name.endswith(".xlsx") or (content_type or "").endswith("spreadsheetml.sheet"):
        return "xlsx"
    if name.endswith((".csv", ".txt")) or (content_type or "").startswith("text/"):
        return "csv"
    return None


def read_rows(
    path: Path, file_format: str, limits: Limits = Limits(), layout: Layout = REGISTRATIONS
) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number as the spreadsheet shows it, field → text) for each non-empty row.

    Raises SpreadsheetLimit at the first row past a limit, after yielding the rows before it.
    A value that an export made safe (`'=…`, `'+62…`) comes back as it was, so a downloaded
    errors.csv can be fixed and uploaded again.
    """
    rows = _csv_rows(path, limits) if file_format == "csv" else _xlsx_rows(path, limits)
    first = next(rows, None)
    if first is None:
        raise SpreadsheetError("Berkas kosong / The file is empty")
    fields = [layout.field_of(h) for h in first[1]]
    for field, header in layout.required.items():
        if field not in fields:
            raise SpreadsheetError(
                f"Kolom {header} tidak ditemukan; gunakan template / No {header} column; use the "
                f"template ({', '.join(layout.template)})"
            )
    for number, row in rows:
        values = {f: restore_cell(v) for f, v in zip(fields, row, strict=False) if f}
        if any(v.strip() for v in values.values()):
            yield number, values


def _checked(number: int, cells: list[str], limits: Limits) -> list[str]:
    """The row without its empty cells at the end, if it is within the limits."""
    if number > limits.rows + 1:
        raise _too_many_rows(limits.rows)
    width = len(cells)
    while width and not cells[width - 1]:
        width -= 1
    if width > limits.columns:
        raise _too_many_columns(number, limits.columns)
    if any(len(cell) > limits.cell_chars for cell in cells[:width]):
        raise _cell_too_long(number, limits.cell_chars)
    return cells[:width]


# --- CSV ----------------------------------------------------------------------------------------


def _csv_rows(path: Path, limits: Limits) -> Iterator[tuple[int, list[str]]]:
    """csv.reader fed line by line, each line read with a length limit: a 20 MB line of commas
    (or of anything) is refused after `row_chars`, never held whole."""
    budget = limits.row_chars()
    used = 0
    with path.open("rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        first_line = text.readline(65536)
        text.seek(0)
        # Excel in an Indonesian locale saves CSV with `;` (the comma is the decimal sign).
        delimiter = max((",", ";", "\t"), key=first_line.count)
        number = 1

        def lines() -> Iterator[str]:
            nonlocal used
            while line := text.readline(budget + 1 - used):
                used += len(line)
                if used > budget:
                    raise SpreadsheetLimit(
                        f"Baris {number} lebih dari {budget} karakter; baris ini dan sesudahnya "
                        f"tidak diproses / Row {number} is longer than {budget} characters; it "
                        "and the rows after it were not imported"
                    )
                yield line

        reader = csv.reader(lines(), delimiter=delimiter)
        try:
            for number, row in enumerate(reader, start=1):
                used = 0
                yield number, _checked(number, row, limits)
                number += 1  # the row lines() is reading next, should it be too long
        except csv.Error as error:
            raise SpreadsheetError(f"CSV tidak terbaca / CSV is unreadable: {error}") from error


# --- XLSX ---------------------------------------------------------------------------------------

XML_CHUNK = 64 * 1024
#: Longest stretch of XML without a single element or text event (a tag with a huge attribute):
#: expat would buffer it whole.
XML_MAX_TOKEN = 1 * MiB
_CELL_REF = re.compile(r"([A-Z]{1,3})")
# Number formats Excel has built in, by id, that show a date (ECMA-376 §18.8.30).
_BUILTIN_DATE_FORMATS = frozenset({14, 15, 16, 17, 18, 19, 20, 21, 22, 45, 46, 47})


def _xlsx_rows(path: Path, limits: Limits) -> Iterator[tuple[int, list[str]]]:
    """The first worksheet's rows, straight from its XML.

    Before anything is unzipped, the archive's directory is checked (entries, unzipped size,
    ratio: zipfile stops reading an entry at its declared size, so the declared sizes hold). The
    declared dimension is ignored: a row is as wide as its last filled cell, and a gap in the row
    numbers is simply a gap. Memory: one row, one XML chunk and the shared-strings table, which is
    kept compact (one bytes blob and an offsets array) and capped.
    """
    _check_zip_directory(path, limits)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise SpreadsheetError(f"XLSX tidak terbaca / XLSX is unreadable: {error}") from error
    with archive:
        _check_entries(archive, limits)
        book = _Workbook.read(archive)
        strings = _SharedStrings.read(archive, book.shared_strings, limits)
        date_styles = _date_styles(archive, book.styles)
        yield from _sheet_rows(archive, book, strings, date_styles, limits)


def _unreadable(why: object) -> SpreadsheetError:
    return SpreadsheetError(f"XLSX tidak terbaca / XLSX is unreadable: {why}")


def _check_zip_directory(path: Path, limits: Limits) -> None:
    """Count the archive's entries from its end record, before zipfile builds an object for each
    (a 200 MB upload of empty entries would be millions of them)."""
    with path.open("rb") as raw:
        raw.seek(0, 2)
        size = raw.tell()
        tail_start = max(0, size - (22 + 65535 + 20))
        raw.seek(tail_start)
        tail = raw.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) < at + 22:
            raise _unreadable("no zip end record")
        entries, directory_size = struct.unpack("<xxxxxxxxxxHI", tail[at : at + 16])
        locator = at - 20
        if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
            (record_at,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
            raw.seek(record_at)
            record = raw.read(56)
            if record[:4] != b"PK\x06\x06" or len(record) < 56:
                raise _unreadable("broken zip64 end record")
            entries, directory_size = struct.unpack("<QQ", record[32:48])
    if entries > limits.xlsx_entries or directory_size > limits.xlsx_entries * 1024:
        raise _xlsx_refused(
            f"berisi lebih dari {limits.xlsx_entries} berkas",
            f"it holds more than {limits.xlsx_entries} files",
        )


def _check_entries(archive: zipfile.ZipFile, limits: Limits) -> None:
    infos = archive.infolist()
    if len(infos) > limits.xlsx_entries:
        raise _xlsx_refused(
            f"berisi lebih dari {limits.xlsx_entries} berkas",
            f"it holds more than {limits.xlsx_entries} files",
        )
    if sum(info.file_size for info in infos) > limits.xlsx_bytes:
        raise _xlsx_refused(
            f"lebih dari {limits.xlsx_bytes // MiB} MiB setelah diekstrak",
            f"more than {limits.xlsx_bytes // MiB} MiB once unzipped",
        )
    for info in infos:
        if info.file_size > MiB and info.file_size > limits.xlsx_ratio * max(info.compress_size, 1):
            raise _xlsx_refused(
                f"rasio kompresi {info.filename!r} lebih dari {limits.xlsx_ratio}",
                f"{info.filename!r} is compressed more than {limits.xlsx_ratio} times",
            )


class _Xml:
    """One XML file of the archive through expat, in chunks, with only the handlers given.

    Tags and attributes are seen without their namespace prefix. No DTD is accepted (so no entity
    expansion), and no single token may exceed XML_MAX_TOKEN.
    """

    def __init__(
        self,
        start: Callable[[str, dict[str, str]], None] | None = None,
        end: Callable[[str], None] | None = None,
        text: Callable[[str], None] | None = None,
    ) -> None:
        self.events = 0
        parser = expat.ParserCreate()
        parser.buffer_text = False

        def on_start(name: str, attributes: dict[str, str]) -> None:
            self.events += 1
            if start is not None:
                if attributes:
                    attributes = {k.rpartition(":")[2]: v for k, v in attributes.items()}
                start(name.rpartition(":")[2] if ":" in name else name, attributes)

        def on_end(name: str) -> None:
            self.events += 1
            if end is not None:
                end(name.rpartition(":")[2] if ":" in name else name)

        def on_text(data: str) -> None:
            self.events += 1
            if text is not None:
                text(data)

        def on_other(*_: Any) -> None:
            self.events += 1

        def no_dtd(*_: Any) -> None:
            raise _unreadable("DTD not allowed")

        parser.StartElementHandler = on_start
        parser.EndElementHandler = on_end
        parser.CharacterDataHandler = on_text
        parser.CommentHandler = on_other
        parser.ProcessingInstructionHandler = on_other
        parser.XmlDeclHandler = on_other
        parser.StartDoctypeDeclHandler = no_dtd
        parser.EntityDeclHandler = no_dtd
        self.parser = parser

    def feed(self, archive: zipfile.ZipFile, name: str) -> Iterator[None]:
        """Parse `name`, yielding after each chunk (the handlers' results are ready then)."""
        stalled = 0
        try:
            with archive.open(name) as source:
                while chunk := source.read(XML_CHUNK):
                    before = self.events
                    self.parser.Parse(chunk, False)
                    stalled = 0 if self.events != before else stalled + len(chunk)
                    if stalled > XML_MAX_TOKEN:
                        raise _xlsx_refused(
                            f"{name} memuat unsur XML lebih dari 1 MiB",
                            f"{name} holds an XML token larger than 1 MiB",
                        )
                    yield
                self.parser.Parse(b"", True)
                yield
        except expat.ExpatError as error:
            raise _unreadable(f"{name}: {error}") from error
        except (KeyError, zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            if isinstance(error, SpreadsheetError):
                raise
            raise _unreadable(f"{name}: {error}") from error

    def parse(self, archive: zipfile.ZipFile, name: str) -> None:
        for _ in self.feed(archive, name):
            pass


@dataclass
class _Workbook:
    sheet: str
    shared_strings: str | None
    styles: str | None
    date1904: bool

    @classmethod
    def read(cls, archive: zipfile.ZipFile) -> _Workbook:
        names = set(archive.namelist())
        root = _relationships(archive, "_rels/.rels", "")
        book_path = next(
            (target for kind, target in root.values() if kind.endswith("/officeDocument")),
            "xl/workbook.xml",
        )
        if book_path not in names:
            raise _unreadable("no workbook")
        rels = _relationships(archive, _rels_path(book_path), posixpath.dirname(book_path))
        sheet_ids: list[str] = []
        date1904 = False

        def start(tag: str, attributes: dict[str, str]) -> None:
            nonlocal date1904
            if tag == "sheet" and len(sheet_ids) < 10_000:
                sheet_ids.append(attributes.get("id", ""))
            elif tag == "workbookPr":
                date1904 = attributes.get("date1904", "0").lower() in ("1", "true")

        _Xml(start=start).parse(archive, book_path)
        sheets = [rels[i][1] for i in sheet_ids if i in rels and rels[i][0].endswith("/worksheet")]
        if not sheets or sheets[0] not in names:
            raise _unreadable("no worksheet")

        def part(kind: str) -> str | None:
            found = next((t for k, t in rels.values() if k.endswith(kind)), None)
            return found if found in names else None

        return cls(sheets[0], part("/sharedStrings"), part("/styles"), date1904)


def _rels_path(part: str) -> str:
    folder, name = posixpath.split(part)
    return posixpath.join(folder, "_rels", f"{name}.rels")


def _relationships(archive: zipfile.ZipFile, path: str, base: str) -> dict[str, tuple[str, str]]:
    """Id → (type, archive path of the target)."""
    found: dict[str, tuple[str, str]] = {}
    if path not in archive.namelist():
        return found

    def start(tag: str, attributes: dict[str, str]) -> None:
        if tag == "Relationship" and len(found) < 10_000:
            target = attributes.get("Target", "")
            resolved = (
                target.lstrip("/")
                if target.startswith("/")
                else posixpath.normpath(posixpath.join(base, target))
            )
            found[attributes.get("Id", "")] = (attributes.get("Type", ""), resolved)

    _Xml(start=start).parse(archive, path)
    return found


class _SharedStrings:
    """The workbook's shared strings, UTF-8 in one blob with an offsets array: ~1 byte a character
    and 4 a string, where a list of str would take 60 or more bytes a string."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.ends = array("I")

    def __getitem__(self, index: int) -> str:
        start = self.ends[index - 1] if index > 0 else 0
        return self.blob[start : self.ends[index]].decode()

    @classmethod
    def read(cls, archive: zipfile.ZipFile, path: str | None, limits: Limits) -> _SharedStrings:
        table = cls()
        if path is None:
            return table
        keep = limits.cell_chars + 1  # longer is refused when a cell uses it
        cap = limits.xlsx_strings_bytes
        parts: list[str] = []
        length = in_t = in_phonetic = 0  # text kept; inside <t>; inside <rPh> (a reading aid)

        def start(tag: str, _: dict[str, str]) -> None:
            nonlocal length, in_t, in_phonetic
            if tag == "t":
                in_t += 1
            elif tag == "si":
                parts.clear()
                length = 0
            elif tag == "rPh":
                in_phonetic += 1

        def text(data: str) -> None:
            nonlocal length
            if in_t and not in_phonetic and length < keep:
                parts.append(data[: keep - length])
                length += len(parts[-1])

        def end(tag: str) -> None:
            nonlocal in_t, in_phonetic
            if tag == "t":
                in_t -= 1
            elif tag == "si":
                table.blob += "".join(parts).encode()
                table.ends.append(len(table.blob))
                if len(table.blob) + 4 * len(table.ends) > cap:
                    raise _xlsx_refused(
                        f"teks bersama lebih dari {cap // MiB} MiB",
                        f"its shared strings take more than {cap // MiB} MiB",
                    )
            elif tag == "rPh":
                in_phonetic -= 1

        _Xml(start=start, end=end, text=text).parse(archive, path)
        return table


def _date_styles(archive: zipfile.ZipFile, path: str | None) -> frozenset[int]:
    """Indexes of the cell styles (cellXfs) whose number format shows a date."""
    if path is None:
        return frozenset()
    from openpyxl.styles.numbers import is_date_format

    custom: dict[int, bool] = {}
    formats: list[int] = []
    in_cell_xfs = False

    def start(tag: str, attributes: dict[str, str]) -> None:
        nonlocal in_cell_xfs
        format_id = _int(attributes.get("numFmtId"))
        if tag == "numFmt" and format_id is not None and len(custom) < 65536:
            custom[format_id] = is_date_format(attributes.get("formatCode", ""))
        elif tag == "cellXfs":
            in_cell_xfs = True
        elif tag == "xf" and in_cell_xfs and len(formats) < 65536:
            formats.append(format_id or 0)

    def end(tag: str) -> None:
        nonlocal in_cell_xfs
        if tag == "cellXfs":
            in_cell_xfs = False

    _Xml(start=start, end=end).parse(archive, path)
    return frozenset(
        index
        for index, format_id in enumerate(formats)
        if custom.get(format_id, format_id in _BUILTIN_DATE_FORMATS)
    )


def _sheet_rows(
    archive: zipfile.ZipFile,
    book: _Workbook,
    strings: _SharedStrings,
    date_styles: frozenset[int],
    limits: Limits,
) -> Iterator[tuple[int, list[str]]]:
    from openpyxl.utils.datetime import CALENDAR_MAC_1904, CALENDAR_WINDOWS_1900

    epoch = CALENDAR_MAC_1904 if book.date1904 else CALENDAR_WINDOWS_1900
    ready: list[tuple[int, list[str]]] = []
    failure: SpreadsheetError | None = None
    row_number = 0
    cells: dict[int, str] = {}
    column = 0
    cell_type, cell_style = "n", 0
    text: list[str] = []
    text_length = 0
    collecting = False
    depth = {"c": 0, "v": 0, "is": 0, "t": 0, "rPh": 0}

    def start(tag: str, attributes: dict[str, str]) -> None:
        nonlocal row_number, column, cell_type, cell_style, text_length, collecting, failure
        if failure is not None:
            return
        if tag in depth:
            depth[tag] += 1
        if tag == "row":
            declared = _int(attributes.get("r"))
            row_number = declared if declared and declared > row_number else row_number + 1
            if row_number > limits.rows + 1:
                failure = _too_many_rows(limits.rows)
            cells.clear()
            column = 0
        elif tag == "c":
            declared_column = _column_of(attributes.get("r", ""))
            column = declared_column if declared_column else column + 1
            cell_type = attributes.get("t", "n")
            cell_style = _int(attributes.get("s")) or 0
            text.clear()
            text_length = 0
        collecting = bool(
            depth["c"] and (depth["v"] or (depth["is"] and depth["t"])) and not depth["rPh"]
        )

    def on_text(data: str) -> None:
        nonlocal text_length
        if collecting and failure is None and text_length <= limits.cell_chars:
            piece = data[: limits.cell_chars + 1 - text_length]
            text.append(piece)
            text_length += len(piece)

    def end(tag: str) -> None:
        nonlocal failure, collecting
        if failure is not None:
            return
        if tag in depth:
            depth[tag] = max(0, depth[tag] - 1)
        try:
            if tag == "c":
                value = _xlsx_value(
                    "".join(text), cell_type, cell_style, strings, date_styles, epoch
                )
                if value:
                    if column > limits.columns:
                        raise _too_many_columns(row_number, limits.columns)
                    cells[column] = value
            elif tag == "row":
                width = max(cells, default=0)
                row = [cells.get(i, "") for i in range(1, width + 1)]
                ready.append((row_number, _checked(row_number, row, limits)))
        except SpreadsheetError as error:
            failure = error
        collecting = bool(
            depth["c"] and (depth["v"] or (depth["is"] and depth["t"])) and not depth["rPh"]
        )

    xml = _Xml(start=start, end=end, text=on_text)
    try:
        for _ in xml.feed(archive, book.sheet):
            yield from ready
            ready.clear()
            if failure is not None:
                raise failure
    finally:
        xml.parser.StartElementHandler = xml.parser.EndElementHandler = None
    yield from ready
    if failure is not None:
        raise failure


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _column_of(reference: str) -> int:
    """`C7` → 3; 0 when the cell gives no reference."""
    match = _CELL_REF.match(reference)
    if not match:
        return 0
    number = 0
    for letter in match.group(1):
        number = number * 26 + ord(letter) - 64
    return number


def _xlsx_value(
    raw: str,
    cell_type: str,
    style: int,
    strings: _SharedStrings,
    date_styles: frozenset[int],
    epoch: datetime,
) -> str:
    """A cell as the text staff typed, as openpyxl's `data_only` reading would give it."""
    if cell_type == "s":
        index = _int(raw.strip())
        if index is None or not 0 <= index < len(strings.ends):
            raise _unreadable(f"shared string {raw[:20]!r} does not exist")
        return strings[index]
    if cell_type in ("inlineStr", "str", "e"):
        return raw
    if cell_type == "b":
        return str(raw.strip() in ("1", "true"))
    if cell_type == "d":
        return raw[:10] if re.fullmatch(r"\d{4}-\d\d-\d\d.*", raw) else raw
    number = raw.strip()
    if not number:
        return ""
    try:
        value: float = int(number) if re.fullmatch(r"[+-]?\d+", number) else float(number)
    except ValueError:
        return raw
    if style in date_styles:
        from openpyxl.utils.datetime import from_excel

        try:
            return _cell_text(from_excel(value, epoch=epoch))
        except (ValueError, OverflowError):
            return number
    return _cell_text(value)


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
    return csv_line(TEMPLATE_COLUMNS)


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


def rejected_csv_header() -> str:
    """errors.csv: the template's columns, then the row number and the reason. Staff fix the
    rows and upload this same file again (the extra columns are ignored). Every cell goes through
    `csv_line`, which keeps a value such as `=HYPERLINK(…)` from running in Excel."""
    return csv_line([*TEMPLATE_COLUMNS, ROW_COLUMN, ERRORS_COLUMN])


def rejected_csv_line(number: int, values: dict[str, str], reason: str) -> str:
    return csv_line([*(values.get(f, "") for f in TEMPLATE_COLUMNS.values()), number, reason])


def write_template_csv(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """Write rows in the template layout (how the demo prepares its spreadsheet)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TEMPLATE_COLUMNS)
        for row in rows:
            writer.writerow([row.get(field) or "" for field in TEMPLATE_COLUMNS.values()])
