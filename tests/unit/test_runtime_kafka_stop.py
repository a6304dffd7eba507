"""`stop_consumer` absorbs aiokafka's stray fetch-task cancellation, never a real one."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from lindung_runtime.kafka import stop_consumer


class FetcherCancelledOnStop:
    """Stands in for an AIOKafkaConsumer whose fetch task re-raises CancelledError on close."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.stopped = False

    async def stop(self) -> None:
        await asyncio.sleep(self.delay)
        self.stopped = True
        raise asyncio.CancelledError


async def test_a_cancelled_fetch_task_does_not_cancel_the_caller() -> None:
    consumer = FetcherCancelledOnStop()
    await stop_consumer(cast(Any, consumer))
    assert consumer.stopped
    # The caller goes on running: it was never the one cancelled.
    assert await asyncio.sleep(0, result="still running") == "still running"


async def test_a_real_cancellation_of_the_caller_still_propagates() -> None:
    consumer = FetcherCancelledOnStop(delay=10.0)
    task = asyncio.create_task(stop_consumer(cast(Any, consumer)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert not consumer.stopped
