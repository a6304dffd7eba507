"""Personal data in the less obvious channels: NIKs written with any separators, error texts that
quote a record (pydantic inputs, SQL parameters), span attributes and exception events, and
tracebacks in log lines."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel
from sqlalchemy import text

from lindung_runtime.db import Database
from lindung_runtime.logging import configure_logging, get_logger
from lindung_runtime.privacy import mask_text, scrub_text
from lindung_runtime.tracing import ScrubbingSpanExporter

NIK = "5318010101900001"
NAME = "Yohanes Kaleka"


@pytest.mark.parametrize(
    "written",
    [
        "5318-01-01-0190-0001",
        "5318 0101 0190 0001",
        "5318.0101.0190.0001",
        "53-18-01-01-01-90-00-01",
        "5318%200101%200190%200001",
        "5318 - 0101 - 0190 - 0001",
        "5_3_1_8_0_1_0_1_0_1_9_0_0_0_0_1",
    ],
)
def test_a_nik_with_any_separators_is_masked(written: str) -> None:
    masked = mask_text(f"GET /workers/{written}?x=y")
    digits = "".join(ch for ch in masked.replace("%20", " ") if ch.isdigit())
    assert digits == "53180001"  # region and serial only
    assert masked.startswith("GET /workers/") and masked.endswith("?x=y")


def test_adjacent_phone_numbers_are_each_masked() -> None:
    masked = mask_text("+62 812-3456-7890 (0812) 3456 7890")
    assert "3456-7890" not in masked and "3456 7890" not in masked


class Request(BaseModel):
    program_id: str
    nik: str


def test_scrub_text_hides_quoted_inputs_sql_parameters_and_birth_dates() -> None:
    try:
        Request.model_validate({"nik": NIK, "full_name": NAME})
    except ValueError as error:
        quoted = str(error)
    assert NAME in quoted  # pydantic quotes the whole input
    sql = f"(sqlite3.IntegrityError) UNIQUE\n[SQL: INSERT ...]\n[parameters: ('{NAME}', '{NIK}')]"
    for text_ in (quoted, sql, f"born 31/12/1990, 1990-12-31, datetime.date(1990, 12, 31) {NIK}"):
        scrubbed = scrub_text(text_)
        assert NAME not in scrubbed and NIK not in scrubbed
        assert "31/12/1990" not in scrubbed and "1990-12-31" not in scrubbed
        assert "1990, 12, 31" not in scrubbed


async def test_sql_errors_do_not_carry_their_parameters(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with database.engine.begin() as connection:
            await connection.execute(text("CREATE TABLE w (nik TEXT PRIMARY KEY, name TEXT)"))
            await connection.execute(text("INSERT INTO w VALUES (:n, :m)"), {"n": NIK, "m": NAME})
        with pytest.raises(Exception) as caught:
            async with database.engine.begin() as connection:
                insert = text("INSERT INTO w VALUES (:n, :m)")
                await connection.execute(insert, {"n": NIK, "m": NAME})
    finally:
        await database.dispose()
    assert "UNIQUE" in str(caught.value)
    assert NIK not in str(caught.value) and NAME not in str(caught.value)


def test_exported_spans_lose_personal_attributes_and_quoted_exception_texts() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(memory)))
    tracer = provider.get_tracer("t")
    with (
        pytest.raises(ValueError),
        tracer.start_as_current_span(
            f"GET /workers/{NIK}",
            attributes={
                "lindung.worker.nik": NIK,
                "full_name": NAME,
                "lindung.worker.phone": "081234567890",
                "url.path": f"/workers/{NIK}",
                "lindung.program.id": "sbd-2025",
                "messaging.kafka.offset": 7,
            },
        ),
    ):
        Request.model_validate({"nik": NIK, "full_name": NAME, "birth_date": "31/12/1990"})
    [span] = memory.get_finished_spans()
    exported = span.to_json()
    assert NIK not in exported and NAME not in exported and "081234567890" not in exported
    assert "31/12/1990" not in exported
    assert dict(span.attributes or {}) == {
        "url.path": "/workers/5318********0001",
        "lindung.program.id": "sbd-2025",
        "messaging.kafka.offset": 7,
    }
    [event] = span.events
    assert event.name == "exception"
    assert str((event.attributes or {})["exception.type"]).endswith("ValidationError")
    assert "input_value=<hidden>" in str((event.attributes or {})["exception.message"])


@pytest.mark.usefixtures("restore_logging")
def test_a_logged_traceback_quoting_a_record_is_masked() -> None:
    stream = io.StringIO()
    configure_logging("test", "INFO", stream=stream)
    try:
        Request.model_validate({"nik": NIK, "full_name": NAME})
    except ValueError:
        get_logger("test.structlog").exception("failed")
        logging.getLogger("test.stdlib").exception("failed too")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["failed", "failed too"]
    for line in lines:
        assert "Traceback" in line["exception"]
        assert NIK not in line["exception"] and NAME not in line["exception"]
