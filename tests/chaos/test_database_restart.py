"""Scenario 7, database restart: every service runs as two processes on one PostgreSQL server,
and the server crashes (an immediate shutdown: every connection cut, every open transaction
rolled back) and comes back on its own data three times: while registrations flow, while the
payment activates cover, and while the expiry alerts are turned into a digest. Each service rides
through without being restarted: a batch whose transaction was cut is retried with backoff on a
fresh connection, and the inbox skips what had committed. Afterwards the counts are those of a
run without faults (tests/chaos/kit.py says what counts), every invoice's total is the sum of its
lines, and each digest was delivered once.

Needs the throwaway server of `.ci/postgres.sh` (LINDUNG_TEST_POSTGRES_CTL, exported by its
`start`), so `make test-postgres` runs it. Broker losses of two producers per partition (see
test_scale_out_kill_9) are told apart and re-driven in the same way. The seed is printed first.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.chaos.kit import (
    Census,
    DatabaseRestarter,
    Redriver,
    System,
    Workload,
    audit_broker,
    pay_alert_and_judge,
    publish,
    publish_requests,
    until,
    wait_for_decisions,
)
from tests.conftest import POSTGRES_URL

CTL = os.environ.get("LINDUNG_TEST_POSTGRES_CTL")

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.postgres_chaos,
    pytest.mark.skipif(
        not (POSTGRES_URL and CTL),
        reason="needs .ci/postgres.sh's server (make test-postgres)",
    ),
]

INSTANCES = int(os.environ.get("LINDUNG_CHAOS_INSTANCES", "2"))


@pytest.mark.timeout(360)
async def test_database_crash_and_restart_under_load_loses_and_duplicates_nothing(
    work: Path, show: Callable[[str], None]
) -> None:
    """N = 8,000 requests; the server is down 2-6 s each time."""
    assert CTL
    n = 8_000
    seed = int(os.environ.get("LINDUNG_CHAOS_SEED") or random.SystemRandom().randrange(10**9))
    show(f"chaos database restart: seed {seed} (LINDUNG_CHAOS_SEED={seed} repeats it)")
    rng = random.Random(seed)
    workload = Workload.generate(n, seed)
    started = time.monotonic()
    since = datetime.now(UTC) - timedelta(seconds=5)
    async with System(work, instances=INSTANCES) as system, Census(system.bootstrap) as census:
        database = DatabaseRestarter(system, census, CTL)
        redriver = Redriver(system, census, workload, since)
        await publish(system.bootstrap, workload.setup())
        await publish_requests(system.bootstrap, workload.requests)

        async def crash_while_flowing() -> None:
            await until(  # the census is refreshed by wait_for_decisions, below
                lambda: census.decided >= n // 5,
                timeout=120,
                what="a fifth of the workers decided",
                every=0.3,
            )
            await database.restart(rng.uniform(2.0, 6.0))

        crash = asyncio.create_task(crash_while_flowing())
        await wait_for_decisions(census, workload, timeout=240, wait=redriver.until)
        await crash

        async def crash_during_alerts() -> None:
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            await database.restart(rng.uniform(2.0, 6.0))

        async def crash_while_paying() -> None:
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            await database.restart(rng.uniform(2.0, 6.0))

        outcome, deliveries, digests = await pay_alert_and_judge(
            system,
            census,
            workload,
            timeout=180,
            while_paying=crash_while_paying,
            during_alerts=crash_during_alerts,
            wait=redriver.until,
        )
        audit = await audit_broker(system)
        restarts = system.restarts()

    seconds = time.monotonic() - started
    show(
        outcome.line(
            f"database restart (seed {seed}, {INSTANCES} instances each, PostgreSQL)",
            seconds,
            f"{len(database.restarts)} crashes: {', '.join(database.restarts)}; digest "
            f"deliveries at the SMTP server {deliveries} of {digests} digest(s); service "
            f"processes restarted {sum(restarts.values())}; {len(redriver.redrives)} re-drive(s); "
            f"{audit.line()}",
        )
    )
    assert len(database.restarts) == 3
    assert outcome.problems() == {}
    assert (outcome.duplicates, outcome.lost) == (0, 0)
    assert outcome.confirmed == outcome.invoice_lines == workload.quota
    assert digests >= 1 and deliveries == digests, f"{deliveries} deliveries of {digests} digests"
    assert not any(restarts.values()), f"a service died with the database: {restarts}"
