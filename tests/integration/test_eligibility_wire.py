"""Eligibility against a real broker: two instances in one consumer group share one database and
never confirm more workers than the programme's quota."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from lindung_contracts import WorkerRegistered, topics
from lindung_eligibility.app import create_service
from lindung_eligibility.db import Decision, Program
from lindung_eligibility.settings import EligibilitySettings
from lindung_runtime import Service
from tests.integration.conftest import (
    count_rows,
    eventually,
    on_broker,
    outbox_drained,
    running,
    wait_for_rows,
    wait_until_consumed,
    wire,
)
from tests.sources import TrustedClient
from tests.unit.handler_kit import PROGRAM, founding_program

pytestmark = pytest.mark.integration


def eligibility(data_dir: Path, bootstrap: str) -> Service:
    settings = on_broker(
        data_dir,
        bootstrap,
        consumer_batch_size=7,  # many small transactions, interleaved between the instances
    )
    return create_service(EligibilitySettings(**settings))


def registered(serial: int) -> WorkerRegistered:
    nik = f"531801010190{serial:04d}"
    return WorkerRegistered(
        worker_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PROGRAM}/{nik}")),
        program_id=PROGRAM,
        nik=nik,
        full_name=f"Pekerja {serial}",
        birth_date=date(1990, 1, 1),
        gender="M",
        village="Kalembu Ndara Mane",
        district="Wewewa Barat",
        registered_at=datetime(2025, 9, 20, tzinfo=UTC),
    )


def assigned(service: Service, topic: str) -> set[int]:
    """Partitions of `topic` this instance's consumer holds right now."""
    return {
        tp.partition
        for sub in service.broker.subscribers
        if any(t.name == topic for t in sub.topics) and sub.consumer is not None
        for tp in sub.consumer.assignment()
    }


@pytest.mark.integration
async def test_two_instances_in_one_group_never_confirm_beyond_the_quota(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    first, second = eligibility(data_dir, kafka_bootstrap), eligibility(data_dir, kafka_bootstrap)
    workers = [registered(n) for n in range(1, 81)]

    async with running(first, second), TrustedClient(kafka_bootstrap) as client:

        def both_have_partitions() -> bool:
            return all(assigned(s, topics.WORKER_REGISTERED) for s in (first, second))

        await eventually(both_have_partitions, what="both instances to share worker.registered")
        await client.publish(founding_program(quota=50))
        await wait_for_rows(first, Program, 1, what="the programme to reach eligibility")

        async with wire(
            kafka_bootstrap, [topics.ELIGIBILITY_CONFIRMED, topics.ELIGIBILITY_REJECTED]
        ) as out:
            await client.publish_many(workers)

            async def all_decided() -> bool:
                records = await out.poll()
                return len({json.loads(r.value)["worker_id"] for r in records}) >= len(workers)

            await eventually(all_decided, what="a decision for every worker")
            await wait_until_consumed(kafka_bootstrap, first, topics.WORKER_REGISTERED)
            await eventually(lambda: outbox_drained(first), what="the outbox to drain")
            records = await out.poll()

    # Both relays read the same outbox, so a row may go out twice (at-least-once); count events
    # by their CloudEvents id, and decisions by worker.
    events = {r.headers["ce_id"]: r for r in records}
    decided = Counter(json.loads(r.value)["worker_id"] for r in events.values())
    assert sorted(decided) == sorted(w.worker_id for w in workers)
    assert set(decided.values()) == {1}, "a worker was decided twice"

    confirmed = [r for r in events.values() if r.topic == topics.ELIGIBILITY_CONFIRMED]
    rejected = [
        json.loads(r.value) for r in events.values() if r.topic == topics.ELIGIBILITY_REJECTED
    ]
    assert len(confirmed) == 50
    assert len(rejected) == 30
    assert all([reason["code"] for reason in r["reasons"]] == ["quota_exhausted"] for r in rejected)

    assert await count_rows(first, Decision, Decision.status == "confirmed") == 50
    async with first.database.read_session() as session:
        row = await session.get(Program, PROGRAM)
    assert row is not None and row.confirmed_count == 50
