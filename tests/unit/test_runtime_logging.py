"""Log lines: below the level they are dropped early, at it they carry context and masking."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from lindung_runtime.logging import configure_logging, get_logger


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("level", "expected"),
    [("WARNING", ["warned"]), ("INFO", ["told", "warned"]), ("DEBUG", ["noted", "told", "warned"])],
)
def test_lines_below_the_level_are_dropped(level: str, expected: list[str]) -> None:
    stream = io.StringIO()
    configure_logging("test", level, stream=stream)
    log = get_logger(f"test.level.{level}")
    log.debug("noted")
    log.info("told")
    log.warning("warned")
    assert [line["event"] for line in lines(stream)] == expected


@pytest.mark.usefixtures("restore_logging")
def test_a_line_carries_bound_context_and_no_full_nik() -> None:
    stream = io.StringIO()
    configure_logging("test", "INFO", stream=stream)
    with structlog.contextvars.bound_contextvars(topic="lindung.worker.registered"):
        get_logger("test.context").info("seen", note="NIK 5318010101900001")
    (line,) = lines(stream)
    assert line["service"] == "test" and line["topic"] == "lindung.worker.registered"
    assert line["note"] == "NIK 5318********0001"
