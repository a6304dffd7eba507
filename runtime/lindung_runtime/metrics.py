"""Prometheus metrics of a service, served at `/metrics` on its admin port (`ADMIN_PORT`).

One registry per service object (tests run several services in one process). Names are the
contract of the Grafana dashboard (deploy/grafana/) and the alerts built on it. Each registry also
serves the process's own figures, from prometheus_client's standard collectors: `process_*`
(resident memory, CPU seconds, open files), `python_gc_*` (collections, objects collected and
uncollectable per generation) and `python_info`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from lindung_runtime.logging import get_logger
from lindung_runtime.outbox import OutboxMessage

log = get_logger(__name__)

REFRESH_SECONDS = 15.0


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        # The process's own figures, read (from /proc and the gc module) when scraped.
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.consumed = Counter(
            "lindung_events_consumed",
            "Events taken from a topic, by outcome (processed, duplicate, dead_lettered)",
            ["service", "topic", "outcome"],
            registry=self.registry,
        )
        self.produced = Counter(
            "lindung_events_produced",
            "Events published by the outbox relay (acknowledged by the broker)",
            ["service", "topic"],
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            "lindung_handler_duration_seconds",
            "Handler time per event, inside its batch transaction (a batch handler: its time "
            "divided by its events, once per batch)",
            ["service", "topic"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "lindung_batch_duration_seconds",
            "Time to process one fetched batch, commit included",
            ["service", "topic"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "lindung_dead_letters",
            "Events sent to a dead-letter topic, by error code",
            ["service", "topic", "error_code"],
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "lindung_outbox_backlog",
            "Outbox rows not yet acknowledged by the broker",
            ["service"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "lindung_consumer_lag",
            "Records on an input topic not yet committed by this service's consumer group",
            ["service", "topic"],
            registry=self.registry,
        )

        self._own: dict[str, Counter] = {}

    def counter(self, name: str, documentation: str, labels: list[str]) -> Counter:
        """A counter of the service's own (e.g. notification's failed digests), made once: the
        registry refuses a second metric of the same name."""
        if name not in self._own:
            self._own[name] = Counter(name, documentation, labels, registry=self.registry)
        return self._own[name]

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def refresh_gauges(
    metrics: ServiceMetrics,
    read_session: Callable[[], AbstractAsyncContextManager[AsyncSession]],
    bootstrap: str | None,
    groups: Callable[[], Mapping[str, str]],
) -> None:
    """Background loop: the outbox backlog and the lag of each consumed topic (`groups()`: its
    consumer group by topic) are asked for, not counted."""
    from lindung_runtime.kafka import GroupOffsets

    service = metrics.service
    while True:
        try:
            async with read_session() as session:
                backlog = (
                    await session.exec(
                        select(func.count())
                        .select_from(OutboxMessage)
                        .where(col(OutboxMessage.published_at).is_(None))
                    )
                ).one()
            metrics.outbox_backlog.labels(service).set(backlog)
            consumed = groups()
            if bootstrap and consumed:
                async with GroupOffsets(bootstrap) as offsets:
                    for topic, group in consumed.items():
                        lag = await offsets.lag(group, [topic])
                        metrics.consumer_lag.labels(service, topic).set(lag)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the broker may be away: the gauges keep their last value
            log.warning("metrics_refresh_failed", error=repr(error)[:300])
        await asyncio.sleep(REFRESH_SECONDS)
