"""Structured JSON logs (structlog) with trace ids and masked personal numbers.

The standard library's loggers (FastStream, aiokafka, SQLAlchemy) are routed through the same
processors, so operations get one JSON line per event whatever wrote it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from opentelemetry import trace

from lindung_runtime.privacy import mask_values, scrub_text

#: Keys whose text is an error's: a traceback or a repr may quote a record (its name, its birth
#: date) as pydantic and SQLAlchemy do, which `scrub_text` hides as well.
_ERROR_KEYS = ("exception", "error", "stack_info")


def add_trace_context(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Put the current span's ids on the line, so a log line leads to its trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


def mask_personal_numbers(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Last line of defence: whatever a caller logged, no full NIK or phone number leaves, nor
    what an exception's text quotes. Runs after `format_exc_info`, so on the rendered
    traceback, for structlog's and the standard library's loggers alike."""
    masked: MutableMapping[str, Any] = mask_values(dict(event_dict))
    for key in _ERROR_KEYS:
        if isinstance(masked.get(key), str):
            masked[key] = scrub_text(masked[key])
    return masked


class LevelFirstBoundLogger(structlog.stdlib.BoundLogger):
    """Asks the logger's level before building the line. A DEBUG line per event below the level
    otherwise still copies the context and enters the processor chain (about 10 µs each)."""

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if not self._logger.isEnabledFor(logging.DEBUG):
            return None
        return self._proxy_to_logger("debug", event, *args, **kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if not self._logger.isEnabledFor(logging.INFO):
            return None
        return self._proxy_to_logger("info", event, *args, **kw)


def configure_logging(
    service: str, level: str = "INFO", fmt: str = "json", stream: TextIO | None = None
) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
        structlog.processors.format_exc_info,
        mask_personal_numbers,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        # filter_by_level first: a line below the level costs one comparison, not the chain.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=LevelFirstBoundLogger,
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Per-message chatter of the libraries stays at DEBUG; their warnings and errors still show.
    for noisy in ("aiokafka", "sqlalchemy.engine", "aiosqlite", "faststream.access", "mail.log"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)  # type: ignore[no-any-return]
