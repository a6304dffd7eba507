"""Retry step: a failed batch is tried again with backoff, as long as its failure may pass."""

from __future__ import annotations

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
)

from lindung_runtime.describe import log_retries
from lindung_runtime.errors import NotReadyYet, PermanentError
from lindung_runtime.logging import get_logger
from lindung_runtime.pipeline.batch import Batch, Handle, Step

log = get_logger(__name__)


#: Each retry of a failing batch, logged (infra.py's waits too).
log_retry = log_retries(log, "batch_failed_will_retry")


def _not_ready(state: RetryCallState) -> bool:
    return state.outcome is not None and isinstance(state.outcome.exception(), NotReadyYet)


def retrying(base_seconds: float, max_attempts: int, not_ready_max_wait_seconds: float) -> Step:
    """A missing upstream fact (NotReadyYet: the programme not known yet) will arrive: wait for
    it up to `not_ready_max_wait_seconds`. Any other failure that is not permanent is tried
    `max_attempts` times. Then the failure goes up to the dead-letter step."""
    waiting = wait_exponential(multiplier=base_seconds, max=5.0)
    failing = wait_exponential(multiplier=base_seconds, max=10.0)

    def stop(state: RetryCallState) -> bool:
        if _not_ready(state):
            return (state.seconds_since_start or 0.0) >= not_ready_max_wait_seconds
        return state.attempt_number >= max_attempts

    def step(next_: Handle) -> Handle:
        async def run(batch: Batch) -> None:
            retrying = AsyncRetrying(
                retry=retry_if_exception(
                    lambda e: isinstance(e, Exception) and not isinstance(e, PermanentError)
                ),
                stop=stop,
                wait=lambda state: (waiting if _not_ready(state) else failing)(state),
                sleep=batch.sleep,
                before_sleep=log_retry,
                reraise=True,
            )
            await retrying(next_, batch)

        return run

    return step
