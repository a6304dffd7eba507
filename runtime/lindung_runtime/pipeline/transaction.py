"""Transaction step: one unit of work per batch: inbox, handler, outbox, commit."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from opentelemetry import propagate
from opentelemetry.context import Context, attach, detach
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

Handler = Callable[..., Awaitable[Any]]  # per record: None; per batch: list[Outgoing]
Preload = Callable[[list[Any], UnitOfWork], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    handler: Handler
    event_type: type[BaseModel]
    preload: Preload | None = None  # bulk-loads what the batch's handlers will look up
    #: `handler(messages, tx) -> outgoing` once per batch (lindung_runtime.messages), rather
    #: than `handler(event, uow)` once per record
    batch: bool = False


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
    """Skip what the inbox has seen, run the handler for each other record, record them as
    seen, commit: the state change, the inbox marks and the outbox rows in ONE transaction, so
    a redelivered event is skipped and "seen" is never recorded for a failure. The inbox is
    read and written here, not in a step of its own, because it must share the transaction."""

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

    async def handle(delivery: Delivery, uow: UnitOfWork, seconds: Any, sampled: bool) -> None:
        """One record, in its producer's trace (tracing.record_context) and log context."""
        # Bound per record without a context manager (a tenth of the cost); unbound per batch.
        structlog.contextvars.bind_contextvars(event_id=delivery.event_id)
        token = attach(record_context(tracer_provider, delivery.upstream, sampled))
        try:
            uow.event_id = delivery.event_id
            uow.event_headers = delivery.headers
            began = time.perf_counter()
            await route.handler(delivery.event, uow)
            seconds.observe(time.perf_counter() - began)
        finally:
            detach(token)
        uow.mark_processed(delivery.topic, delivery.event_id)

    async def handle_batch(
        todo: list[Delivery], uow: UnitOfWork, seconds: Any, sampled: bool
    ) -> None:
        """The whole batch in one call: each message carries its record's trace context
        (tracing.record_context), which the events it causes continue."""
        messages = []
        now = uow.now()
        for delivery in todo:
            carrier: dict[str, str] = {}
            propagate.inject(
                carrier, context=record_context(tracer_provider, delivery.upstream, sampled)
            )
            messages.append(
                Message(delivery.event, delivery.event_id, carrier, event_time(delivery, now))
            )
            uow.mark_processed(delivery.topic, delivery.event_id)
        if not messages:
            return
        began = time.perf_counter()
        tx = Transaction(await uow.session.connection(), uow.clock)
        replies: list[Outgoing] = await route.handler(messages, tx) or []
        for outgoing in replies:
            uow.emit(outgoing.event, trace=outgoing.trace, event_id=outgoing.event_id)
        seconds.observe((time.perf_counter() - began) / len(messages))

    async def run(batch: Batch) -> None:
        topic = batch.topic
        handler_seconds = metrics.handler_seconds.labels(service, topic)
        async with unit_of_work() as uow:
            seen = set(
                (
                    await uow.session.exec(
                        select(InboxMessage.event_id).where(
                            InboxMessage.topic == topic,
                            col(InboxMessage.event_id).in_([d.event_id for d in batch.deliveries]),
                        )
                    )
                ).all()
            )
            todo = []
            for delivery in batch.deliveries:
                if delivery.event_id in seen:
                    log.debug("duplicate_event_skipped", topic=topic, event_id=delivery.event_id)
                    continue
                seen.add(delivery.event_id)
                todo.append(delivery)
            with batch_span(topic, todo) as span:
                sampled = span.get_span_context().trace_flags.sampled
                if route.batch:
                    await handle_batch(todo, uow, handler_seconds, sampled)
                    await uow.commit()
                    todo_count = len(todo)
                    batch.tally.processed += todo_count
                    batch.tally.duplicates += len(batch.deliveries) - todo_count
                    count(topic, todo_count, len(batch.deliveries) - todo_count)
                    return
                if route.preload is not None and todo:
                    await route.preload([d.event for d in todo], uow)
                with structlog.contextvars.bound_contextvars(topic=topic):
                    try:
                        for delivery in todo:
                            await handle(delivery, uow, handler_seconds, sampled)
                    finally:
                        structlog.contextvars.unbind_contextvars("event_id")
                await uow.commit()
        duplicates = len(batch.deliveries) - len(todo)
        batch.tally.processed += len(todo)
        batch.tally.duplicates += duplicates
        count(topic, len(todo), duplicates)

    def count(topic: str, processed: int, duplicates: int) -> None:
        metrics.consumed.labels(service, topic, "processed").inc(processed)
        if duplicates:
            metrics.consumed.labels(service, topic, "duplicate").inc(duplicates)

    return run
