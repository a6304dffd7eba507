"""What went wrong, as a code and a scrubbed sentence: for dead letters and logs alike."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from tenacity import RetryCallState

from lindung_runtime.errors import NotReadyYet, PermanentError
from lindung_runtime.privacy import scrub_text


def error_code(error: BaseException) -> str:
    if isinstance(error, json.JSONDecodeError | UnicodeDecodeError):
        return "invalid_json"
    if isinstance(error, ValidationError):
        return "schema_violation"
    if isinstance(error, PermanentError | NotReadyYet):
        return error.code
    return "handler_error"


_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")


def describe(error: BaseException) -> str:
    """What went wrong, for a dead letter's header and the logs: never a worker's values.

    Schema violations name the fields, not their input; a database error names its driver
    error class, codes and the driver's first line only (the rest quotes the statement, and
    PostgreSQL's DETAIL the values: NIK, names);
    any other message is scrubbed of NIKs, phone numbers, dates and quoted values."""
    if isinstance(error, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)[:10]
        ]
        return scrub_text("schema violation: " + "; ".join(parts))[:1000]
    if isinstance(error, sa_exc.StatementError):
        orig = error.orig
        codes = [
            str(code)
            for code in (
                getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None),
                getattr(orig, "sqlite_errorname", None),
                error.code,
            )
            if code
        ]
        # The driver's first line names what failed ("database is locked", "duplicate key value
        # violates unique constraint ..."); values come only after it (PostgreSQL's DETAIL).
        # Quoted parts may still be values (`invalid input syntax for type date: "31/02/1990"`).
        first = _QUOTED.sub("'…'", (str(orig).strip().splitlines() or [""])[0][:300])
        return scrub_text(
            f"{type(error).__name__}: {type(orig).__name__} ({', '.join(codes)}) {first}"
        ).strip()[:1000]
    return scrub_text(f"{type(error).__name__}: {error}")[:1000]


def log_retries(log: Any, event: str, **fields: Any) -> Callable[[RetryCallState], None]:
    """A tenacity `before_sleep` that logs each retry as `event` (a warning): the attempt, the
    wait, and what went wrong as a code and a scrubbed sentence, never a worker's values (a
    database error's parameters can hold a NIK). `fields` say what is retried."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            event,
            attempt=state.attempt_number,
            retry_in_s=round(state.upcoming_sleep, 3),
            error_code=error_code(error) if error else None,
            error=describe(error) if error else None,
            **fields,
        )

    return before_sleep
