"""Leases: how a background loop that no Kafka partition drives (the outbox relay, the importer,
the digest dispatcher) takes rows to work on, so that instances sharing one database never work
on the same row at once, and a crashed instance's rows come free when its lease runs out.

A row is leased by two columns of its own table: `lease_until` and, where the table has one,
`lease_owner` (the instance holding it). Claiming is one guarded UPDATE, `... WHERE lease_until
IS NULL OR lease_until < now`, whose RETURNING says which rows this instance got: an UPDATE is
atomic on SQLite and PostgreSQL alike, so two instances can never both get a row. The candidate
SELECT before it (with FOR UPDATE SKIP LOCKED on PostgreSQL) only keeps instances from queueing
behind each other's locks. Renewing and releasing are guarded by the owner, so an instance whose
lease ran out (and was taken over) changes nothing; without an owner column (the outbox, whose
rows are safe to send twice) they go by key.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, or_, select, update
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from lindung_runtime.clock import Clock


class Lease:
    """Leases on the rows of `model` for one instance: `claim`, `renew`, `release`.

    Each method runs in the caller's session and leaves the commit to it, so a claim can be
    committed with other changes (an attempt counted) and a release with the outcome (sent_at).
    """

    def __init__(
        self,
        model: type[SQLModel],
        *,
        key: str,
        clock: Clock,
        seconds: float,
        until: str = "lease_until",
        owner: str | None = "lease_owner",
    ) -> None:
        table = model.__table__  # type: ignore[attr-defined]
        self.key = table.c[key]
        self.until = table.c[until]
        self.owner = table.c[owner] if owner is not None else None
        self.table = table
        self.clock = clock
        self.seconds = seconds
        self.owner_id = uuid.uuid4().hex  # this instance (this loop): one per Lease object

    async def claim(
        self,
        session: AsyncSession,
        *where: Any,
        order_by: Any = None,
        limit: int = 1,
        returning: Sequence[Any] = (),
        values: dict[str, Any] | None = None,
    ) -> list[Row[Any]]:
        """Lease up to `limit` rows matching `where` whose lease is free or ran out, oldest first
        by `order_by` (the key unless given). Returns the rows got, as (key, *returning), in that
        order; `values` are set on them in the same statement."""
        now = self.clock.now()
        free = or_(self.until.is_(None), self.until < now)
        candidates = (
            select(self.key)
            .where(*where, free)
            .order_by(order_by if order_by is not None else self.key)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite holds the write lock
        )
        connection = await session.connection()  # the session's own transaction
        keys = list((await connection.execute(candidates)).scalars())
        if not keys:
            return []
        leased = {self.until.key: now + timedelta(seconds=self.seconds), **(values or {})}
        if self.owner is not None:
            leased[self.owner.key] = self.owner_id
        got = await connection.execute(
            update(self.table)
            .where(self.key.in_(keys), *where, free)  # taken meanwhile: not got
            .values(leased)
            .returning(self.key, *returning)
        )
        by_key = {row[0]: row for row in got.all()}
        return [by_key[k] for k in keys if k in by_key]

    async def renew(self, session: AsyncSession, keys: Collection[Any]) -> set[Any]:
        """Extend this instance's lease on `keys`; returns those still held (a lease that ran out
        and was claimed by another instance is lost: stop working on that row)."""
        return await self._update(
            session, keys, {self.until.key: self.clock.now() + timedelta(seconds=self.seconds)}
        )

    async def release(
        self, session: AsyncSession, keys: Collection[Any], **values: Any
    ) -> set[Any]:
        """Give back this instance's lease on `keys`, setting `values` (the work's outcome) on the
        rows still held; returns those."""
        cleared: dict[str, Any] = {self.until.key: None, **values}
        if self.owner is not None:
            cleared[self.owner.key] = None
        return await self._update(session, keys, cleared)

    async def _update(
        self, session: AsyncSession, keys: Collection[Any], values: dict[str, Any]
    ) -> set[Any]:
        if not keys:
            return set()
        held = self.key.in_(list(keys))
        if self.owner is not None:
            held = held & (self.owner == self.owner_id)
        connection = await session.connection()
        result = await connection.execute(
            update(self.table).where(held).values(values).returning(self.key)
        )
        return set(result.scalars())
