"""An injectable clock. Domain code never asks the wall clock; handlers ask this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


def as_utc(moment: datetime) -> datetime:
    """A stored instant, aware: SQLite hands back naive datetimes for timezone-aware columns,
    and every instant Lindung stores is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """For tests: time stands still unless moved."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at
