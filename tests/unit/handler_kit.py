"""Helpers shared by the handler tests (tests/unit/test_handlers_*.py).

Every service's handlers are tested the same way: events published on FastStream's in-memory
TestKafkaBroker run through the real runtime middleware (inbox, transactional outbox, dead letters)
against a SQLite file, and the outcome is read back from the service's tables. The plumbing for
that lives here, once, so that each test file keeps only its own domain builders and fixtures.
The founding case's programme is here too; the integration tests build theirs from it as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date
from typing import Any, TypeVar

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.testing import build_message
from faststream.message import StreamMessage
from sqlmodel import SQLModel, select

from lindung_contracts import Event, ProgramPublished, cloudevent_headers, topics
from lindung_runtime import Service
from lindung_runtime.outbox import OutboxMessage
from lindung_runtime.pipeline import Batch, Delivery
from tests.sources import trusted_source

E = TypeVar("E", bound=Event)

PROGRAM = "sbd-pekerja-rentan-2025q4"

# Settings that make a consumer give up on a missing upstream fact (NotReadyYet) and on failures
# after a few quick tries, so that dead-lettering is seen within a test.
QUICK_GIVE_UP: dict[str, Any] = {
    "consumer_max_attempts": 2,
    "consumer_retry_base_seconds": 0.01,
    "consumer_not_ready_max_wait_seconds": 0.1,
}


def founding_program(**overrides: Any) -> ProgramPublished:
    """The founding case's programme (Sumba Barat Daya, covered Oct-Dec 2025), with `overrides`."""
    fields: dict[str, Any] = {
        "program_id": PROGRAM,
        "name": "Perlindungan Pekerja Rentan Kab. Sumba Barat Daya 2025",
        "sponsor": "Pemerintah Kabupaten Sumba Barat Daya (APBD)",
        "region_code": "5318",
        "quota": 5600,
        "coverage_start": date(2025, 10, 1),
        "coverage_end": date(2025, 12, 31),
    }
    fields.update(overrides)
    return ProgramPublished(**fields)


@asynccontextmanager
async def with_tables(service: Service) -> AsyncIterator[Service]:
    """`service` with its tables created; its database is disposed of when the block ends."""
    await service.database.create_tables(service.tables)
    try:
        yield service
    finally:
        await service.database.dispose()


async def _raw_body(message: StreamMessage[Any]) -> bytes:
    return message.body


class DeadLetters:
    """What the service dead-letters to `<topic>.dlq` (subscribe before the test broker starts)."""

    def __init__(self, service: Service, topic: str) -> None:
        self.records: list[tuple[bytes, dict[str, Any]]] = []

        @service.broker.subscriber(topics.dead_letter_topic(topic), decoder=_raw_body)
        async def capture(body: bytes, message: KafkaMessage) -> None:
            self.records.append((body, dict(message.headers)))


async def publish(br: KafkaBroker, event: Event, ce_id: str | None = None) -> str:
    """Publish `event` on its topic, keyed and with CloudEvents headers (from a source the
    topic's consumers trust); returns its ce_id (a new one unless `ce_id` is given, as for a
    redelivery)."""
    headers = cloudevent_headers(event.ce_type(), trusted_source(event.TOPIC), event_id=ce_id)
    key = event.key()
    await br.publish(
        event.model_dump_json().encode(),
        topic=event.TOPIC,
        key=key.encode() if key else None,
        headers=headers,
    )
    return headers["ce_id"]


async def deliver_batch(service: Service, events: Sequence[Event]) -> None:
    """Hand several events of one topic to its subscriber as ONE batch, as a real fetch would
    (each under a new ce_id)."""
    topic = events[0].TOPIC
    subscriber = next(
        s for s in service.broker.subscribers if any(t.name == topic for t in s.topics)
    )
    records = [
        await build_message(
            e.model_dump_json().encode(),
            topic=topic,
            headers=cloudevent_headers(e.ce_type(), trusted_source(topic)),
            serializer=None,
        )
        for e in events
    ]
    await subscriber.process_message(records)


async def handle_now(service: Service, events: Sequence[Event]) -> None:
    """Run events of one topic through the topic's pipeline as one batch, without a broker (to
    set up state, e.g. a published programme, before or outside a test broker)."""
    topic = events[0].TOPIC
    pipeline = service.pipeline_for(topic)
    assert pipeline is not None, f"{service.name} does not consume {topic}"
    deliveries = []
    for offset, event in enumerate(events):
        headers = cloudevent_headers(event.ce_type(), trusted_source(topic))
        key = event.key()
        deliveries.append(
            Delivery(
                topic,
                0,
                offset,
                key.encode() if key else None,
                event.model_dump_json().encode(),
                headers,
                headers["ce_id"],
            )
        )
    await pipeline(Batch(topic, deliveries))


async def rows(service: Service, model: type[SQLModel]) -> list[Any]:
    """Every row of `model` in the service's database."""
    async with service.database.read_session() as session:
        return list((await session.exec(select(model))).all())


async def outbox(service: Service, topic: str | None = None) -> list[OutboxMessage]:
    """The service's outbox rows, all of them or only those for `topic`."""
    return [
        row for row in await rows(service, OutboxMessage) if topic is None or row.topic == topic
    ]


async def emitted(service: Service, event_type: type[E]) -> list[E]:
    """The events of `event_type` the service has written to its outbox, in order."""
    return [
        event_type.model_validate_json(row.payload)
        for row in await outbox(service, event_type.TOPIC)
    ]
