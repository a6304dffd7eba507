"""Dead-letter step, outside the retry: what still fails is isolated and dead-lettered."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError

from lindung_contracts.topics import dead_letter_topic
from lindung_runtime.describe import describe, error_code
from lindung_runtime.errors import NotReadyYet, waiting_over
from lindung_runtime.logging import get_logger
from lindung_runtime.pipeline.batch import Batch, Delivery, Handle, Step

__all__ = ["DeadLetters", "dead_lettering", "describe", "error_code"]

log = get_logger(__name__)

ERROR_HEADER = "x-lindung-error"
ERROR_CODE_HEADER = "x-lindung-error-code"
SERVICE_HEADER = "x-lindung-service"
ORIGINAL_TOPIC_HEADER = "x-lindung-original-topic"
TRUNCATED_HEADER = "x-lindung-truncated-from-bytes"
TRUNCATED_BODY_BYTES = 64 * 1024


class DeadLetters:
    """Publishes a record to `<topic>.dlq` with its original bytes and headers, plus what went
    wrong (a code and a scrubbed message: never a worker's values) and where it came from."""

    def __init__(
        self, publish: Callable[..., Awaitable[Any]], service: str, metrics: Any = None
    ) -> None:
        self.publish = publish
        self.service = service
        self.metrics = metrics
        self.count = 0

    async def send(
        self, batch: Batch, delivery: Delivery, error: BaseException, attempts: int
    ) -> None:
        code = error_code(error)
        headers = dict(delivery.headers)
        headers.update(
            {
                ERROR_CODE_HEADER: code,
                ERROR_HEADER: describe(error),
                SERVICE_HEADER: self.service,
                ORIGINAL_TOPIC_HEADER: delivery.topic,
                "x-lindung-original-partition": str(delivery.partition),
                "x-lindung-original-offset": str(delivery.offset),
                "x-lindung-attempts": str(attempts),
                "x-lindung-failed-at": datetime.now(UTC).isoformat(),
            }
        )
        topic = dead_letter_topic(delivery.topic)
        try:
            await self.publish(delivery.value, topic=topic, key=delivery.key, headers=headers)
        except MessageSizeTooLargeError:
            # A record near the largest allowed no longer fits once the error headers are added,
            # and retrying would replay the batch forever: keep the start of the body and say so
            # (the original stays at its topic, partition and offset, given above).
            headers = {k: v[:4096] for k, v in headers.items()}
            headers[TRUNCATED_HEADER] = str(len(delivery.value))
            await self.publish(
                delivery.value[:TRUNCATED_BODY_BYTES],
                topic=topic,
                key=delivery.key[:1024] if delivery.key else delivery.key,
                headers=headers,
            )
        self.count += 1
        batch.tally.dead_lettered += 1
        if self.metrics is not None:
            self.metrics.dead_letters.labels(self.service, delivery.topic, code).inc()
            self.metrics.consumed.labels(self.service, delivery.topic, "dead_lettered").inc()
        log.error(
            "event_dead_lettered",
            topic=delivery.topic,
            event_id=delivery.event_id,
            error_code=code,
            error=headers[ERROR_HEADER],
        )


def dead_lettering(dead_letters: DeadLetters, *, per_record: Handle, attempts: int) -> Step:
    """A batch that still fails after the retries is replayed one record per transaction,
    through `per_record` (the transaction step, without the batch's retries): the good ones
    pass, and only the poison ones are dead-lettered. Only if even the dead-letter publish
    fails does the error escape; the subscriber then seeks back (at-least-once).

    A record still waiting for an upstream fact when the wait is over is replayed with
    `waiting_over()` set, so that handlers which can answer without the fact (a rejection with a
    reason) do so, and only the others are dead-lettered."""

    def step(next_: Handle) -> Handle:
        async def run(batch: Batch) -> None:
            try:
                await next_(batch)
                return
            except NotReadyYet:
                over: contextlib.AbstractContextManager[Any] = waiting_over()
            except Exception:
                over = contextlib.nullcontext()
            with over:
                for delivery in batch.deliveries:
                    try:
                        await per_record(batch.of([delivery]))
                    except Exception as error:
                        await dead_letters.send(batch, delivery, error, attempts)

        return run

    return step


def screening(
    dead_letters: DeadLetters,
    check: Callable[[Delivery], None],
    errors: tuple[type[BaseException], ...],
) -> Step:
    """A step that checks each record on its own: one that fails `check` with one of `errors`
    is dead-lettered at once (no retry mends it); the records around it go on as one batch."""

    def step(next_: Handle) -> Handle:
        async def run(batch: Batch) -> None:
            good = []
            for delivery in batch.deliveries:
                try:
                    check(delivery)
                except errors as error:
                    await dead_letters.send(batch, delivery, error, attempts=1)
                    continue
                good.append(delivery)
            if good:
                await next_(batch.of(good))

        return run

    return step
