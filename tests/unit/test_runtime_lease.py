"""The runtime's lease (lindung_runtime.lease), which the outbox relay, the importer and the digest
dispatcher all claim their rows through: what each call may and may not take from another
instance. The instances' contention itself is proven in tests/integration/test_*leases*/relays."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, DateTime
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, col

from lindung_runtime import FixedClock
from lindung_runtime.db import Database
from lindung_runtime.lease import Lease

NOW = datetime(2025, 12, 1, tzinfo=UTC)


class Table(SQLModel, registry=registry()):
    """Metadata of this test's own, apart from the services' tables."""


class Job(Table, table=True):
    __tablename__ = "job"

    id: int = Field(primary_key=True)
    done: bool = False
    lease_until: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    lease_owner: str | None = None


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'lease.db'}")
    await database.create_tables([Job])
    async with database.session() as session:
        session.add_all([Job(id=n) for n in (3, 1, 2)])
        await session.commit()
    yield database
    await database.dispose()


async def claim(database: Database, lease: Lease, limit: int = 1) -> list[int]:
    async with database.session() as session:
        rows = await lease.claim(session, col(Job.done).is_(False), limit=limit)
        await session.commit()
    return [row.id for row in rows]


async def test_instances_claim_disjoint_rows_oldest_first_until_a_lease_runs_out(
    database: Database,
) -> None:
    clock = FixedClock(NOW)
    one, two = (Lease(Job, key="id", clock=clock, seconds=60) for _ in range(2))
    assert await claim(database, one, limit=2) == [1, 2]
    assert await claim(database, two, limit=2) == [3]
    assert await claim(database, two) == []  # all leased

    clock.at += timedelta(seconds=61)  # `one` died: its leases ran out
    assert await claim(database, two, limit=5) == [1, 2, 3]


async def test_an_instance_whose_lease_was_taken_over_can_neither_renew_nor_release_it(
    database: Database,
) -> None:
    """Otherwise a stalled instance would record an outcome over the new holder's work."""
    clock = FixedClock(NOW)
    stalled, successor = (Lease(Job, key="id", clock=clock, seconds=60) for _ in range(2))
    assert await claim(database, stalled) == [1]
    clock.at += timedelta(seconds=61)
    assert await claim(database, successor) == [1]

    async with database.session() as session:
        assert await stalled.renew(session, [1]) == set()
        assert await stalled.release(session, [1], done=True) == set()
        assert await successor.renew(session, [1]) == {1}
        assert await successor.release(session, [1], done=True) == {1}
        await session.commit()
        job = await session.get(Job, 1)
    assert job is not None and job.done and (job.lease_until, job.lease_owner) == (None, None)
