"""Operations on a running system: inspect and re-drive dead letters, re-drive the outbox.

Both are safe to repeat: consumers deduplicate by CloudEvents id (the inbox), and a dead letter
keeps the id of the event it holds, so a replayed event that was processed meanwhile is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy import update
from sqlmodel import col

from lindung_contracts.topics import dead_letter_topic
from lindung_runtime.db import Database
from lindung_runtime.kafka import Record, TopicReader, client_options, stop_consumer
from lindung_runtime.outbox import OutboxMessage

ERROR_HEADER_PREFIX = "x-lindung-"
REPLAYED_FROM_HEADER = "x-lindung-replayed-from"


@dataclass(frozen=True)
class DeadLetter:
    record: Record

    @property
    def original_topic(self) -> str:
        return self.record.headers.get(
            "x-lindung-original-topic"
        ) or self.record.topic.removesuffix(".dlq")

    @property
    def error_code(self) -> str:
        return self.record.headers.get("x-lindung-error-code", "")

    @property
    def error(self) -> str:
        return self.record.headers.get("x-lindung-error", "")

    @property
    def service(self) -> str:
        return self.record.headers.get("x-lindung-service", "")

    @property
    def failed_at(self) -> str:
        return self.record.headers.get("x-lindung-failed-at", "")

    @property
    def event_id(self) -> str:
        return self.record.headers.get("ce_id", "")

    def original_headers(self) -> dict[str, str]:
        """The headers the event had before it failed (CloudEvents, trace context), plus where
        it is replayed from."""
        headers = {
            k: v for k, v in self.record.headers.items() if not k.startswith(ERROR_HEADER_PREFIX)
        }
        headers[REPLAYED_FROM_HEADER] = (
            f"{self.record.topic}/{self.record.partition}/{self.record.offset}"
        )
        return headers


def dlq_name(topic: str) -> str:
    return topic if topic.endswith(".dlq") else dead_letter_topic(topic)


async def list_dead_letters(bootstrap_servers: str, topic: str) -> list[DeadLetter]:
    """Everything on the topic's dead-letter twin, oldest first per partition."""
    async with TopicReader(bootstrap_servers, [dlq_name(topic)]) as reader:
        return [DeadLetter(r) for r in await reader.read_new()]


def replay_group(topic: str) -> str:
    return f"lindung-dlq-replay.{dlq_name(topic)}"


async def replay_dead_letters(
    bootstrap_servers: str,
    topic: str,
    *,
    error_codes: Sequence[str] = (),
    join_timeout: float = 60.0,
) -> tuple[int, int]:
    """Publish each dead letter not yet replayed back onto its original topic, with its original
    key, value and headers. Progress is the offset committed by the consumer group
    `lindung-dlq-replay.<topic>.dlq`, so running it twice does not replay twice.

    `error_codes` limits the replay to those codes (the others are skipped and also marked done).
    Returns (replayed, skipped).
    """
    name = dlq_name(topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=replay_group(topic),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **client_options(),
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", **client_options())
    await consumer.start()
    await producer.start()
    replayed = skipped = 0
    try:
        consumer.subscribe([name])
        deadline = asyncio.get_running_loop().time() + join_timeout
        while not consumer.assignment():  # joining the group
            await consumer.getmany(timeout_ms=200)
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"could not join {replay_group(topic)}")
        partitions = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        end = await consumer.end_offsets(partitions)
        for tp in partitions:
            committed = await consumer.committed(tp)
            if committed is None or committed < 0:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        remaining = {tp for tp in partitions if await consumer.position(tp) < end[tp]}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=1000)
            sends = []
            last: dict[TopicPartition, int] = {}
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset >= end[tp]:
                        break
                    letter = DeadLetter(
                        Record(
                            message.topic,
                            message.partition,
                            message.offset,
                            message.key.decode(errors="replace") if message.key else None,
                            message.value or b"",
                            {k: v.decode(errors="replace") for k, v in message.headers},
                        )
                    )
                    last[tp] = message.offset
                    if error_codes and letter.error_code not in error_codes:
                        skipped += 1
                        continue
                    sends.append(
                        await producer.send(
                            letter.original_topic,
                            message.value,
                            key=message.key,
                            headers=[(k, v.encode()) for k, v in letter.original_headers().items()],
                        )
                    )
                    replayed += 1
            await asyncio.gather(*sends)  # acknowledged before the progress is committed
            if last:
                await consumer.commit({tp: OffsetAndMetadata(o + 1, "") for tp, o in last.items()})
            for tp in list(remaining):
                if last.get(tp, -1) + 1 >= end[tp] or await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await producer.stop()
        await stop_consumer(consumer)
    return replayed, skipped


async def replay_outbox(database: Database, since: datetime) -> int:
    """Mark every outbox row written since `since` as unsent: the service's relay publishes
    them again (e.g. after the broker lost data). Rows purged by retention are gone."""
    async with database.session() as session:
        result = await session.exec(
            update(OutboxMessage)  # type: ignore[call-overload]
            .where(col(OutboxMessage.created_at) >= since)
            .values(published_at=None, lease_until=None)
        )
        await session.commit()
    return int(result.rowcount or 0)
