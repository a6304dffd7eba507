"""How a handler tells the runtime what kind of failure it hit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_waited_out: ContextVar[bool] = ContextVar("lindung_waited_out", default=False)


class PermanentError(Exception):
    """Retrying cannot help (bad input, unknown reference): dead-letter it at once."""

    code = "permanent_error"


class NotReadyYet(Exception):
    """Something this event depends on has not arrived yet: retry with backoff, then dead-letter."""

    code = "not_ready"


class UntrustedSource(PermanentError):
    """The record's CloudEvents `ce_source` is not one the topic's consumers believe."""

    code = "untrusted_source"


def waited_out() -> bool:
    """True while the runtime replays events whose wait for a missing fact (NotReadyYet) ran
    out: a handler that has an answer without the fact (e.g. a rejection) gives it now, instead
    of the event being dead-lettered."""
    return _waited_out.get()


@contextmanager
def waiting_over() -> Iterator[None]:
    """The scope in which `waited_out()` is true (the runtime's last replay of such events)."""
    token = _waited_out.set(True)
    try:
        yield
    finally:
        _waited_out.reset(token)
