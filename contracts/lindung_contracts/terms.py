"""What a renewal means for a programme's terms: the one rule every service applies alike.

Each service numbers a programme's terms itself, from `program.published` (term 1) and the
renewals it accepted, in order (one key per programme: one partition, one order). So all of them
must accept and refuse the same renewals: this function is that decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol


class HasTermDates(Protocol):
    """A term as a service keeps it: any row with these two columns."""

    @property
    def term_start(self) -> date: ...
    @property
    def term_end(self) -> date: ...


@dataclass(frozen=True)
class TermDates:
    term_start: date
    term_end: date


@dataclass(frozen=True)
class RenewalOutcome:
    """`new`: the renewal is term `term`; `same`: it is term `term` already (a repeat);
    `overlaps`: it overlaps term `term`, or starts before it ends, and is refused."""

    kind: Literal["new", "same", "overlaps"]
    term: int

    @property
    def refusal(self) -> str:
        """Why an `overlaps` renewal is refused (for the dead letter, the log, the 409)."""
        return f"the renewal overlaps term {self.term} of the programme, or starts before it ends"


def renewal_outcome(terms: Sequence[HasTermDates], start: date, end: date) -> RenewalOutcome:
    """`terms` are the programme's terms in order (term 1 first). A new term starts after the
    last one ends: a term is never inserted between two others."""
    for number, term in enumerate(terms, start=1):
        if (term.term_start, term.term_end) == (start, end):
            return RenewalOutcome("same", number)
    for number, term in enumerate(terms, start=1):
        if start <= term.term_end:
            return RenewalOutcome("overlaps", number)
    return RenewalOutcome("new", len(terms) + 1)
