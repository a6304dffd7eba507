"""Waiting inside the consumer group: every wait of the pipeline goes through here."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import ConsumerStoppedError, KafkaError

from lindung_runtime.logging import get_logger

log = get_logger(__name__)


async def pause_within_group(consumer: Any, seconds: float) -> None:
    """Wait without being thrown out of the consumer group.

    aiokafka leaves the group once no `getmany` has been running for max_poll_interval_ms
    (300 s by default: as long as the wait for a missing programme, and a stalled database waits
    without end); the group then rebalances and the batch is consumed again. So the wait happens
    inside `getmany`, with this consumer's partitions paused so that it returns nothing:
    heartbeats go on, the poll interval is met, the batch stays ours. Records it returns anyway
    (a partition assigned anew in a rebalance is not paused) are put back.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    if not isinstance(consumer, AIOKafkaConsumer):  # FastStream's test broker: nothing to keep
        await asyncio.sleep(seconds)
        return
    try:
        partitions = set(consumer.assignment())
        paused = partitions - set(consumer.paused())
        consumer.pause(*paused)
        try:
            while partitions and (remaining := deadline - loop.time()) > 0:
                fetched = await consumer.getmany(
                    *partitions, timeout_ms=max(1, int(remaining * 1000))
                )
                for partition, records in fetched.items():
                    if records:
                        consumer.seek(partition, records[0].offset)
        finally:
            consumer.resume(*(paused & set(consumer.assignment())))
    except (KafkaError, ConsumerStoppedError) as error:  # group trouble, or shutting down
        log.debug("wait_without_poll", error=type(error).__name__)
    if (remaining := deadline - loop.time()) > 0:
        await asyncio.sleep(remaining)
