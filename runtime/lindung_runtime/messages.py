"""What a batch handler takes and returns: a batch of messages in, a batch of events out.

    async def on_confirmed(
        batch: list[Message[EligibilityConfirmed]], tx: Transaction
    ) -> list[Outgoing]:
        ...  # one query per table, the domain's pure rules, bulk writes on tx.connection
        return [message.reply(ContributionInvoiced(...)) for message in ...]

The runtime has already skipped what the inbox has seen; after the handler it writes the
outgoing events to the outbox and the batch's inbox marks, and commits, all in `tx`'s
transaction. A handler raises to fail the whole batch: the pipeline retries it, then replays it
one record per transaction to isolate a poison record (pipeline/dead_letter.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

from lindung_contracts import Event
from lindung_contracts.cloudevents import new_event_id
from lindung_runtime.clock import Clock

E = TypeVar("E")


def trace_id_in(trace: Mapping[str, str]) -> str | None:
    """The trace id (32 hex digits) of W3C trace headers, if they carry one."""
    parts = trace.get("traceparent", "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An event to publish after commit, with the trace context it continues and the id it
    will be published under (known now, so that a row can refer to it)."""

    event: Event
    trace: Mapping[str, str]
    event_id: str = field(default_factory=new_event_id)


@dataclass(frozen=True, slots=True)
class Message(Generic[E]):
    """One inbound event of a batch: the event, its CloudEvents id (also its inbox mark), when
    its producer says it happened (`ce_time`) and the trace context that what it causes
    continues (the worker's trace)."""

    event: E
    id: str
    trace: Mapping[str, str]
    time: datetime

    @property
    def trace_id(self) -> str | None:
        """The trace id as 32 hex digits (what Jaeger and the logs show), if there is one."""
        return trace_id_in(self.trace)

    def reply(self, event: Event) -> Outgoing:
        """An outgoing event caused by this one, in its trace."""
        return Outgoing(event, self.trace)


def latest(batch: Sequence[Message[E]], key: Callable[[E], Any]) -> list[E]:
    """The batch's last event for each key, in key order: an upsert of them takes its row
    locks in one order, so two batches never wait on each other crosswise."""
    last = {key(m.event): m.event for m in batch}
    return [last[k] for k in sorted(last)]


def columns(model: type[SQLModel]) -> Any:
    """A table's columns, for Core statements (`columns(Invoice).total_idr`)."""
    return model.__table__.c  # type: ignore[attr-defined]


class Transaction:
    """One batch's database transaction, for SQLAlchemy Core statements, and today's time."""

    def __init__(self, connection: AsyncConnection, clock: Clock) -> None:
        self.connection = connection
        self.clock = clock

    def now(self) -> datetime:
        return self.clock.now()

    @property
    def postgres(self) -> bool:
        return self.connection.dialect.name == "postgresql"

    async def rows(self, statement: Any) -> Sequence[Any]:
        """The rows a query returns (plain rows, attribute access by column name)."""
        return (await self.connection.execute(statement)).all()

    async def insert_new(
        self, model: type[SQLModel], rows: Sequence[Mapping[str, Any]], returning: Any = None
    ) -> Sequence[Any]:
        """Insert rows, leaving alone any whose key exists already (another instance, or a
        redelivery, got there first). With `returning` (columns), the rows that were inserted."""
        if not rows:
            return []
        statement = self.insert(model).on_conflict_do_nothing()
        if returning is None:
            await self.connection.execute(statement, list(rows))
            return []
        # SQLAlchemy sends it as multi-row statements of up to 1,000 rows ("insertmanyvalues",
        # SQLite and PostgreSQL) and gathers what each returned, in no particular order.
        result = await self.connection.execute(statement.returning(*returning), list(rows))
        return result.all()

    async def upsert(
        self,
        model: type[SQLModel],
        rows: Sequence[Mapping[str, Any]],
        keys: Iterable[str],
        update: Iterable[str] | None = None,
    ) -> None:
        """Insert rows, or set the `update` columns (default: every column given but the keys)
        of those whose `keys` exist, in one statement."""
        if not rows:
            return
        keys = list(keys)
        if update is None:
            update = [name for name in rows[0] if name not in keys]
        statement = self.insert(model)
        statement = statement.on_conflict_do_update(
            index_elements=keys,
            set_={name: statement.excluded[name] for name in update},
        )
        await self.connection.execute(statement, list(rows))

    def insert(self, model: type[SQLModel]) -> Any:
        """This database's INSERT (PostgreSQL's or SQLite's), which knows ON CONFLICT."""
        table: Table = model.__table__  # type: ignore[attr-defined]
        return (postgresql if self.postgres else sqlite).insert(table)
