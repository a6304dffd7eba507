"""Waiting that a stop can always interrupt.

On Python 3.11, `asyncio.wait_for(event.wait(), t)` swallows a cancellation that arrives in the
same loop step as the event (it returns the event's result instead of raising): a background
loop built on it keeps running after its task was cancelled, and the service's stop, which
awaits that task, never ends (CPython gh-86296, fixed in 3.12 by building `wait_for` on
`asyncio.timeout`). `asyncio.timeout` itself tells its own expiry from a cancellation from
outside, so the loops here wait with it.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; True if it was set. A cancellation
    always propagates."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
