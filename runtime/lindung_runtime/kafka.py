"""Kafka plumbing shared by services, the CLI and tests: topic creation and a small client.

Only the Kafka protocol through aiokafka: the same code runs on Tansu and Apache Kafka.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from lindung_contracts import Event, cloudevent_headers, topics
from lindung_runtime.logging import get_logger
from lindung_runtime.settings import LindungSettings

log = get_logger(__name__)

TOPIC_ALREADY_EXISTS = 36


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer; a stray CancelledError from aiokafka's own fetch tasks is not ours.

    aiokafka's `Fetcher.close()` cancels its pending fetch tasks and awaits them; one that is in
    its retry back-off after a failed fetch (e.g. a request timeout on a busy broker) re-raises
    the CancelledError into `stop()` (aio-libs/aiokafka#974). Swallowing it is right only when
    nobody is cancelling us, which `Task.cancelling()` tells apart.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("consumer_stop_interrupted_by_fetcher")


def new_producer(bootstrap: str, client_id: str, **options: Any) -> AIOKafkaProducer:
    """An aiokafka producer as the outbox relay sends with: every in-sync replica acknowledges
    (`acks="all"`), no idempotence (the embedded broker has none; duplicates are dropped by the
    consumers' inbox). Not started. `options`: security (`client_options`)."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=client_id, acks="all", **options)


def client_options(settings: LindungSettings | None = None) -> dict[str, Any]:
    """Security options for every aiokafka client (TLS, SASL/SCRAM), from the settings.

    Empty for PLAINTEXT. The same settings give FastStream's broker its `security` object
    (`broker_security`), so services, the CLI and the tools all connect the same way.
    """
    settings = settings or _settings()
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    if protocol.startswith("SASL"):
        if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
            raise ValueError("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required for SASL")
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password.get_secret_value(),
        )
    return options


def broker_security(settings: LindungSettings) -> BaseSecurity | None:
    """The same options in FastStream's terms."""
    options = client_options(settings)
    if not options:
        return None
    use_ssl = options["security_protocol"] in ("SSL", "SASL_SSL")
    context = options.get("ssl_context")
    if "sasl_mechanism" not in options:
        return BaseSecurity(ssl_context=context, use_ssl=use_ssl)
    kind = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    return kind[options["sasl_mechanism"]](  # type: ignore[no-any-return]
        options["sasl_plain_username"],
        options["sasl_plain_password"],
        ssl_context=context,
        use_ssl=use_ssl,
    )


@functools.cache
def _settings() -> LindungSettings:
    return LindungSettings()


def all_topics() -> list[str]:
    """Every contract topic and its dead-letter twin."""
    return [*topics.ALL, *(topics.dead_letter_topic(t) for t in topics.ALL)]


async def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str] | None = None,
    partitions: int = 4,
    replication_factor: int = 1,
) -> list[str]:
    """Create the topics that are missing; returns the ones created."""
    wanted = list(names or all_topics())
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(name, partitions, replication_factor) for name in missing]
            )
            for name, code, *_ in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"cannot create topic {name}: error code {code}")
        return missing
    finally:
        await admin.close()


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.value)


class EventClient:
    """Publishes events with CloudEvents headers and reads topics back (CLI, demo, tests)."""

    def __init__(
        self, bootstrap_servers: str, source: str | Callable[[str], str] = "/lindung/cli"
    ) -> None:
        """`source`: the CloudEvents source of every event, or a function of the event's topic
        (a tool publishing to several topics, each from a source its consumers trust)."""
        self.bootstrap_servers = bootstrap_servers
        self.source = source
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> EventClient:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, acks="all", linger_ms=5, **client_options()
        )
        await self._producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._producer is not None:
            await self._producer.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "use `async with EventClient(...)`"
        return self._producer

    def headers_for(self, event: Event, event_id: str | None = None) -> dict[str, str]:
        source = self.source if isinstance(self.source, str) else self.source(event.TOPIC)
        return cloudevent_headers(event.ce_type(), source, event_id=event_id)

    async def publish(self, event: Event, event_id: str | None = None) -> str:
        headers = self.headers_for(event, event_id)
        await self.publish_raw(event.TOPIC, event.model_dump_json().encode(), event.key(), headers)
        return headers["ce_id"]

    async def publish_many(self, events: Sequence[Event]) -> list[str]:
        """Send without waiting on each confirmation, then wait for all of them."""
        ids, pending = [], []
        for event in events:
            headers = self.headers_for(event)
            ids.append(headers["ce_id"])
            key = event.key()
            pending.append(
                await self.producer.send(
                    event.TOPIC,
                    event.model_dump_json().encode(),
                    key=key.encode() if key else None,
                    headers=[(k, v.encode()) for k, v in headers.items()],
                )
            )
        await asyncio.gather(*pending)
        return ids

    async def publish_raw(
        self,
        topic: str,
        value: bytes,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self.producer.send_and_wait(
            topic,
            value,
            key=key.encode() if key else None,
            headers=[(k, v.encode()) for k, v in (headers or {}).items()],
        )

    async def read_all(self, topic_names: Sequence[str]) -> AsyncIterator[Record]:
        """Every record now on the topics, from the beginning to the current end (no group)."""
        async with TopicReader(self.bootstrap_servers, topic_names) as reader:
            for record in await reader.read_new():
                yield record

    async def lag(self, group_id: str, topic_names: Sequence[str]) -> int:
        """Messages on the topics that the consumer group has not yet committed past (one-off:
        for repeated polls keep a `GroupOffsets` open instead)."""
        async with GroupOffsets(self.bootstrap_servers) as offsets:
            return await offsets.lag(group_id, topic_names)


class GroupOffsets:
    """Where consumer groups stand on their topics, through one admin client and one consumer
    kept open: a poll is then two requests, not four client start-ups."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> GroupOffsets:
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers, **client_options()
        )
        await self._admin.start()
        try:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers, group_id=None, **client_options()
            )
            await self._consumer.start()
        except BaseException:
            await self._admin.close()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._consumer is not None:
            await stop_consumer(self._consumer)
        if self._admin is not None:
            await self._admin.close()

    async def committed(
        self, group_id: str, topic_names: Sequence[str]
    ) -> dict[TopicPartition, int]:
        """The group's committed offset per partition of the topics (0 where it has none)."""
        assert self._admin is not None and self._consumer is not None, "use `async with`"
        partitions = [
            TopicPartition(topic, p)
            for topic in topic_names
            for p in await _partitions_for(self._consumer, topic)
        ]
        metas = await self._admin.list_consumer_group_offsets(group_id, partitions=partitions)
        return {
            tp: meta.offset if (meta := metas.get(tp)) is not None and meta.offset >= 0 else 0
            for tp in partitions
        }

    async def lag(self, group_id: str, topic_names: Sequence[str]) -> int:
        """Messages on the topics that the group has not yet committed past."""
        assert self._consumer is not None, "use `async with`"
        committed = await self.committed(group_id, topic_names)
        end = await self._consumer.end_offsets(list(committed))
        return sum(max(0, end[tp] - done) for tp, done in committed.items())


class TopicReader:
    """Reads topics from the beginning without a consumer group; each `read_new` returns what
    arrived since the previous call, up to the end offsets at the time of the call."""

    def __init__(self, bootstrap_servers: str, topic_names: Sequence[str]) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic_names = list(topic_names)
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []

    async def __aenter__(self) -> TopicReader:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            group_id=None,
            **client_options(),
        )
        await consumer.start()
        self._consumer = consumer
        await self._assign_new_partitions()
        return self

    async def _assign_new_partitions(self) -> None:
        """Topics (or partitions) may appear after the reader started: read them from the start."""
        consumer = self._consumer
        assert consumer is not None
        known = set(self._partitions)
        found = [
            TopicPartition(topic, p)
            for topic in self.topic_names
            for p in sorted(await _partitions_for(consumer, topic))
        ]
        new = [tp for tp in found if tp not in known]
        if new:
            self._partitions = [*self._partitions, *new]
            consumer.assign(self._partitions)
            await consumer.seek_to_beginning(*new)

    async def __aexit__(self, *_: object) -> None:
        if self._consumer is not None:
            await stop_consumer(self._consumer)

    async def read_new(self) -> list[Record]:
        consumer = self._consumer
        assert consumer is not None, "use `async with TopicReader(...)`"
        if len(self._partitions) == 0 or len({tp.topic for tp in self._partitions}) < len(
            self.topic_names
        ):
            await self._assign_new_partitions()
        if not self._partitions:
            return []
        end = await consumer.end_offsets(self._partitions)
        remaining = {tp for tp in self._partitions if await consumer.position(tp) < end[tp]}
        records: list[Record] = []
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10000)
            for messages in batch.values():
                # Keep records past `end` too: the position has moved beyond them.
                records.extend(
                    Record(
                        m.topic,
                        m.partition,
                        m.offset,
                        m.key.decode(errors="replace") if m.key else None,
                        m.value or b"",
                        {k: v.decode(errors="replace") for k, v in m.headers},
                    )
                    for m in messages
                )
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return records


async def _partitions_for(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer.topics()  # refreshes cluster metadata
    return consumer.partitions_for_topic(topic) or set()
