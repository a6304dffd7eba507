"""Infra step: a database or connection failure is waited out, never dead-lettered."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from lindung_runtime.pipeline.batch import Batch, Handle, Step
from lindung_runtime.pipeline.retry import log_retry

INFRA_ERRORS = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def waiting_out_infra(base_seconds: float, max_seconds: float = 30.0) -> Step:
    """Retries the transaction below it for as long as the database (or a connection) is
    away, with backoff: the offsets stay uncommitted meanwhile, so nothing is lost if the
    service is stopped while it waits (tests/chaos: a locked database, a restarted one)."""

    def step(next_: Handle) -> Handle:
        async def run(batch: Batch) -> None:
            retrying = AsyncRetrying(
                retry=retry_if_exception_type(INFRA_ERRORS),
                wait=wait_exponential(multiplier=base_seconds, max=max_seconds),
                sleep=batch.sleep,
                before_sleep=log_retry,
                reraise=True,
            )
            await retrying(next_, batch)

        return run

    return step
