"""A Lindung service: one FastStream app, its own database, the outbox relay, and the reliable
consumer middleware, wired the same way for every service.

A service module reads like this:

    service = Service("billing", settings, tables=[Invoice, ...])

    @service.consumer(topics.ELIGIBILITY_CONFIRMED)
    async def on_eligibility_confirmed(
        batch: list[Message[EligibilityConfirmed]], tx: Transaction
    ) -> list[Outgoing]:
        ...  # one query per table, the domain's pure rules, bulk writes; the events it causes
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, get_args, get_origin, get_type_hints

from faststream import AckPolicy, FastStream
from faststream.specification import AsyncAPI
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel
from sqlmodel import SQLModel

from lindung_contracts import Event
from lindung_runtime.clock import Clock, SystemClock
from lindung_runtime.consumer import Pipeline, ReliableConsumer
from lindung_runtime.db import Database
from lindung_runtime.faststream_adapter import (
    ConcurrentStartKafkaBroker,
    fetch_batches,
)
from lindung_runtime.http import (
    HttpServer,
    broker_check,
    create_admin_app,
    create_http_app,
    database_check,
)
from lindung_runtime.kafka import (
    all_topics,
    broker_security,
    client_options,
    ensure_topics,
    new_producer,
)
from lindung_runtime.logging import get_logger
from lindung_runtime.metrics import ServiceMetrics, refresh_gauges
from lindung_runtime.migrations import has_migrations, upgrade_async
from lindung_runtime.outbox import RUNTIME_TABLES, OutboxRelay, UnitOfWork, purge_old_rows
from lindung_runtime.pipeline import DeadLetters, Handler, Route, build
from lindung_runtime.settings import LindungSettings
from lindung_runtime.tracing import build_tracer_provider

log = get_logger(__name__)

BackgroundTask = Callable[[], Awaitable[None]]

#: How long a subscriber's fetch waits for records before it looks again (an idle subscriber
#: wakes this often; records fetched meanwhile are handed over at once: see `fetch_batches`).
BATCH_TIMEOUT_MS = 200


class Service:
    def __init__(
        self,
        name: str,
        settings: LindungSettings,
        tables: Sequence[type[SQLModel]],
        *,
        clock: Clock | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.clock = clock or SystemClock()
        self.client_id = f"lindung-{name}"
        self.source = f"/lindung/{name}"
        self.database = Database(settings.database_url_for(name))
        self.tables = [*tables, *RUNTIME_TABLES]
        self.tracer_provider = tracer_provider or build_tracer_provider(
            name, settings.otel_traces_exporter, settings.otel_exporter_otlp_endpoint
        )
        self.metrics = ServiceMetrics(name)
        # Subscribers start concurrently: each joins its own consumer group (see the adapter).
        self.broker = ConcurrentStartKafkaBroker(
            settings.kafka_bootstrap_servers or "localhost:9092",
            client_id=self.client_id,
            acks="all",
            security=broker_security(settings),
            graceful_timeout=15.0,
            # No FastStream telemetry middleware: the pipeline opens one span per batch, linked
            # to each record's producer context, and the outbox row carries the record's
            # context; FastStream's span per record and per publish cost a third of the CPU.
            middlewares=[ReliableConsumer(self.pipeline_for, self.metrics, name)],
            logger=logging.getLogger(f"lindung.{name}.broker"),
            log_level=logging.DEBUG,
        )
        self.dead_letters = DeadLetters(self.broker.publish, name, self.metrics)
        self.outbox = OutboxRelay(
            self.database,
            self.broker,
            self.clock,
            batch_size=settings.outbox_batch_size,
            poll_seconds=settings.outbox_poll_seconds,
            on_published=self._count_published,
            tracer=self.tracer_provider.get_tracer("lindung"),
            producer=(
                partial(
                    new_producer,
                    settings.kafka_bootstrap_servers,
                    f"{self.client_id}-outbox",
                    **client_options(settings),
                )
                if settings.kafka_bootstrap_servers
                else None
            ),
        )
        self.app = FastStream(
            self.broker,
            specification=AsyncAPI(title=f"Lindung {name}", version="1.0.0"),
            logger=logging.getLogger(f"lindung.{name}"),
            on_startup=[self.prepare],
            after_startup=[self._start_background],
            on_shutdown=[self._stop_background],
            after_shutdown=[self.database.dispose],
        )
        self.http = create_http_app(name, title=f"Lindung {name}", version="1.0.0")
        self.http_server: HttpServer | None = None
        self.admin_http = create_admin_app(
            name,
            public=self.http,
            checks={
                "broker": broker_check(self.broker),
                "database": database_check(self.database.read_session),
            },
            render_metrics=self.metrics.render,
        )
        self.admin_server: HttpServer | None = None
        self.routes: dict[str, Route] = {}
        self._pipelines: dict[str, tuple[Route, Pipeline]] = {}
        self.tracer = self.tracer_provider.get_tracer("lindung")
        self._background: list[BackgroundTask] = [self._purge_old_rows_hourly, self._refresh_gauges]
        self._tasks: list[asyncio.Task[None]] = []

    def consumer(
        self, topic: str, *, inbox: bool = True, **options: Any
    ) -> Callable[[Handler], Handler]:
        """Subscribe a batch handler (`handler(batch, tx) -> outgoing`, messages.py) to `topic`,
        at-least-once.

        FastStream owns the consumer (group, fetching, offset commits after processing, the
        AsyncAPI entry typed from the handler's signature); the topic's pipeline (pipeline/)
        hands it each batch inside one transaction. `inbox=False`: the handler is idempotent by
        the event's own id (see `Route.inbox`). `options` go to FastStream's `broker.subscriber`
        and override the runtime's (fetch settings included).
        """

        def register(handler: Handler) -> Handler:
            event_type = handled_event(handler)
            self.routes[topic] = Route(handler, event_type, inbox)
            defaults: dict[str, Any] = dict(
                group_id=self.group_for(topic),
                batch=True,
                max_records=self.settings.consumer_batch_size,
                batch_timeout_ms=BATCH_TIMEOUT_MS,
                fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
                fetch_min_bytes=self.settings.consumer_fetch_min_bytes,
                ack_policy=AckPolicy.NACK_ON_ERROR,
                auto_offset_reset="earliest",
                title=f"{self.name}: {topic}",
                description=(handler.__doc__ or "").strip() or None,
            )
            # A service's own options win (e.g. a longer fetch wait off the latency path).
            subscriber = self.broker.subscriber(topic, **(defaults | options))
            # FastStream reads the handler's signature for the AsyncAPI document; the pipeline
            # calls the handler itself.
            subscriber(schema_stub(handler, event_type))
            fetch_batches(subscriber, self.settings.consumer_batch_linger_ms)
            return handler

        return register

    @property
    def dead_lettered(self) -> int:
        """Records this service has dead-lettered since it started."""
        return self.dead_letters.count

    def pipeline_for(self, topic: str) -> Pipeline | None:
        """The reliable pipeline of a subscribed topic (lindung_runtime.pipeline), built on
        first use from its route, and again if the route is replaced."""
        route = self.routes.get(topic)
        if route is None:
            return None
        built = self._pipelines.get(topic)
        if built is None or built[0] is not route:
            settings = self.settings
            pipeline = build(
                route,
                dead_letters=self.dead_letters,
                trusted=settings.trusted_sources_for(topic),
                unit_of_work=self.unit_of_work,
                tracer=self.tracer,
                tracer_provider=self.tracer_provider,
                metrics=self.metrics,
                service=self.name,
                group=self.group_for(topic),
                retry_base_seconds=settings.consumer_retry_base_seconds,
                max_attempts=settings.consumer_max_attempts,
                not_ready_max_wait_seconds=settings.consumer_not_ready_max_wait_seconds,
            )
            built = self._pipelines[topic] = (route, pipeline)
        return built[1]

    def group_for(self, topic: str) -> str:
        """One consumer group per (service, topic): a subscriber joining or leaving never makes
        the service's other subscribers rebalance, and lag is read per input topic."""
        return f"lindung-{self.name}.{topic}"

    def publishes(self, *events: type[Event]) -> None:
        """Declare what this service emits (for the AsyncAPI document); the outbox sends it."""
        for event in events:
            self.broker.publisher(
                event.TOPIC,
                title=f"{self.name} -> {event.TOPIC}",
                description=(event.__doc__ or "").strip() or None,
                schema=event,
            )

    def background(self, task: BackgroundTask) -> BackgroundTask:
        """Run `task` for the life of the service (e.g. a mail dispatcher)."""
        self._background.append(task)
        return task

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        async with self.database.session() as session:
            yield UnitOfWork(session, self.clock, self.source, self.outbox)

    async def prepare(self) -> None:
        """Migrate this service's database (when allowed) and create the topics it needs (when
        allowed)."""
        if self.settings.database_migrate_on_start:
            if has_migrations(self.name):
                await upgrade_async(self.name, self.settings.database_url_for(self.name))
            else:  # a service without a history of its own (tests' ad-hoc services)
                await self.database.create_tables(self.tables)
        if self.settings.kafka_create_topics and self.settings.kafka_bootstrap_servers:
            created = await ensure_topics(
                self.settings.kafka_bootstrap_servers,
                all_topics(),
                self.settings.kafka_partitions,
                self.settings.kafka_replication_factor,
            )
            if created:
                log.info("topics_created", count=len(created))

    def _count_published(self, topics_published: list[str]) -> None:
        for topic in topics_published:
            self.metrics.produced.labels(self.name, topic).inc()

    async def _refresh_gauges(self) -> None:
        await refresh_gauges(
            self.metrics,
            self.database.read_session,
            self.settings.kafka_bootstrap_servers,
            lambda: {topic: self.group_for(topic) for topic in self.routes},
        )

    async def _purge_old_rows_hourly(self) -> None:
        days = self.settings.retention_days
        while True:
            if purged := await purge_old_rows(self.database, self.clock, days):
                log.info("old_rows_purged", rows=purged, retention_days=days)
            await asyncio.sleep(3600)

    async def _start_background(self) -> None:
        if self.settings.http_port is not None:
            self.http_server = HttpServer(
                self.http, self.settings.http_host, self.settings.http_port
            )
            await self.http_server.start()
        if self.settings.admin_port is not None:
            self.admin_server = HttpServer(
                self.admin_http, self.settings.http_host, self.settings.admin_port, name="admin"
            )
            await self.admin_server.start()
        self.outbox.start()
        for task in self._background:
            self._tasks.append(asyncio.create_task(_forever(task), name=task.__name__))
        log.info("service_started", consumes=sorted(self.routes))

    async def _stop_background(self) -> None:
        if self.http_server is not None:
            await self.http_server.stop()
        if self.admin_server is not None:
            await self.admin_server.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.outbox.stop()
        log.info("service_stopped")


def handled_event(handler: Handler) -> type[BaseModel]:
    """The event type a batch handler takes (`batch: list[Message[E]]`)."""
    first = next(iter(get_type_hints(handler).values()))
    if get_origin(first) is not list:
        raise TypeError(f"{handler.__name__}: the first parameter must be list[Message[Event]]")
    (message,) = get_args(first)
    (event_type,) = get_args(message)
    return event_type  # type: ignore[no-any-return]


def schema_stub(handler: Handler, event_type: type[BaseModel]) -> Callable[..., Awaitable[None]]:
    """A function FastStream can read as `(event: E)`, named and documented as `handler`, so a
    batch handler's AsyncAPI entry names the event it takes."""

    async def stub(event: Any) -> None:
        raise AssertionError("the pipeline calls batch handlers, not FastStream")

    first = next(iter(inspect.signature(handler).parameters))
    stub.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(first, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=event_type)]
    )
    stub.__name__, stub.__qualname__ = handler.__name__, handler.__qualname__
    stub.__module__, stub.__doc__ = handler.__module__, handler.__doc__
    return stub


def service_process_gc(young_threshold: int = 10_000) -> None:
    """Keep the cyclic garbage collector off the service's startup heap; call once per process,
    after the imports.

    The modules, models and schemas loaded at startup live as long as the process, yet every full
    collection walks them again: in the bench, registration spent about 3 s of CPU per 10,000
    workers in the collector. `gc.freeze()` sets them aside (as CPython's docs advise for
    long-lived processes), and a larger young generation means fewer collections (garbage in
    cycles lives a little longer; 10,000 objects, a few MB at most). Measured: 3 s -> 0.6 s.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


async def _forever(task: BackgroundTask) -> None:
    """A background loop that dies is logged and restarted, never silently gone."""
    while True:
        try:
            await task()
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("background_task_failed", task=task.__name__, error=repr(error))
            await asyncio.sleep(1.0)
