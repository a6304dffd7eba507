"""Scenario 2, broker outage: the broker goes away for 20 s in the middle of a batch and comes back
empty (Tansu's memory storage; as a Kafka cluster restored from nothing would). The operator
creates the topics again and re-drives every service's outbox (`lindung outbox replay --since`),
and the upstream systems re-send their own events under their own ids. Meanwhile the services
stay up (no crash loop) and say they are not ready; afterwards nothing is lost or duplicated.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.chaos.kit import (
    SERVICES,
    Census,
    System,
    Workload,
    drive_lifecycle_after_invoices,
    judge,
    publish,
    publish_requests,
    say,
    settle,
    until,
    wait_for_decisions,
)

pytestmark = pytest.mark.chaos

SEED = 20251002
OUTAGE_SECONDS = 20.0


@pytest.mark.timeout(420)
async def test_broker_outage_mid_batch_then_replay_loses_and_duplicates_nothing(
    work: Path, show: Callable[[str], None]
) -> None:
    """N = 6,000 requests (5,700 valid; 5,460 eligible for 5,420 seats): the outage itself, the
    consumer groups joining again (~18 s each on Tansu) and re-reading everything re-driven
    (outboxes and upstream inputs, all skipped by the inboxes) take as long as the registrations,
    at about 100 workers/s on this 2-core machine; 6,000 keeps the run near 3 minutes."""
    n = 6_000
    workload = Workload.generate(n, SEED)
    started = time.monotonic()
    since = datetime.now(UTC) - timedelta(seconds=5)  # the start of the run, for the re-drive
    async with System(work) as system, Census(system.bootstrap) as census:
        await publish(system.bootstrap, workload.setup())
        await publish_requests(system.bootstrap, workload.requests)
        await until(
            lambda: _refreshed_at_least(census, 0.3 * n),
            timeout=120,
            what="a third of the requests answered",
        )
        before = census.progress()
        lags_before = await system.total_lag()
        assert lags_before, "the outage must come in the middle of the work"

        # --- the outage ---------------------------------------------------------------------
        await census.close_reader()
        system.stop_broker()
        outage_started = time.monotonic()
        lag = sum(lags_before.values())
        say(f"broker stopped at {system.elapsed():.0f}s: {before}; lag {lag:,}")
        readiness: dict[str, Counter[int | None]] = {name: Counter() for name in SERVICES}
        alive_throughout = True
        while time.monotonic() - outage_started < OUTAGE_SECONDS:
            statuses = await asyncio.gather(*(system.readyz(name) for name in SERVICES))
            for name, code in zip(SERVICES, statuses, strict=True):
                readiness[name][code] += 1
            alive_throughout &= all(system.alive_now().values())
            await asyncio.sleep(1.0)
        restarts_during = system.restarts()

        # --- recovery, as an operator and the upstream systems do it --------------------------
        await system.start_broker_again()
        say(f"broker back at {system.elapsed():.0f}s (empty; topics created again)")
        replay = await system.lindung(
            "outbox", "replay", "--since", since.strftime("%Y-%m-%d %H:%M:%S")
        )
        say(" | ".join(line.strip() for line in replay.strip().splitlines()))
        await publish(system.bootstrap, workload.setup())
        await publish_requests(system.bootstrap, workload.requests)
        await census.reset_reader()

        await wait_for_decisions(census, workload, timeout=240)
        await drive_lifecycle_after_invoices(system, census, workload, timeout=180)
        await settle(system)
        await census.refresh()
        outcome = judge(census, workload, system, through="digest")
        ready_after = {name: await system.readyz(name) for name in SERVICES}
        restarts = system.restarts()

    seconds = time.monotonic() - started
    not_ready = {name: dict(codes) for name, codes in readiness.items()}
    show(
        outcome.line(
            "broker outage",
            seconds,
            f"broker away {OUTAGE_SECONDS:.0f} s; /readyz while away {not_ready}; "
            f"restarts {restarts}",
        )
    )
    assert outcome.problems() == {}
    assert (outcome.duplicates, outcome.lost) == (0, 0)
    assert outcome.confirmed == outcome.invoice_lines == workload.quota
    # No crash loop: every service process stayed up through the outage and after it.
    assert alive_throughout
    assert restarts_during == restarts == dict.fromkeys(SERVICES, 0)
    # Each said it was not ready while the broker was away (503), and is ready again.
    for name, codes in readiness.items():
        assert codes[503] > 0, f"{name} never answered 503 while the broker was away: {codes}"
        assert codes[200] == 0, f"{name} said it was ready without a broker: {codes}"
    assert ready_after == dict.fromkeys(SERVICES, 200)


async def _refreshed_at_least(census: Census, answered: float) -> bool:
    await census.refresh()
    return len(census.registered) + len(census.rejected_requests) >= answered
