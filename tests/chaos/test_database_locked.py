"""Scenario 5, database locked: while registrations flow, the test holds an exclusive lock on a
service's SQLite file (as a stuck migration, a backup tool or an operator's open shell would).
The service waits, never dead-letters, keeps its offsets uncommitted meanwhile (they do not move
and its lag grows), and catches up without loss once the lock is gone.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lindung_contracts import topics
from lindung_runtime.kafka import GroupOffsets, TopicReader
from tests.chaos.kit import (
    Census,
    System,
    Workload,
    drive_lifecycle_after_invoices,
    group,
    judge,
    publish,
    publish_requests,
    say,
    settle,
    until,
    wait_for_decisions,
)

pytestmark = pytest.mark.chaos

SEED = 20251005


class ExclusiveLock:
    """`BEGIN EXCLUSIVE` on a SQLite file from another process's point of view (this one)."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(
            path, timeout=60, isolation_level=None, check_same_thread=False
        )

    async def take(self) -> None:
        await asyncio.to_thread(self.connection.execute, "BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.connection.execute("ROLLBACK")
        self.connection.close()


async def committed(system: System, service: str, topic: str) -> int:
    """The sum of the group's committed offsets on the topic's partitions."""
    async with GroupOffsets(system.bootstrap) as offsets:
        return sum((await offsets.committed(group(service, topic), [topic])).values())


async def settled_offsets(system: System, service: str, topic: str) -> int:
    """The committed offsets once they stop moving (at most 10 s after the lock is taken).

    The batch whose transaction committed just before the lock was granted may not have had its
    offsets acknowledged yet (seen in CI: 111 records, acknowledged within the first seconds); that
    is work already stored, not work done under the lock. Anything that moves after this is.
    """
    previous = await committed(system, service, topic)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        await asyncio.sleep(1.5)
        current = await committed(system, service, topic)
        if current == previous:
            return current
        previous = current
    raise AssertionError(f"{service}'s committed offsets kept moving under the lock")


async def hold(
    system: System, service: str, topic: str, seconds: float, table: str
) -> tuple[str, list[int]]:
    """Lock `service`'s database for `seconds` while watching its group on `topic`."""
    lock = ExclusiveLock(system.db(service))
    await lock.take()
    locked_at = time.monotonic()
    [(rows_before,)] = system.query(service, f"SELECT count(*) FROM {table}")
    lags = []
    offsets = set()
    try:
        offsets_before = await settled_offsets(system, service, topic)
        while time.monotonic() - locked_at < seconds:
            lags.append(await system.lag(service, topic))
            offsets.add(await committed(system, service, topic))
            await asyncio.sleep(1.0)
        [(rows_during,)] = system.query(service, f"SELECT count(*) FROM {table}")
    finally:
        lock.release()
    assert offsets == {offsets_before}, f"{service} committed offsets while its database was locked"
    assert rows_during == rows_before
    # Work kept arriving and stayed unconsumed (the first second may still see it caught up).
    assert lags[-1] > 0 and all(lag > 0 for lag in lags[2:]), f"{service}'s lag: {lags}"
    return (
        f"{service} locked {seconds:.0f} s: lag {lags[0]:,} -> {lags[-1]:,}, "
        f"offsets and {table} rows unchanged",
        lags,
    )


@pytest.mark.timeout(360)
async def test_locked_database_holds_offsets_and_recovers_without_loss(
    work: Path, show: Callable[[str], None]
) -> None:
    """N = 4,000 requests. Eligibility's database is locked for 65 s: beyond SQLite's 30 s busy
    timeout, so the batch transaction gets "database is locked" and the runtime retries it with
    backoff (the outbox relay too), never dead-lettering. Then billing's for 15 s: within the busy
    timeout, the transaction simply waits inside SQLite."""
    workload = Workload.generate(4_000, SEED)
    started = time.monotonic()
    async with System(work) as system, Census(system.bootstrap) as census:
        await publish(system.bootstrap, workload.setup())
        await publish_requests(system.bootstrap, workload.requests)
        await until(lambda: _decided_at_least(census, 200), timeout=120, what="decisions flowing")
        eligibility, _ = await hold(system, "eligibility", topics.WORKER_REGISTERED, 65, "decision")
        say(eligibility)
        # Eligibility now catches up, so billing receives confirmations while it is locked.
        billing, _ = await hold(system, "billing", topics.ELIGIBILITY_CONFIRMED, 15, "invoice_line")
        say(billing)
        await wait_for_decisions(census, workload, timeout=240)
        await drive_lifecycle_after_invoices(system, census, workload, timeout=180)
        await settle(system)
        await census.refresh()
        outcome = judge(census, workload, system, through="digest")
        async with TopicReader(
            system.bootstrap, [topics.dead_letter_topic(t) for t in topics.ALL]
        ) as dlq:
            dead = await dlq.read_new()
        restarts = system.restarts()
        retried = [
            line
            for line in system.child("eligibility").log_path.read_text().splitlines()
            if "batch_failed_will_retry" in line and "database is locked" in line
        ]

    seconds = time.monotonic() - started
    show(
        outcome.line(
            "database locked",
            seconds,
            f"{eligibility} ({len(retried)} batch retries on 'database is locked'); {billing}; "
            f"dead letters {len(dead)}",
        )
    )
    assert outcome.problems() == {}
    assert (outcome.duplicates, outcome.lost) == (0, 0)
    assert dead == []  # a locked database is waited for, never dead-lettered
    assert set(restarts.values()) == {0}
    assert retried, "eligibility's batch never met the locked database (lock too short?)"


async def _decided_at_least(census: Census, count: int) -> bool:
    await census.refresh()
    return census.decided >= count
