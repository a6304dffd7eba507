"""lindung_runtime.faststream_adapter is the one module that reaches past FastStream's public API.
These tests hold each thing it relies on to the installed FastStream, on real FastStream objects
(no broker process needed), and check that the adapter's functions work on them: a FastStream
upgrade that moves one fails here, naming what to look at, rather than in production."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import aiokafka
import aiokafka.admin
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError
from faststream.kafka import KafkaBroker

from lindung_contracts import WorkerRegistered, topics
from lindung_runtime import Service
from lindung_runtime.faststream_adapter import (
    ConcurrentStartKafkaBroker,
    fetch_batches,
    records_waiting,
)
from lindung_runtime.messages import Message, Outgoing
from lindung_runtime.settings import LindungSettings

# --- the producer under the broker -----------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka's clients start and stop without a broker: FastStream's own connect then runs
    as it would against Kafka, building and keeping the same objects."""

    async def nothing(*_: Any, **__: Any) -> None:
        return None

    monkeypatch.setattr(aiokafka.AIOKafkaProducer, "start", nothing)
    monkeypatch.setattr(aiokafka.AIOKafkaProducer, "stop", nothing)
    monkeypatch.setattr(aiokafka.admin.AIOKafkaAdminClient, "start", nothing)
    monkeypatch.setattr(aiokafka.admin.AIOKafkaAdminClient, "close", nothing)


# --- starting the subscribers concurrently ---------------------------------------------------


def test_faststream_start_still_does_only_what_the_concurrent_start_repeats() -> None:
    """ConcurrentStartKafkaBroker.start re-implements KafkaBroker.start (connect, then the base
    start: each subscriber, each publisher, `running`). The names those methods use are their
    fingerprint: if FastStream's start does anything more, this fails."""
    own = KafkaBroker.start
    assert set(own.__code__.co_names) <= {"connect", "super", "start"}, (
        "KafkaBroker.start changed: compare ConcurrentStartKafkaBroker.start with it"
    )
    base = next(
        klass.__dict__["start"]
        for klass in KafkaBroker.__mro__[1:]
        if "start" in klass.__dict__ and inspect.iscoroutinefunction(klass.__dict__["start"])
    )
    assert set(base.__code__.co_names) <= {"subscribers", "publishers", "start", "running"}, (
        f"{base.__qualname__} changed: compare ConcurrentStartKafkaBroker.start with it"
    )
    for name in ("connect", "subscribers", "publishers", "running"):
        assert hasattr(KafkaBroker("127.0.0.1:9", logger=None), name)


def recording_broker(
    broker_class: type[KafkaBroker], calls: list[str], joining: asyncio.Barrier | None = None
) -> KafkaBroker:
    """A broker with two subscribers and a publisher whose starts are recorded, not run. With
    `joining`, each subscriber's start waits at that barrier, as a consumer group join waits out
    the rebalance delay: started one after another, they would never both get past it."""
    broker = broker_class("127.0.0.1:9", logger=None)

    async def connect() -> None:
        calls.append("connect")

    broker.connect = connect  # type: ignore[method-assign,assignment]
    for topic in ("a", "b"):
        subscriber = broker.subscriber(topic, group_id=f"g-{topic}", batch=True)
        subscriber(lambda body: None)

        async def start(topic: str = topic) -> None:
            calls.append(f"subscriber {topic}")
            if joining is not None:
                await asyncio.wait_for(joining.wait(), timeout=2)

        subscriber.start = start  # type: ignore[method-assign]
    publisher = broker.publisher("out")

    async def start_publisher() -> None:
        calls.append("publisher")

    publisher.start = start_publisher  # type: ignore[method-assign]
    return broker


async def test_the_subscribers_start_together_and_everything_faststream_starts_is_started() -> None:
    calls: list[str] = []
    broker = recording_broker(ConcurrentStartKafkaBroker, calls, asyncio.Barrier(2))
    await broker.start()
    assert broker.running
    assert sorted(calls) == ["connect", "publisher", "subscriber a", "subscriber b"]
    assert calls[0] == "connect" and calls[-1] == "publisher"

    # FastStream's own start, on the same broker, starts exactly the same things.
    theirs: list[str] = []
    plain = recording_broker(KafkaBroker, theirs)
    await plain.start()
    assert plain.running
    assert sorted(theirs) == sorted(calls)


# --- the batch subscriber's fetch ------------------------------------------------------------


def batch_subscriber(max_records: int = 5, timeout_ms: int = 50) -> Any:
    broker = KafkaBroker("127.0.0.1:9", logger=None)
    subscriber = broker.subscriber(
        "t", group_id="g", batch=True, max_records=max_records, batch_timeout_ms=timeout_ms
    )
    subscriber(lambda body: None)
    return subscriber


def test_the_batch_subscriber_fetches_through_get_msg_on_the_instance() -> None:
    subscriber = batch_subscriber(max_records=7)
    get_msg = type(subscriber).get_msg
    assert list(inspect.signature(get_msg).parameters) == ["self", "consumer"], (
        "FastStream's batch subscriber fetches differently: update fetch_batches"
    )
    # What fetch_batches replaces does no more than it does: one `getmany` with the
    # subscriber's timeout and size, the records as a tuple, a sleep after an empty wait.
    assert set(get_msg.__code__.co_names) <= {
        "getmany",
        "batch_timeout_ms",
        "max_records",
        "anyio",
        "sleep",
        "tuple",
        "chain",
        "values",
    }, "FastStream's batch fetch does something new: compare fetch_batches with it"
    # FastStream's consume loop looks `get_msg` up on the subscriber for every batch, so an
    # attribute set on the instance is what it calls.
    assert "get_msg" in type(subscriber)._run_consume_loop.__code__.co_names
    assert (subscriber.max_records, subscriber.batch_timeout_ms) == (7, 50)


async def on_registered(batch: list[Message[WorkerRegistered]], tx: Any) -> list[Outgoing]:
    return []


def test_the_fetch_settings_reach_the_consumer_faststream_builds(data_dir: Path) -> None:
    settings = LindungSettings(
        LINDUNG_DATA_DIR=str(data_dir),
        CONSUMER_FETCH_MAX_WAIT_MS=37,
        CONSUMER_FETCH_MIN_BYTES=4096,
    )
    service = Service("adapter", settings, tables=[])
    service.consumer(topics.WORKER_REGISTERED)(on_registered)
    service.consumer(topics.PROGRAM_PUBLISHED, fetch_max_wait_ms=500)(on_registered)
    by_topic = {s.topics[0].name: s for s in service.broker.subscribers}
    # What FastStream passes to `AIOKafkaConsumer(...)` when the subscriber starts.
    arguments = by_topic[topics.WORKER_REGISTERED]._connection_args
    assert (arguments["fetch_max_wait_ms"], arguments["fetch_min_bytes"]) == (37, 4096)
    # A service's own option wins over the setting.
    assert by_topic[topics.PROGRAM_PUBLISHED]._connection_args["fetch_max_wait_ms"] == 500
    assert all("get_msg" in vars(s) for s in by_topic.values())  # fetch_batches is on


def record(offset: int, partition: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", partition, offset, 0, 0, None, b"{}", None, 0, 2, [])


class FakeConsumer:
    """aiokafka's consumer as the subscriber sees it: `getmany` hands out queued fetches, each
    after its delay (one that takes longer than the caller waits is not there yet, as a fetch
    the broker holds), and moves the partition's high watermark as a fetch response does."""

    def __init__(self, *fetches: tuple[list[int], int, float]) -> None:
        self.fetches = list(fetches)  # (offsets fetched, high watermark reported, delay in s)
        self.marks: dict[TopicPartition, int] = {}
        self.asked: list[int | None] = []

    async def getmany(
        self, timeout_ms: int, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        self.asked.append(max_records)
        if not self.fetches or self.fetches[0][2] > timeout_ms / 1000:
            if self.fetches:  # the held fetch comes closer while we wait
                offsets, highwater, delay = self.fetches[0]
                self.fetches[0] = (offsets, highwater, delay - timeout_ms / 1000)
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        offsets, highwater, delay = self.fetches.pop(0)
        await asyncio.sleep(delay)
        tp = TopicPartition("t", 0)
        self.marks[tp] = highwater
        taken = offsets[:max_records] if max_records else offsets
        if max_records and len(offsets) > max_records:  # the rest stays fetched, not yet taken
            self.fetches.insert(0, (offsets[max_records:], highwater, 0.0))
        return {tp: [record(o) for o in taken]} if taken else {}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.marks.get(tp)


def offsets(batch: tuple[ConsumerRecord[bytes, bytes], ...]) -> list[int]:
    return [r.offset for r in batch]


async def test_it_hands_over_what_faststream_would() -> None:
    theirs, ours = batch_subscriber(max_records=3), batch_subscriber(max_records=3)
    fetch_batches(ours, linger_ms=0)
    for subscriber in (theirs, ours):
        consumer = FakeConsumer(([0, 1, 2, 3], 4, 0.0))
        assert offsets(await subscriber.get_msg(consumer)) == [0, 1, 2]
        assert offsets(await subscriber.get_msg(consumer)) == [3]
        assert await subscriber.get_msg(consumer) == ()


async def until_a_batch(subscriber: Any, consumer: FakeConsumer) -> float:
    """Seconds from the first call of `get_msg` until one returned records."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not await subscriber.get_msg(consumer):
        pass
    return loop.time() - started


async def test_after_an_empty_wait_it_looks_again_at_once_where_faststream_sleeps() -> None:
    """A record fetched 10 ms after a wait (`batch_timeout_ms`, 200 ms here) came back empty:
    FastStream's fetch first sleeps another 200 ms; this one hands it over at once."""
    theirs, ours = batch_subscriber(timeout_ms=200), batch_subscriber(timeout_ms=200)
    fetch_batches(ours, linger_ms=0)
    assert await until_a_batch(theirs, FakeConsumer(([0], 1, 0.21))) > 0.4
    assert await until_a_batch(ours, FakeConsumer(([0], 1, 0.21))) < 0.35


async def test_an_answer_that_comes_back_early_and_empty_is_waited_out() -> None:
    """The consume loop calls again at once: an empty answer before its time (no partitions
    yet, say) must not make it spin."""
    subscriber = batch_subscriber()
    fetch_batches(subscriber, linger_ms=0)

    class Unassigned:
        async def getmany(self, timeout_ms: int, max_records: int | None = None) -> dict[Any, Any]:
            return {}

    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await subscriber.get_msg(Unassigned()) == ()
    assert loop.time() - started >= 0.045


async def test_a_short_batch_goes_after_one_quiet_gap_when_nothing_more_comes() -> None:
    subscriber = batch_subscriber(max_records=500)
    fetch_batches(subscriber, linger_ms=1000, gap_ms=5)
    consumer = FakeConsumer(([0, 1, 2], 3, 0.0), ([3], 4, 0.5))  # the next fetch is held
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert offsets(await subscriber.get_msg(consumer)) == [0, 1, 2]
    assert loop.time() - started < 0.2  # one gap, not the linger, not the held fetch
    assert consumer.asked == [500, 497]  # one fetch, then one look for more


async def test_records_still_coming_join_the_batch_up_to_its_size() -> None:
    subscriber = batch_subscriber(max_records=5)
    fetch_batches(subscriber, linger_ms=1000, gap_ms=50)
    consumer = FakeConsumer(([0, 1], 2, 0.0), ([2], 3, 0.001), ([3, 4, 5, 6], 7, 0.001))
    assert offsets(await subscriber.get_msg(consumer)) == [0, 1, 2, 3, 4]
    assert consumer.asked == [5, 3, 2]  # never more than the batch has room for


async def test_records_the_broker_reported_are_waited_for_longer_than_a_gap() -> None:
    subscriber = batch_subscriber(max_records=500)
    fetch_batches(subscriber, linger_ms=1000, gap_ms=5)
    # The first fetch says 6 records exist; the rest arrive 100 ms later (more than a gap).
    consumer = FakeConsumer(([0, 1], 6, 0.0), ([2, 3, 4, 5], 6, 0.1), ([6], 7, 0.1))
    assert offsets(await subscriber.get_msg(consumer)) == [0, 1, 2, 3, 4, 5]


async def test_the_wait_is_bounded_by_the_linger() -> None:
    subscriber = batch_subscriber(max_records=500)
    fetch_batches(subscriber, linger_ms=30, gap_ms=5)
    consumer = FakeConsumer(([0], 100, 0.0), ([1], 100, 10.0))  # reported, never delivered
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert offsets(await subscriber.get_msg(consumer)) == [0]
    assert 0.02 < loop.time() - started < 0.5


async def test_an_error_while_lingering_comes_after_the_records_already_taken() -> None:
    """Records taken from the consumer are past its position: dropping them with the error
    would skip them until the next rebalance."""
    subscriber = batch_subscriber(max_records=500)
    fetch_batches(subscriber, linger_ms=1000, gap_ms=5)
    consumer = FakeConsumer(([0, 1], 2, 0.0))
    fetch_once = consumer.getmany

    async def failing(timeout_ms: int, max_records: int | None = None) -> Any:
        if consumer.asked:
            raise TopicAuthorizationFailedError()
        return await fetch_once(timeout_ms, max_records)

    consumer.getmany = failing  # type: ignore[method-assign]
    assert offsets(await subscriber.get_msg(consumer)) == [0, 1]
    with pytest.raises(TopicAuthorizationFailedError):
        await subscriber.get_msg(consumer)


async def test_without_a_linger_a_batch_goes_as_fetched() -> None:
    subscriber = batch_subscriber(max_records=500)
    fetch_batches(subscriber, linger_ms=0)
    consumer = FakeConsumer(([0, 1], 9, 0.0), ([2], 9, 0.0))
    assert offsets(await subscriber.get_msg(consumer)) == [0, 1]
    assert consumer.asked == [500]


def test_records_waiting_reads_each_partition_the_records_came_from() -> None:
    consumer = FakeConsumer()
    consumer.marks = {TopicPartition("t", 0): 3, TopicPartition("t", 1): 8}
    assert not records_waiting(consumer, [record(1), record(2), record(7, partition=1)])  # type: ignore[arg-type]
    assert records_waiting(consumer, [record(2), record(6, partition=1)])  # type: ignore[arg-type]
    assert not records_waiting(consumer, [])  # type: ignore[arg-type]
