"""The reliable consumer: FastStream middleware that hands each fetched batch to its topic's
pipeline (`lindung_runtime.pipeline`: decode, trust, dead letter, retry, infra, transaction) and
writes one log line and the batch metrics per batch.

FastStream owns the consumer (group, fetching, offset commits after processing, the AsyncAPI
entry); the pipeline owns reliability. Only if even a dead-letter publish fails does an error
escape, and the subscriber's NACK_ON_ERROR policy seeks back so the batch is consumed again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from faststream import BaseMiddleware

from lindung_runtime.logging import get_logger
from lindung_runtime.pipeline import Batch, deliveries_of
from lindung_runtime.pipeline.dead_letter import TRUNCATED_HEADER

__all__ = ["TRUNCATED_HEADER", "Pipeline", "ReliableConsumer"]

log = get_logger(__name__)

Pipeline = Callable[[Batch], Awaitable[None]]


class ReliableConsumer:
    """Middleware factory for one service: its pipeline per topic, its metrics. FastStream
    instantiates the middleware per batch and per publish, so the scope class is built once."""

    def __init__(
        self, pipeline_for: Callable[[str], Pipeline | None], metrics: Any, service: str
    ) -> None:
        self.pipeline_for = pipeline_for
        self.metrics = metrics
        self.service = service

    def __call__(self, msg: Any, /, *, context: Any) -> Any:
        return _ReliableScope(msg, context=context, owner=self)

    async def process(self, pipeline: Pipeline, batch: Batch) -> None:
        """One log line per batch (plus one per rejection or failure, where they happen)."""
        started = time.perf_counter()
        await pipeline(batch)
        seconds = time.perf_counter() - started
        self.metrics.batch_seconds.labels(self.service, batch.topic).observe(seconds)
        log.info(
            "batch_processed",
            topic=batch.topic,
            records=len(batch.deliveries),
            duplicates=batch.tally.duplicates,
            dead_lettered=batch.tally.dead_lettered,
            ms=round(seconds * 1000, 1),
        )


class _ReliableScope(BaseMiddleware):  # type: ignore[type-arg]
    def __init__(self, msg: Any, /, *, context: Any, owner: ReliableConsumer) -> None:
        super().__init__(msg, context=context)
        self.owner = owner

    async def consume_scope(self, call_next: Any, message: Any) -> Any:
        deliveries = deliveries_of(message.raw_message)
        pipeline = self.owner.pipeline_for(deliveries[0].topic) if deliveries else None
        if pipeline is None:
            return await call_next(message)
        # The Kafka consumer the batch came from: waits pause it and stay in its group.
        batch = Batch(deliveries[0].topic, deliveries, getattr(message, "consumer", None))
        await self.owner.process(pipeline, batch)
        return None
