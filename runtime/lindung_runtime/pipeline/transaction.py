"""Transaction step: one unit of work per batch: inbox, handler, outbox, commit."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from pydantic import BaseModel
from sqlmodel import col, select

from lindung_runtime.logging import get_logger
from lindung_runtime.messages import Message, Outgoing, Transaction
from lindung_runtime.outbox import InboxMessage, UnitOfWork
from lindung_runtime.pipeline.batch import Batch, Delivery, Handle
from lindung_runtime.tracing import record_context, upstream_context

log = get_logger(__name__)

#: `handler(batch: list[Message[E]], tx: Transaction) -> list[Outgoing]` (messages.py)
Handler = Callable[[list[Message[Any]], Transaction], Awaitable[list[Outgoing]]]


@dataclass(frozen=True)
class Route:
    handler: Handler
    event_type: type[BaseModel]
    #: Whether the inbox records what was handled. A handler whose writes are keyed by the
    #: event's own id (a timeline entry) is its own inbox: a redelivery changes nothing, and
    #: the batch is spared the inbox's query and insert.
    inbox: bool = True


def event_time(delivery: Delivery, default: datetime) -> datetime:
    """When the producer says the event happened (`ce_time`), or `default`."""
    try:
        return datetime.fromisoformat(delivery.headers["ce_time"])
    except (KeyError, ValueError):
        return default


def transaction(
    route: Route,
    *,
    unit_of_work: Callable[[], Any],
    tracer: Tracer,
    tracer_provider: TracerProvider,
    metrics: Any,
    service: str,
    group: str,
) -> Handle:
    """Skip what the inbox has seen, hand the other records to the handler as one batch, record
    them as seen, commit: the state change, the inbox marks and the outbox rows in ONE
    transaction, so a redelivered event is skipped and "seen" is never recorded for a failure.
    The inbox is read and written here, not in a step of its own, because it must share the
    transaction."""

    def batch_span(topic: str, todo: list[Delivery]) -> AbstractContextManager[Span]:
        """One CONSUMER span per batch (and attempt), linked to each record's producer
        context, as the OpenTelemetry messaging conventions say for batch processing. A root
        span: with no exporter it is recorded only when a linked trace is sampled."""
        for delivery in todo:
            delivery.upstream = upstream_context(delivery.headers)
        return tracer.start_as_current_span(
            f"process {topic}",
            context=Context(),
            kind=SpanKind.CONSUMER,
            links=[Link(d.upstream) for d in todo if d.upstream.is_valid],
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": group,
                "messaging.batch.message_count": len(todo),
            },
        )

    def messages_of(todo: list[Delivery], now: datetime, sampled: bool) -> list[Message[Any]]:
        """Each message carries its record's trace context (tracing.record_context), which the
        events it causes continue: the worker's trace, at the cost of an id, not of a span."""
        messages = []
        for delivery in todo:
            carrier: dict[str, str] = {}
            propagate.inject(
                carrier, context=record_context(tracer_provider, delivery.upstream, sampled)
            )
            messages.append(
                Message(delivery.event, delivery.event_id, carrier, event_time(delivery, now))
            )
        return messages

    async def unseen(batch: Batch, uow: UnitOfWork) -> list[Delivery]:
        """The batch's records, each event once, less what the inbox has seen."""
        seen: set[str] = set()
        if route.inbox:
            seen.update(
                (
                    await uow.session.exec(
                        select(InboxMessage.event_id).where(
                            InboxMessage.topic == batch.topic,
                            col(InboxMessage.event_id).in_([d.event_id for d in batch.deliveries]),
                        )
                    )
                ).all()
            )
        todo = []
        for delivery in batch.deliveries:
            if delivery.event_id in seen:
                log.debug("duplicate_event_skipped", topic=batch.topic, event_id=delivery.event_id)
                continue
            seen.add(delivery.event_id)
            todo.append(delivery)
        return todo

    async def run(batch: Batch) -> None:
        topic = batch.topic
        async with unit_of_work() as uow:
            todo = await unseen(batch, uow)
            with batch_span(topic, todo) as span:
                if todo:
                    sampled = span.get_span_context().trace_flags.sampled
                    messages = messages_of(todo, uow.now(), sampled)
                    began = time.perf_counter()
                    uow.emit_all(await route.handler(messages, await uow.transaction()))
                    metrics.handler_seconds.labels(service, topic).observe(
                        (time.perf_counter() - began) / len(todo)
                    )
                    if route.inbox:
                        for delivery in todo:
                            uow.mark_processed(topic, delivery.event_id)
                await uow.commit()
        duplicates = len(batch.deliveries) - len(todo)
        batch.tally.processed += len(todo)
        batch.tally.duplicates += duplicates
        metrics.consumed.labels(service, topic, "processed").inc(len(todo))
        if duplicates:
            metrics.consumed.labels(service, topic, "duplicate").inc(duplicates)

    return run
