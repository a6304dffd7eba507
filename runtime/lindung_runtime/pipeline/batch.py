"""What flows through the pipeline: a batch of deliveries from one topic, and the step type."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext
from pydantic import BaseModel

from lindung_runtime.pipeline.pause import pause_within_group


@dataclass
class Delivery:
    """One consumed record on its way through the pipeline."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    event_id: str
    event: BaseModel | None = None  # set by the decode step
    upstream: SpanContext = INVALID_SPAN_CONTEXT  # the producer's span context, once traced


@dataclass
class Tally:
    """What happened to a batch's records, for its one log line and the metrics."""

    processed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0


@dataclass
class Batch:
    topic: str
    deliveries: list[Delivery]
    consumer: Any = None  # the aiokafka consumer it came from, if a real one (for waits)
    tally: Tally = field(default_factory=Tally)

    def of(self, deliveries: Iterable[Delivery]) -> Batch:
        """Part of this batch (same consumer, same tally)."""
        return Batch(self.topic, list(deliveries), self.consumer, self.tally)

    async def sleep(self, seconds: float) -> None:
        """Wait without leaving the consumer group (pause.py)."""
        await pause_within_group(self.consumer, seconds)


Handle = Callable[[Batch], Awaitable[None]]
Step = Callable[[Handle], Handle]


def event_id_of(topic: str, headers: dict[str, str], body: bytes) -> str:
    """The CloudEvents id; without one, a digest of the body (identical bodies are one event)."""
    ce_id = headers.get("ce_id")
    if ce_id:
        return ce_id[:200]
    return "sha256:" + hashlib.sha256(topic.encode() + b"\0" + body).hexdigest()


def deliveries_of(raw_message: Any) -> list[Delivery]:
    """aiokafka's records (one, or a fetched batch) as deliveries with text headers."""
    records = raw_message if isinstance(raw_message, tuple | list) else (raw_message,)
    deliveries = []
    for record in records:
        headers = {
            k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v))
            for k, v in record.headers or ()
        }
        value = record.value or b""
        deliveries.append(
            Delivery(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                value=value,
                headers=headers,
                event_id=event_id_of(record.topic, headers, value),
            )
        )
    return deliveries
