"""Helpers for integration tests: services run in-process against a real broker (Tansu, from the
`kafka_bootstrap` fixture) and their own SQLite files; outputs are read back off the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import SQLModel, col, select

from lindung_runtime import Service
from lindung_runtime.kafka import EventClient, Record, TopicReader
from lindung_runtime.outbox import OutboxMessage

WAIT_SECONDS = 30.0

# Settings that keep a service quick to react in tests (the outbox relay is also woken by handlers).
FAST = {"outbox_poll_seconds": 0.1, "consumer_retry_base_seconds": 0.05}


def on_broker(data_dir: Path, bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """Settings for a service on the test broker with its data in `data_dir`, quick to react
    (FAST), plus the service's own `overrides`."""
    return {
        "LINDUNG_DATA_DIR": str(data_dir),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        **FAST,
        **overrides,
    }


@asynccontextmanager
async def running(*services: Service) -> AsyncIterator[None]:
    """Run each service's FastStream app (startup hooks, broker, background tasks) and stop them
    all however the block ends. Several services start concurrently, as separate processes would."""
    started: list[Service] = []

    async def start(service: Service) -> None:
        await service.app.start()
        started.append(service)

    try:
        results = await asyncio.gather(*(start(s) for s in services), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        yield
    finally:
        for service in reversed(started):
            await service.app.stop()


def group_of(service: Service, topic: str) -> str:
    """The consumer group the service reads `topic` with (one per service, or one per topic)."""
    group_for = getattr(service, "group_for", None)
    return group_for(topic) if callable(group_for) else service.group_id


async def eventually(
    probe: Callable[[], Any], *, timeout: float = WAIT_SECONDS, what: str = "condition"
) -> Any:
    """Poll `probe` (sync or async) until it returns something truthy, or fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        last = probe()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.05)


class Wire:
    """Everything that appeared on some topics since the reader was opened (from their start)."""

    def __init__(self, reader: TopicReader) -> None:
        self.reader = reader
        self.records: list[Record] = []

    async def poll(self) -> list[Record]:
        self.records.extend(await self.reader.read_new())
        return self.records

    def on(self, topic: str) -> list[Record]:
        return [r for r in self.records if r.topic == topic]

    async def wait_for(
        self, topic: str, count: int, *, timeout: float = WAIT_SECONDS
    ) -> list[Record]:
        async def enough() -> bool:
            await self.poll()
            return len(self.on(topic)) >= count

        await eventually(enough, timeout=timeout, what=f"{count} record(s) on {topic}")
        return self.on(topic)


@asynccontextmanager
async def wire(bootstrap: str, topic_names: Sequence[str]) -> AsyncIterator[Wire]:
    async with TopicReader(bootstrap, topic_names) as reader:
        yield Wire(reader)


async def lag(bootstrap: str, service: Service, topic: str) -> int:
    async with EventClient(bootstrap) as client:
        return await client.lag(group_of(service, topic), [topic])


async def wait_until_consumed(bootstrap: str, service: Service, topic: str) -> None:
    """The service's group has committed past everything now on `topic`."""

    async def caught_up() -> bool:
        return await lag(bootstrap, service, topic) == 0

    await eventually(caught_up, what=f"{service.name} to commit its offsets on {topic}")


async def count_rows(service: Service, model: type[SQLModel], *where: Any) -> int:
    async with service.database.read_session() as session:
        statement = select(func.count()).select_from(model)
        if where:
            statement = statement.where(*where)
        return int((await session.exec(statement)).one())


async def wait_for_rows(service: Service, model: type[SQLModel], count: int, *, what: str) -> None:
    """Wait until the service's table for `model` holds exactly `count` rows."""

    async def there() -> bool:
        return await count_rows(service, model) == count

    await eventually(there, what=what)


async def outbox_drained(service: Service) -> bool:
    return await count_rows(service, OutboxMessage, col(OutboxMessage.published_at).is_(None)) == 0
