"""The reliable consumer as small steps, each its own module, composed in one place (`build`).

A step wraps the handle below it, as watermill's router middlewares do. From the outside in:

    decode        bad bytes, wrong shape or wrong event type   -> dead letter
    trust         a `ce_source` the topic's allow-list lacks   -> dead letter
    dead_letter   a batch that still fails after the retries is replayed one record per
                  transaction; what fails alone is dead-lettered, the rest goes on
    retry         backoff: a missing upstream fact (NotReadyYet) for a while, other failures
                  a few times; permanent errors not at all
    infra         a database or connection failure is waited out, however long
    transaction   one unit of work: skip what the inbox has seen, hand the rest to the
                  handler as one batch, mark them seen, commit (with the outbox rows of the
                  events the handler returned)

Every wait pauses the batch's partitions inside `getmany` (`pause.py`), so the consumer stays
in its group however long it waits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from lindung_runtime.pipeline.batch import Batch, Delivery, Handle, Step, deliveries_of
from lindung_runtime.pipeline.dead_letter import DeadLetters, dead_lettering, describe, error_code
from lindung_runtime.pipeline.decode import decoding
from lindung_runtime.pipeline.infra import INFRA_ERRORS, waiting_out_infra
from lindung_runtime.pipeline.retry import retrying
from lindung_runtime.pipeline.transaction import Handler, Route, transaction
from lindung_runtime.pipeline.trust import trusting

__all__ = [
    "INFRA_ERRORS",
    "Batch",
    "DeadLetters",
    "Delivery",
    "Handle",
    "Handler",
    "Route",
    "Step",
    "build",
    "deliveries_of",
    "describe",
    "error_code",
]


def build(
    route: Route,
    *,
    dead_letters: DeadLetters,
    trusted: Sequence[str],
    unit_of_work: Callable[[], Any],
    tracer: Tracer,
    tracer_provider: TracerProvider,
    metrics: Any,
    service: str,
    group: str,
    retry_base_seconds: float,
    max_attempts: int,
    not_ready_max_wait_seconds: float,
) -> Callable[[Batch], Awaitable[None]]:
    """The pipeline of one subscribed topic, in the order the module docstring gives."""
    apply = waiting_out_infra(retry_base_seconds)(
        transaction(
            route,
            unit_of_work=unit_of_work,
            tracer=tracer,
            tracer_provider=tracer_provider,
            metrics=metrics,
            service=service,
            group=group,
        )
    )
    retried = retrying(retry_base_seconds, max_attempts, not_ready_max_wait_seconds)(apply)
    handle = dead_lettering(dead_letters, per_record=apply, attempts=max_attempts + 1)(retried)
    handle = trusting(tuple(trusted), dead_letters)(handle)
    handle = decoding(route.event_type, dead_letters)(handle)

    return handle
