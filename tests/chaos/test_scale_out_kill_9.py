"""Scenario 6, scale-out kill -9: every service runs as two processes (LINDUNG_CHAOS_INSTANCES)
sharing its PostgreSQL database and its consumer groups, and while 20,000 registrations flow,
instances picked at random are SIGKILLed and restarted by the supervisor. Afterwards nothing is
lost or duplicated (tests/chaos/kit.py says what counts), the quota is exact, every invoice's total
is the sum of its lines (billing's database), each digest was delivered once (DATA commands the
SMTP server accepted, by Message-ID), and each consumer group's partitions are split between
the instances.

PostgreSQL only (two processes cannot share a SQLite file's writes): `make test-postgres` runs
it; without LINDUNG_TEST_POSTGRES_URL it is skipped.

The embedded broker (Tansu 0.6.0) can give two acknowledged records one offset when several
producers write a partition at once, which two relays per service do. The run tells that loss
apart from Lindung's: when the system goes quiet short of the expected state, the harness compares
what each relay had acknowledged (outbox rows marked sent) with what the topics hold, prints both,
and re-drives (`lindung outbox replay --since`, kit.Redriver). Lindung's own loss is what is still
missing after that: it must be 0. The seed is random per run and printed first; re-run one with
LINDUNG_CHAOS_SEED.
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

from lindung_runtime.settings import LindungSettings
from tests.chaos.kit import (
    Census,
    Killer,
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

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.postgres_chaos,
    pytest.mark.skipif(
        not POSTGRES_URL, reason="LINDUNG_TEST_POSTGRES_URL not set (make test-postgres)"
    ),
]

INSTANCES = int(os.environ.get("LINDUNG_CHAOS_INSTANCES", "2"))
KILLS_WHILE_FLOWING = 6


def split(assignments: dict[str, dict[str, list[int]]], groups: list[str], partitions: int) -> bool:
    """Every group's partitions all held, by every instance of its service, none twice."""
    for name in groups:
        held = assignments.get(name, {})
        owned = [p for ps in held.values() for p in ps]
        if len(held) != INSTANCES or not all(held.values()):
            return False
        if sorted(owned) != list(range(partitions)):
            return False
    return True


@pytest.mark.timeout(360)
async def test_two_instances_of_each_service_killed_at_random_lose_and_duplicate_nothing(
    work: Path, show: Callable[[str], None]
) -> None:
    """N = 20,000 requests (19,000 valid; 18,200 eligible for 18,160 seats)."""
    n = 20_000
    seed = int(os.environ.get("LINDUNG_CHAOS_SEED") or random.SystemRandom().randrange(10**9))
    show(f"chaos scale-out kill -9: seed {seed} (LINDUNG_CHAOS_SEED={seed} repeats it)")
    rng = random.Random(seed)
    workload = Workload.generate(n, seed)
    partitions = LindungSettings().kafka_partitions
    started = time.monotonic()
    since = datetime.now(UTC) - timedelta(seconds=5)
    async with System(work, instances=INSTANCES) as system, Census(system.bootstrap) as census:
        killer = Killer(system, census, rng)
        redriver = Redriver(system, census, workload, since)
        await publish(system.bootstrap, workload.setup())
        await publish_requests(system.bootstrap, workload.requests)

        async def kill_while_flowing() -> None:
            for _ in range(KILLS_WHILE_FLOWING):
                await asyncio.sleep(rng.uniform(3.0, 10.0))
                await killer.kill_one_of(rng.choice(["registration", "eligibility", "billing"]))

        kills = asyncio.create_task(kill_while_flowing())
        await wait_for_decisions(census, workload, timeout=300, wait=redriver.until)
        await kills

        async def kill_during_alerts() -> None:
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            await killer.kill_one_of("billing")
            await killer.kill_one_of("notification")

        async def pay_and_kill_billing() -> None:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            await killer.kill_one_of("billing")

        outcome, deliveries, digests = await pay_alert_and_judge(
            system,
            census,
            workload,
            timeout=240,
            while_paying=pay_and_kill_billing,
            during_alerts=kill_during_alerts,
            wait=redriver.until,
        )

        groups = [name for name in (await system.group_members()) if name.startswith("lindung-")]
        await until(
            lambda: split(system.assignments(), groups, partitions),
            timeout=90,
            what="every group's partitions split between the instances",
            every=1.0,
            detail=system.assignments,
        )
        assignment = system.assignments()
        members = await system.group_members()
        audit = await audit_broker(system)
        invoices = system.query(
            "billing",
            "SELECT i.invoice_id, i.total_idr, coalesce(sum(l.amount_idr), 0) FROM invoice i "
            "LEFT JOIN invoice_line l ON l.invoice_id = i.invoice_id "
            "GROUP BY i.invoice_id, i.total_idr",
        )
        restarts = system.restarts()

    seconds = time.monotonic() - started
    lines = [
        outcome.line(
            f"scale-out kill -9 (seed {seed}, {INSTANCES} instances each, PostgreSQL)",
            seconds,
            f"{len(killer.kills)} kills: {', '.join(killer.kills)}; digest deliveries at the "
            f"SMTP server {deliveries} of {digests} digest(s); invoices (id, total, sum of "
            f"lines) {invoices}",
        ),
        "partitions per group and instance: "
        + "; ".join(
            f"{name} {assignment.get(name)} ({members.get(name)} members)"
            for name in sorted(groups)
        ),
        f"loss by the broker vs Lindung: {len(redriver.redrives)} re-drive(s)"
        + "".join(f" [{what}: {found.line()}]" for what, found in redriver.redrives)
        + f"; at the end {audit.line()}; Lindung lost {outcome.lost}, "
        f"duplicated {outcome.duplicates}",
    ]
    for line in lines:
        show(line)
    assert outcome.problems() == {}
    assert (outcome.duplicates, outcome.lost) == (0, 0)
    assert outcome.confirmed == outcome.invoice_lines == workload.quota
    assert digests >= 1 and deliveries == digests, f"{deliveries} deliveries of {digests} digests"
    assert invoices and all(total == lines_sum for _, total, lines_sum in invoices)
    assert all(members[name] == INSTANCES for name in groups), members
    kills_per_label = {
        label: sum(k.startswith(f"{label}@") for k in killer.kills) for label in restarts
    }
    assert restarts == kills_per_label, "a service process died that the test did not kill"
