"""Every place where Lindung reaches past FastStream's public API, in one module.

Written against FastStream 0.7 (Kafka broker on aiokafka 0.14). The rest of the runtime uses
FastStream's public API only (`KafkaBroker`, `broker.subscriber(...)`, `broker.publisher(...)`,
middlewares); what it needs beyond that is here, and tests/unit/test_faststream_adapter.py
checks each item against the installed FastStream, so an upgrade that moves one fails there
rather than in production:

- `ConcurrentStartKafkaBroker.start()` re-implements FastStream's `KafkaBroker.start()` (connect,
  start every subscriber, then every publisher, then `running = True`; the parts are public, the
  order is FastStream's) with the subscribers started concurrently: each joins its own consumer
  group and waits out the broker's initial rebalance delay (measured 5 s on Tansu; Apache
  Kafka's default is 3 s), so one after another a service with eight subscribers took eight
  times as long to start.
- `fetch_batches(subscriber, linger_ms)` replaces a batch subscriber's `get_msg(consumer)` (the
  one call FastStream's consume loop makes to fetch a batch, looked up on the instance each
  time, returning a tuple of aiokafka records, empty for none) with one that does not sleep after
  an empty wait and lets a short batch collect records still coming (aiokafka's public `getmany`
  and `highwater`). It reads the subscriber's `batch_timeout_ms` and `max_records` (set by
  `broker.subscriber(...)`). The fetch settings (`fetch_max_wait_ms`, `fetch_min_bytes`) need
  no adapter: they are public arguments of `broker.subscriber`; they cannot replace this one,
  because the embedded broker ignores `fetch_min_bytes` and FastStream's sleep is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from itertools import chain
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker


class ConcurrentStartKafkaBroker(KafkaBroker):
    """A FastStream Kafka broker that starts its subscribers concurrently (see the module's
    docstring); otherwise FastStream's own."""

    async def start(self) -> None:
        await self.connect()
        await asyncio.gather(*(subscriber.start() for subscriber in self.subscribers))
        for publisher in self.publishers:
            await publisher.start()
        self.running = True


#: How long a short batch waits for one more fetch to bring records when none are known to be
#: waiting: a fetch the broker can answer from records it holds comes back within a millisecond
#: or two, so a quiet gap this long means the batch is all there is for now. It is what an idle
#: hop adds to a record's latency.
LINGER_GAP_MS = 5


def fetch_batches(subscriber: Any, linger_ms: int, gap_ms: int = LINGER_GAP_MS) -> None:
    """Replace a batch subscriber's fetch (`get_msg`) with one that hands records over as soon
    as they are fetched and lets a short batch collect records still coming.

    FastStream's own waits up to the subscriber's `batch_timeout_ms` for records and, when that
    wait comes back empty, sleeps as long again: a record fetched during the sleep waited it out
    (up to 200 ms per hop at FastStream's default). This one just looks again.

    A batch costs a transaction, an offset commit and an outbox pass whatever its size, so under
    load more records per batch are worth a few milliseconds; when traffic is light there is
    nothing more to collect and waiting would only add latency. So a batch short of
    `max_records` waits, for at most `linger_ms`, only while records keep coming: records the
    broker reported past the consumer's position (each partition's `highwater`) are waited for;
    otherwise the next fetch (aiokafka sends it as soon as a batch is taken) gets `gap_ms` to
    bring some, and the first that brings none hands the batch over. The high watermark alone
    cannot tell: it is as old as the last fetch, which the batch just emptied, so it almost
    always equals the position (measured: a linger on it alone never waited, and batches under
    load were as small as with none).
    """
    timeout_ms: int = subscriber.batch_timeout_ms
    limit: int | None = subscriber.max_records
    deferred: list[Exception] = []

    async def get_msg(consumer: AIOKafkaConsumer) -> tuple[Any, ...]:
        if deferred:
            raise deferred.pop()
        loop = asyncio.get_running_loop()
        asked = loop.time()
        fetched = await consumer.getmany(timeout_ms=timeout_ms, max_records=limit)
        if not fetched:
            # Only an answer that came back before its time (no assignment yet, say) is waited
            # out, so that the consume loop never spins.
            early = timeout_ms / 1000 - (loop.time() - asked)
            if early > 0.001:
                await asyncio.sleep(early)
            return ()
        batch = list(chain.from_iterable(fetched.values()))
        deadline = loop.time() + linger_ms / 1000
        while limit is None or len(batch) < limit:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            wait = remaining if records_waiting(consumer, batch) else min(remaining, gap_ms / 1000)
            try:
                more = await consumer.getmany(
                    timeout_ms=max(1, round(wait * 1000)),
                    max_records=None if limit is None else limit - len(batch),
                )
            except Exception as error:
                # The records taken are past the consumer's position: hand them over now, and
                # the error to FastStream's loop on the next call.
                deferred.append(error)
                break
            if not more:
                break
            batch.extend(chain.from_iterable(more.values()))
        return tuple(batch)

    subscriber.get_msg = get_msg


def records_waiting(
    consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord[Any, Any]]
) -> bool:
    """Whether the last fetch of a partition these records came from reported more records
    (its high watermark, the offset after the newest record) than the consumer has taken."""
    taken: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        taken[tp] = max(record.offset + 1, taken.get(tp, 0))
    for tp, position in taken.items():
        with contextlib.suppress(AssertionError, AttributeError, KeyError):  # revoked meanwhile
            highwater = consumer.highwater(tp)
            if highwater is not None and highwater > position:
                return True
    return False
