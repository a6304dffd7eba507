"""A background loop stops when cancelled, even when its wake-up arrives in the same loop step
(on Python 3.11, `asyncio.wait_for` swallowed that cancellation and the service's stop hung)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from lindung_runtime import FixedClock
from lindung_runtime.aio import wait_event
from lindung_runtime.outbox import OutboxRelay


async def test_wait_event_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True


async def test_a_cancellation_in_the_same_step_as_the_event_propagates() -> None:
    event = asyncio.Event()
    passes = 0

    async def wake_loop() -> None:
        nonlocal passes
        while True:
            passes += 1
            event.clear()
            await wait_event(event, 10)

    task = asyncio.create_task(wake_loop())
    await asyncio.sleep(0.01)
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=2)
    assert task.cancelled()
    assert passes == 1


async def test_the_outbox_relay_stops_when_woken_as_it_is_stopped() -> None:
    relay = OutboxRelay(
        cast(Any, None), broker=None, clock=FixedClock(datetime(2025, 10, 1, tzinfo=UTC))
    )
    passes = 0

    async def relay_once() -> int:
        nonlocal passes
        passes += 1
        return 0

    relay.relay_once = relay_once  # type: ignore[method-assign]
    relay.start()
    await asyncio.sleep(0.01)
    passes_before_stop = passes
    async with asyncio.timeout(2):
        relay.wake()  # a handler committed rows in the same step as the service stops
        await relay.stop()
    assert relay._task is None
    # stop() drained once more after the loop ended (relay_all), and the loop did not go on.
    assert passes == passes_before_stop + 1
