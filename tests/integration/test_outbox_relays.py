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
