"""Several relay instances sharing one service database publish each outbox row once: rows are
claimed with a lease, and on PostgreSQL with FOR UPDATE SKIP LOCKED (run on SQLite by default and
on PostgreSQL in the PostgreSQL pass of .ci/run)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lindung_contracts import DayStarted
from lindung_runtime import FixedClock
from lindung_runtime.db import Database
from lindung_runtime.migrations import upgrade_async
from lindung_runtime.outbox import OutboxRelay, UnitOfWork
from lindung_runtime.settings import LindungSettings

pytestmark = pytest.mark.integration

ROWS = 3_000


class RecordingBroker:
    """Stands in for the Kafka producer: remembers what was published.

    Its first publish waits at a barrier shared with the other relay's broker, so the test does
    not depend on which relay the scheduler (or SQLite's busy handler) favours: both relays must
    hold a claimed batch at the same moment, which only leases make possible without sending a
    row twice. A relay that cannot claim while the other holds its lease times out at the
    barrier."""

    def __init__(self, barrier: asyncio.Barrier) -> None:
        self.barrier = barrier
        self.published: list[str] = []

    async def publish(self, body: bytes, *, headers: dict[str, str], **_: Any) -> None:
        if not self.published:
            await asyncio.wait_for(self.barrier.wait(), timeout=30)
        await asyncio.sleep(0)  # let the other relay run meanwhile
        self.published.append(headers["ce_id"])


async def test_two_relays_on_one_database_publish_every_row_exactly_once(data_dir: Path) -> None:
    url = LindungSettings(LINDUNG_DATA_DIR=str(data_dir)).database_url_for("eligibility")
    await upgrade_async("eligibility", url)
    clock = FixedClock(datetime(2025, 10, 1, tzinfo=UTC))
    writer = Database(url)
    async with writer.session() as session:
        uow = UnitOfWork(session, clock, "/test")
        for offset in range(ROWS):
            uow.emit(DayStarted(date=date(2025, 10, 1) + timedelta(days=offset)))
        await uow.commit()

    barrier = asyncio.Barrier(2)
    brokers = [RecordingBroker(barrier), RecordingBroker(barrier)]
    databases = [Database(url), Database(url)]  # two instances: two engines, two pools
    relays = [
        OutboxRelay(db, broker, clock, batch_size=100)
        for db, broker in zip(databases, brokers, strict=True)
    ]
    try:
        sent = await asyncio.gather(*(relay.relay_all() for relay in relays))
    finally:
        for database in [writer, *databases]:
            await database.dispose()

    published = Counter(brokers[0].published + brokers[1].published)
    assert sum(sent) == ROWS
    assert len(published) == ROWS
    assert max(published.values()) == 1, "a row was published twice"
    assert all(broker.published for broker in brokers), f"one relay did all the work: {sent}"


class FailingBroker:
    """A broker that is away: every publish fails."""

    async def publish(self, body: bytes, **_: Any) -> None:
        raise ConnectionError("broker away")


async def test_rows_committed_through_a_relay_are_its_own_until_it_fails_to_send(
    data_dir: Path,
) -> None:
    """A unit of work hands its committed rows to its instance's relay, leased: the other
    instance's poll does not take them. When that relay cannot send them it gives them back at
    once, and the other's poll sends each exactly once."""
    url = LindungSettings(LINDUNG_DATA_DIR=str(data_dir)).database_url_for("eligibility")
    await upgrade_async("eligibility", url)
    clock = FixedClock(datetime(2025, 10, 1, tzinfo=UTC))
    mine, other = Database(url), Database(url)
    broker = RecordingBroker(asyncio.Barrier(1))
    committing = OutboxRelay(mine, FailingBroker(), clock, batch_size=100)
    polling = OutboxRelay(other, broker, clock, batch_size=100)
    try:
        async with mine.session() as session:
            uow = UnitOfWork(session, clock, "/test", committing)
            ids = [
                uow.emit(DayStarted(date=date(2025, 10, 1) + timedelta(days=n))) for n in range(250)
            ]
            await uow.commit()
        assert await polling.relay_all() == 0  # leased to the committing instance
        with pytest.raises(ConnectionError):
            await committing.send_handed()
        assert await polling.relay_all() == 250
    finally:
        await mine.dispose()
        await other.dispose()
    assert broker.published == ids  # each once, in the order committed
