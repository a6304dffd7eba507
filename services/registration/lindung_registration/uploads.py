"""The file of a multipart upload, read from the request stream as it arrives.

FastAPI reads and spools a whole multipart body (to /tmp, past 1 MiB) before a route's
dependencies run, so a caller without a key could fill the disk before hearing 401. The import
route therefore takes the raw request: the key is checked first, and only then is the body read,
here, a piece at a time, with the file part handed on chunk by chunk (to IMPORT_DIR). Other parts
are skipped without being kept; part headers are capped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

MAX_PART_HEADERS_BYTES = 16 * 1024


class UploadError(Exception):
    """The body is not a multipart form with a file: (HTTP status, bilingual reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


MAX_FIELDS = 8
MAX_FIELD_BYTES = 1024


@dataclass
class FilePart:
    filename: str
    content_type: str | None
    chunks: AsyncIterator[bytes]  # the file's bytes; reading it reads the request on
    # Small text fields sent before the file (a form's CSRF token): read first, so a form can be
    # refused before its file is.
    fields: dict[str, str] = field(default_factory=dict)


class _Part:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.size = 0


async def file_part(
    body: AsyncIterator[bytes], content_type: str | None, part_name: str
) -> FilePart:
    """The part named `part_name` that carries a file, once its headers have arrived, with the
    small text fields before it (`MAX_FIELDS` of at most `MAX_FIELD_BYTES`; longer are left out)."""
    media_type, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise UploadError(
            422,
            "Kirim berkas sebagai multipart/form-data, kolom 'file' / "
            "Send the file as multipart/form-data, field 'file'",
        )
    events: deque[tuple[str, object]] = deque()
    header: dict[str, bytearray] = {"field": bytearray(), "value": bytearray()}
    part = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]
        part.size += end - start

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]
        part.size += end - start

    def on_header_end() -> None:
        if part.size > MAX_PART_HEADERS_BYTES:
            raise UploadError(400, "Kepala bagian terlalu besar / Part headers are too large")
        name = header["field"].decode("latin-1").strip().lower()
        # latin-1 keeps the raw bytes (and parse_options_header encodes back to them); the file
        # name is decoded as UTF-8 only once it is taken out.
        part.headers[name] = header["value"].decode("latin-1")
        header["field"].clear()
        header["value"].clear()

    def on_part_begin() -> None:
        nonlocal part
        part = _Part()

    def on_headers_finished() -> None:
        events.append(("headers", part.headers))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        events.append(("data", data[start:end]))

    def on_part_end() -> None:
        events.append(("end", None))

    parser = MultipartParser(
        boundary,
        {  # type: ignore[arg-type]
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )

    async def parsed() -> AsyncIterator[tuple[str, object]]:
        async for piece in body:
            try:
                parser.write(piece)
            except MultipartParseError as error:
                raise UploadError(
                    400, f"Multipart rusak / Broken multipart body: {error}"
                ) from None
            # One write of up to 64 KiB gives a few events; their data is joined per part.
            while events:
                kind, value = events.popleft()
                if kind == "data":
                    pieces = [value]
                    while events and events[0][0] == "data":
                        pieces.append(events.popleft()[1])
                    yield "data", b"".join(pieces)  # type: ignore[arg-type]
                else:
                    yield kind, value
        parser.finalize()

    stream = parsed()
    fields: dict[str, str] = {}
    text: tuple[str, bytearray] | None = None  # the text field being read, if any
    async for kind, value in stream:
        if kind == "data" and text is not None:
            assert isinstance(value, bytes)
            text[1].extend(value[: MAX_FIELD_BYTES + 1 - len(text[1])])
            continue
        if kind == "end" and text is not None:
            if len(fields) < MAX_FIELDS and len(text[1]) <= MAX_FIELD_BYTES:
                fields[text[0]] = text[1].decode("utf-8", errors="replace")
            text = None
            continue
        if kind != "headers":
            continue
        assert isinstance(value, dict)
        disposition, params = parse_options_header(value.get("content-disposition", ""))
        name = params.get(b"name", b"").decode("utf-8", errors="replace")
        filename = params.get(b"filename")
        if disposition == b"form-data" and name == part_name and filename is not None:
            return FilePart(
                filename=filename.decode("utf-8", errors="replace"),
                content_type=value.get("content-type"),
                chunks=_data_until_end(stream),
                fields=fields,
            )
        if disposition == b"form-data" and filename is None:
            text = (name, bytearray())
    raise UploadError(
        422,
        "Kolom 'file' berisi berkas tidak ada / No file in the form field 'file'",
    )


async def _data_until_end(stream: AsyncIterator[tuple[str, object]]) -> AsyncIterator[bytes]:
    async for kind, value in stream:
        if kind == "end":
            return
        if kind == "data":
            assert isinstance(value, bytes)
            yield value
    raise UploadError(400, "Berkas terpotong / The file ends before its part does")
