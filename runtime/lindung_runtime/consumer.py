"""Reliable consumption, wrapped once around every handler (Watermill-style middleware).

Subscribers fetch batches; for each batch, from the outside in:
  dead letter  <-  retry with backoff  <-  one transaction: inbox + handlers + outbox
- every record is decoded and validated first; bad input (invalid JSON, wrong shape, wrong event
  type) goes to `<topic>.dlq` with the original bytes and headers plus the error;
- then its CloudEvents `ce_source` must be one the topic's consumers believe (the contract's
  allow-list plus TRUSTED_SOURCES), else it is dead-lettered as `untrusted_source`. Checked after
  decoding: a malformed record is dead-lettered either way, and its dead letter then says what
  is wrong with the bytes (what the producer must fix), whoever sent them;
- the rest run through their handler in ONE database transaction that also records each event id
  in the inbox, so a redelivered event is skipped and "seen" is never recorded for a failure;
- a handler failure rolls the batch back; it is retried with backoff, and if it keeps failing the
  batch is replayed one record per transaction, so only the poison record is dead-lettered;
- a record whose upstream fact has not arrived yet (NotReadyYet: its programme unknown) waits
  with backoff for up to CONSUMER_NOT_READY_MAX_WAIT_SECONDS before it is dead-lettered;
- infrastructure failures (database locked or away) are retried until they pass, never
  dead-lettered: the offsets stay uncommitted meanwhile;
- every such wait pauses the partitions and waits inside `getmany`, so a wait longer than
  max_poll_interval_ms does not get the consumer thrown out of its group (see `_sleep`);
- dead letters and logs carry an error code and a scrubbed message (no NIK, name or SQL values);
- only if even the dead-letter publish fails does the error escape, and the subscriber's
  NACK_ON_ERROR policy seeks back so the batch is consumed again (at-least-once).
Each batch is processed inside one span linked to its records' producers; each record inside
its producer's trace (tracing.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import ConsumerStoppedError, KafkaError, MessageSizeTooLargeError
from faststream import BaseMiddleware
from opentelemetry.context import Context, attach, detach
from opentelemetry.trace import INVALID_SPAN_CONTEXT, Link, Span, SpanContext, SpanKind
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sa_exc
from sqlmodel import col, select
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    wait_exponential,
)

from lindung_contracts import event_for_topic
from lindung_contracts.access import source_allowed
from lindung_contracts.topics import dead_letter_topic
from lindung_runtime.errors import NotReadyYet, PermanentError, UntrustedSource, waiting_over
from lindung_runtime.logging import get_logger
from lindung_runtime.outbox import InboxMessage, UnitOfWork
from lindung_runtime.privacy import scrub_text
from lindung_runtime.tracing import record_context, upstream_context

if TYPE_CHECKING:
    from lindung_runtime.service import Service

log = get_logger(__name__)

Handler = Callable[..., Awaitable[None]]

ERROR_HEADER = "x-lindung-error"
ERROR_CODE_HEADER = "x-lindung-error-code"
SERVICE_HEADER = "x-lindung-service"
ORIGINAL_TOPIC_HEADER = "x-lindung-original-topic"
TRUNCATED_HEADER = "x-lindung-truncated-from-bytes"
TRUNCATED_BODY_BYTES = 64 * 1024
INFRA_ERRORS = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    ConnectionError,
    TimeoutError,
    OSError,
)


class UnexpectedEventType(PermanentError):
    code = "unexpected_event_type"


Preload = Callable[[list[Any], UnitOfWork], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    handler: Handler
    event_type: type[BaseModel]
    preload: Preload | None = None  # bulk-loads what the batch's handlers will look up


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
    event: BaseModel | None = None
    upstream: SpanContext = INVALID_SPAN_CONTEXT  # the producer's span context, once traced


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning(
        "batch_failed_will_retry",
        attempt=state.attempt_number,
        retry_in_s=round(state.upcoming_sleep, 3),
        error_code=error_code(error) if error else None,
        error=describe(error) if error else None,
    )


def error_code(error: BaseException) -> str:
    if isinstance(error, json.JSONDecodeError | UnicodeDecodeError):
        return "invalid_json"
    if isinstance(error, ValidationError):
        return "schema_violation"
    if isinstance(error, PermanentError | NotReadyYet):
        return error.code
    return "handler_error"


def event_id_of(topic: str, headers: dict[str, str], body: bytes) -> str:
    """The CloudEvents id; without one, a digest of the body (identical bodies are one event)."""
    ce_id = headers.get("ce_id")
    if ce_id:
        return ce_id[:200]
    return "sha256:" + hashlib.sha256(topic.encode() + b"\0" + body).hexdigest()


def deliveries_of(raw_message: Any) -> list[Delivery]:
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


def decode(delivery: Delivery, event_type: type[BaseModel]) -> BaseModel:
    ce_type = delivery.headers.get("ce_type")
    try:
        expected = event_for_topic(delivery.topic).ce_type()
    except KeyError:
        expected = None
    if ce_type and expected and ce_type != expected:
        raise UnexpectedEventType(f"ce_type {ce_type!r} on {delivery.topic}; expected {expected!r}")
    try:
        # pydantic parses and validates the bytes in one pass, half the cost of json.loads first
        return event_type.model_validate_json(delivery.value)
    except ValidationError as error:
        if error.errors(include_url=False)[0]["type"] != "json_invalid":
            raise
    # Not JSON to pydantic: the standard library says why (invalid_json, with its position), or,
    # for what only it accepts (NaN, Infinity), validates as before.
    return event_type.model_validate(json.loads(delivery.value))


def check_source(delivery: Delivery, trusted: tuple[str, ...]) -> None:
    """Believe an event only from a source the topic's allow-list names (or continues)."""
    source = delivery.headers.get("ce_source")
    if not source_allowed(source, trusted):
        shown = repr(source[:200]) if source is not None else "none"
        raise UntrustedSource(f"ce_source {shown} is not trusted on {delivery.topic}")


class ReliableConsumer:
    """Middleware factory bound to one service (FastStream instantiates it per batch and per
    publish, so the scope class is built once, not on every call)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def __call__(self, msg: Any, /, *, context: Any) -> Any:
        return _ReliableScope(msg, context=context, service=self.service)


class _ReliableScope(BaseMiddleware):  # type: ignore[type-arg]
    def __init__(self, msg: Any, /, *, context: Any, service: Service) -> None:
        super().__init__(msg, context=context)
        self.service = service

    async def consume_scope(self, call_next: Any, message: Any) -> Any:
        batch = deliveries_of(message.raw_message)
        route = self.service.routes.get(batch[0].topic) if batch else None
        if route is None:
            return await call_next(message)
        consumer = getattr(message, "consumer", None)
        await BatchProcessor(self.service, route, consumer).process(batch)
        return None


class BatchProcessor:
    def __init__(self, service: Service, route: Route, consumer: Any = None) -> None:
        self.service = service
        self.route = route
        self.settings = service.settings
        # The Kafka consumer the batch came from (waits keep it in its group), if a real one.
        self.consumer = consumer if isinstance(consumer, AIOKafkaConsumer) else None

    async def process(self, batch: list[Delivery]) -> None:
        """One log line per batch (plus one per rejection or failure, where they happen)."""
        if not batch:
            return
        started = time.perf_counter()
        duplicates, dead = await self._process(batch)
        seconds = time.perf_counter() - started
        self.service.metrics.batch_seconds.labels(self.service.name, batch[0].topic).observe(
            seconds
        )
        log.info(
            "batch_processed",
            topic=batch[0].topic,
            records=len(batch),
            duplicates=duplicates,
            dead_lettered=dead,
            ms=round(seconds * 1000, 1),
        )

    async def _process(self, batch: list[Delivery]) -> tuple[int, int]:
        """Returns (duplicates skipped, records dead-lettered)."""
        dead: list[tuple[Delivery, BaseException, int]] = []
        duplicates = 0
        good: list[Delivery] = []
        trusted = self.settings.trusted_sources_for(batch[0].topic) if batch else ()
        for delivery in batch:
            try:
                delivery.event = decode(delivery, self.route.event_type)
                check_source(delivery, trusted)
                good.append(delivery)
            except (ValueError, PermanentError) as error:  # JSON, Unicode, pydantic, type
                dead.append((delivery, error, 1))
        if good:
            try:
                duplicates = await self._retrying()(self._apply_retrying_infra, good)
            except NotReadyYet:
                # The upstream fact never came within the wait: dead-letter what still lacks it.
                with waiting_over():  # handlers that can answer without the fact do so now
                    dead.extend(await self._isolate(good))
            except Exception:
                dead.extend(await self._isolate(good))
        for delivery, failure, attempts in dead:
            await self._dead_letter(delivery, failure, attempts)
        if good:
            self.service.outbox.wake()
        return duplicates, len(dead)

    async def _isolate(self, batch: list[Delivery]) -> list[tuple[Delivery, BaseException, int]]:
        """Replay one record per transaction: the good ones pass, the poison ones are returned."""
        dead: list[tuple[Delivery, BaseException, int]] = []
        for delivery in batch:
            try:
                await self._apply_retrying_infra([delivery])
            except Exception as error:
                dead.append((delivery, error, self.settings.consumer_max_attempts + 1))
        return dead

    async def _apply_retrying_infra(self, batch: list[Delivery]) -> int:
        """Infrastructure failures (database locked or away, connection lost) are waited out,
        however long they last: the offsets stay uncommitted meanwhile."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(INFRA_ERRORS),
            wait=wait_exponential(multiplier=self.settings.consumer_retry_base_seconds, max=30.0),
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        return await retrying(self._apply, batch)

    def _retrying(self) -> AsyncRetrying:
        """A batch whose handler failed is retried with backoff: a missing upstream fact
        (NotReadyYet) for up to CONSUMER_NOT_READY_MAX_WAIT_SECONDS, any other failure that is
        not permanent for CONSUMER_MAX_ATTEMPTS tries. Then the caller isolates the poison."""
        base = self.settings.consumer_retry_base_seconds
        waiting = wait_exponential(multiplier=base, max=5.0)
        failing = wait_exponential(multiplier=base, max=10.0)
        max_wait = self.settings.consumer_not_ready_max_wait_seconds
        max_attempts = self.settings.consumer_max_attempts

        def not_ready(state: RetryCallState) -> bool:
            return state.outcome is not None and isinstance(state.outcome.exception(), NotReadyYet)

        def stop(state: RetryCallState) -> bool:
            if not_ready(state):
                return (state.seconds_since_start or 0.0) >= max_wait
            return state.attempt_number >= max_attempts

        return AsyncRetrying(
            retry=retry_if_exception(
                lambda e: isinstance(e, Exception) and not isinstance(e, PermanentError)
            ),
            stop=stop,
            wait=lambda state: (waiting if not_ready(state) else failing)(state),
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,
        )

    async def _apply(self, batch: list[Delivery]) -> int:
        """One transaction: skip what the inbox has seen, run the handler, record as seen.
        Returns how many records the inbox had seen."""
        service, topic = self.service, batch[0].topic
        handler_seconds = service.metrics.handler_seconds.labels(service.name, topic)
        async with service.unit_of_work() as uow:
            seen = set(
                (
                    await uow.session.exec(
                        select(InboxMessage.event_id).where(
                            InboxMessage.topic == topic,
                            col(InboxMessage.event_id).in_([d.event_id for d in batch]),
                        )
                    )
                ).all()
            )
            todo = []
            for delivery in batch:
                if delivery.event_id in seen:
                    log.debug("duplicate_event_skipped", topic=topic, event_id=delivery.event_id)
                    continue
                seen.add(delivery.event_id)
                todo.append(delivery)
            with self._batch_span(topic, todo) as batch_span:
                sampled = batch_span.get_span_context().trace_flags.sampled
                if self.route.preload is not None and todo:
                    await self.route.preload([d.event for d in todo], uow)
                with structlog.contextvars.bound_contextvars(topic=topic):
                    try:
                        for delivery in todo:
                            await self._handle(delivery, uow, handler_seconds, sampled)
                    finally:
                        structlog.contextvars.unbind_contextvars("event_id")
                await uow.commit()
        consumed = service.metrics.consumed
        consumed.labels(service.name, topic, "processed").inc(len(todo))
        if len(batch) > len(todo):
            consumed.labels(service.name, topic, "duplicate").inc(len(batch) - len(todo))
        return len(batch) - len(todo)

    def _batch_span(self, topic: str, todo: list[Delivery]) -> AbstractContextManager[Span]:
        """One CONSUMER span per batch (and attempt), linked to each record's producer context,
        as the OpenTelemetry messaging conventions say for batch processing. A root span: with
        no exporter it is recorded only when a linked trace is sampled (tracing.py)."""
        for delivery in todo:
            delivery.upstream = upstream_context(delivery.headers)
        service = self.service
        return service.tracer.start_as_current_span(
            f"process {topic}",
            context=Context(),
            kind=SpanKind.CONSUMER,
            links=[Link(d.upstream) for d in todo if d.upstream.is_valid],
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": service.group_for(topic),
                "messaging.batch.message_count": len(todo),
            },
        )

    async def _handle(
        self, delivery: Delivery, uow: UnitOfWork, handler_seconds: Any, sampled: bool
    ) -> None:
        """One record, in its producer's trace (tracing.record_context) and its log context."""
        # Bound per record without a context manager (a tenth of the cost); unbound per batch.
        structlog.contextvars.bind_contextvars(event_id=delivery.event_id)
        token = attach(record_context(self.service.tracer_provider, delivery.upstream, sampled))
        try:
            uow.event_id = delivery.event_id
            uow.event_headers = delivery.headers
            began = time.perf_counter()
            await self.route.handler(delivery.event, uow)
            handler_seconds.observe(time.perf_counter() - began)
        finally:
            detach(token)
        uow.mark_processed(delivery.topic, delivery.event_id)

    async def _sleep(self, seconds: float) -> None:
        """Wait without being thrown out of the consumer group.

        aiokafka leaves the group once no `getmany` has been running for max_poll_interval_ms
        (300 s by default: as long as the wait for a missing programme, and a stalled database
        waits without end); the group then rebalances and the batch is consumed again. So the
        wait happens inside `getmany`, with this consumer's partitions paused so that it returns
        nothing: heartbeats go on, the poll interval is met, the batch stays ours. Records it
        returns anyway (a partition assigned anew in a rebalance is not paused) are put back.
        """
        consumer = self.consumer
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        if consumer is None:
            await asyncio.sleep(seconds)
            return
        try:
            partitions = set(consumer.assignment())
            paused = partitions - set(consumer.paused())
            consumer.pause(*paused)
            try:
                while partitions and (remaining := deadline - loop.time()) > 0:
                    fetched = await consumer.getmany(
                        *partitions, timeout_ms=max(1, int(remaining * 1000))
                    )
                    for partition, records in fetched.items():
                        if records:
                            consumer.seek(partition, records[0].offset)
            finally:
                consumer.resume(*(paused & set(consumer.assignment())))
        except (KafkaError, ConsumerStoppedError) as error:  # group trouble, or shutting down
            log.debug("wait_without_poll", error=type(error).__name__)
        if (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(remaining)

    async def _dead_letter(self, delivery: Delivery, error: BaseException, attempts: int) -> None:
        code = error_code(error)
        headers = dict(delivery.headers)
        headers.update(
            {
                ERROR_CODE_HEADER: code,
                ERROR_HEADER: describe(error),
                SERVICE_HEADER: self.service.name,
                ORIGINAL_TOPIC_HEADER: delivery.topic,
                "x-lindung-original-partition": str(delivery.partition),
                "x-lindung-original-offset": str(delivery.offset),
                "x-lindung-attempts": str(attempts),
                "x-lindung-failed-at": datetime.now(UTC).isoformat(),
            }
        )
        try:
            await self.service.broker.publish(
                delivery.value,
                topic=dead_letter_topic(delivery.topic),
                key=delivery.key,
                headers=headers,
            )
        except MessageSizeTooLargeError:
            # A record near the largest allowed no longer fits once the error headers are added,
            # and retrying would replay the batch forever: keep the start of the body and say so
            # (the original stays at its topic, partition and offset, given above).
            headers = {k: v[:4096] for k, v in headers.items()}
            headers[TRUNCATED_HEADER] = str(len(delivery.value))
            await self.service.broker.publish(
                delivery.value[:TRUNCATED_BODY_BYTES],
                topic=dead_letter_topic(delivery.topic),
                key=delivery.key[:1024] if delivery.key else delivery.key,
                headers=headers,
            )
        self.service.dead_lettered += 1
        metrics = self.service.metrics
        metrics.dead_letters.labels(self.service.name, delivery.topic, code).inc()
        metrics.consumed.labels(self.service.name, delivery.topic, "dead_lettered").inc()
        log.error(
            "event_dead_lettered",
            topic=delivery.topic,
            event_id=delivery.event_id,
            error_code=code,
            error=headers[ERROR_HEADER],
        )


_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")


def describe(error: BaseException) -> str:
    """What went wrong, for a dead letter's header and the logs: never a worker's values.

    Schema violations name the fields, not their input; a database error names its driver
    error class, codes and the driver's first line only (the rest quotes the statement, and
    PostgreSQL's DETAIL the values: NIK, names);
    any other message is scrubbed of NIKs, phone numbers, dates and quoted values."""
    if isinstance(error, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)[:10]
        ]
        return scrub_text("schema violation: " + "; ".join(parts))[:1000]
    if isinstance(error, sa_exc.StatementError):
        orig = error.orig
        codes = [
            str(code)
            for code in (
                getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None),
                getattr(orig, "sqlite_errorname", None),
                error.code,
            )
            if code
        ]
        # The driver's first line names what failed ("database is locked", "duplicate key value
        # violates unique constraint ..."); values come only after it (PostgreSQL's DETAIL).
        # Quoted parts may still be values (`invalid input syntax for type date: "31/02/1990"`).
        first = _QUOTED.sub("'…'", (str(orig).strip().splitlines() or [""])[0][:300])
        return scrub_text(
            f"{type(error).__name__}: {type(orig).__name__} ({', '.join(codes)}) {first}"
        ).strip()[:1000]
    return scrub_text(f"{type(error).__name__}: {error}")[:1000]
