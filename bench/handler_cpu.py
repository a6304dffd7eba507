"""CPU per handled event, by service and event type, with Kafka taken out.

    .venv/bin/python bench/handler_cpu.py [--n 20000] [--repeat 3]

Runs the pipeline's chain in one process, each service with its real SQLite database (migrated)
and its real consumer path (the topic's pipeline: decode and validate, trust, inbox, handler,
outbox, one transaction per batch of CONSUMER_BATCH_SIZE records), fed with what its upstream
wrote to its outbox (body and stored headers, as the relay would send them):

    registration: RegistrationRequested -> eligibility: WorkerRegistered
    -> billing: EligibilityConfirmed -> registration: EligibilityConfirmed, ContributionInvoiced

and prints the process CPU per event of each step (median of --repeat runs) and their sum per
worker, to set beside the end-to-end CPU per worker of bench/pipeline.py. What is left out is what
Kafka adds: fetching and parsing records, committing offsets, and the outbox relay's claim, send and
mark. One process on one core, so other processes move it less than the end-to-end stage; it
still moves with this machine's speed, so compare runs made side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlmodel import col, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline  # bench/ is not a package

from lindung_billing.app import create_service as create_billing
from lindung_billing.settings import BillingSettings
from lindung_contracts import DayStarted, Event, cloudevent_headers, topics
from lindung_eligibility.app import create_service as create_eligibility
from lindung_eligibility.settings import EligibilitySettings
from lindung_registration.app import create_service as create_registration
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import Service
from lindung_runtime.logging import configure_logging
from lindung_runtime.outbox import OutboxMessage
from lindung_runtime.pipeline import Batch, deliveries_of
from lindung_runtime.service import service_process_gc

Records = list[ConsumerRecord[bytes, bytes]]


def record(
    topic: str, offset: int, key: str | None, body: str, headers: dict[str, str]
) -> ConsumerRecord[bytes, bytes]:
    """A record as aiokafka hands it to FastStream's batch subscriber."""
    key_bytes, value = (key.encode() if key else None), body.encode()
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key_bytes,
        value=value,
        checksum=None,
        serialized_key_size=len(key_bytes or b""),
        serialized_value_size=len(value),
        headers=tuple((k, v.encode()) for k, v in headers.items()),
    )


def published(events: list[Event], source: str | None = None) -> Records:
    """Records as bench/pipeline.py publishes them (CloudEvents headers, its source)."""
    return [
        record(
            e.TOPIC,
            i,
            e.key(),
            e.model_dump_json(),
            cloudevent_headers(e.ce_type(), source or pipeline.source_for(e.TOPIC)),
        )
        for i, e in enumerate(events)
    ]


async def emitted(service: Service, topic: str) -> Records:
    """What `service` queued in its outbox for `topic`, as its relay would send it."""
    async with service.database.session() as session:
        rows = (
            await session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.topic == topic)
                .order_by(col(OutboxMessage.id))
            )
        ).all()
    return [
        record(topic, i, row.key, row.payload, json.loads(row.headers))
        for i, row in enumerate(rows)
    ]


async def consume(service: Service, records: Records) -> float:
    """Process `records` in the service's batches; the process CPU seconds it took."""
    topic = records[0].topic
    pipeline = service.pipeline_for(topic)
    assert pipeline is not None, f"{service.name} does not consume {topic}"
    size = service.settings.consumer_batch_size
    batches = [deliveries_of(records[i : i + size]) for i in range(0, len(records), size)]
    started = time.process_time()
    for deliveries in batches:
        await pipeline(Batch(topic, deliveries))
    return time.process_time() - started


async def chain(n: int, work: Path) -> dict[str, float]:
    """One run of the chain on n workers: CPU microseconds per event, by step."""
    settings: dict[str, Any] = {"LINDUNG_DATA_DIR": str(work), "KAFKA_BOOTSTRAP_SERVERS": None}
    registration = create_registration(RegistrationSettings(**settings))
    eligibility = create_eligibility(EligibilitySettings(**settings))
    billing = create_billing(BillingSettings(**settings))
    for service in (registration, eligibility, billing):
        await service.prepare()
    service_process_gc()
    setup = published([pipeline.program(n), DayStarted(date=pipeline.START)])
    for service in (eligibility, billing):  # both consume the programme and the business day
        for one in setup:
            await consume(service, [one])
    await consume(registration, setup[:1])  # registers only for a published programme

    seconds: dict[str, float] = {}

    async def step(label: str, service: Service, records: Records) -> None:
        if len(records) != n:
            raise RuntimeError(f"{label}: {len(records)} records for {n} workers")
        seconds[label] = await consume(service, records)

    requests = published([pipeline.registration_request(i) for i in range(n)])
    await step("registration: RegistrationRequested", registration, requests)
    registered = await emitted(registration, topics.WORKER_REGISTERED)
    await step("eligibility: WorkerRegistered", eligibility, registered)
    confirmed = await emitted(eligibility, topics.ELIGIBILITY_CONFIRMED)
    await step("billing: EligibilityConfirmed", billing, confirmed)
    invoiced = await emitted(billing, topics.CONTRIBUTION_INVOICED)
    await step("registration: EligibilityConfirmed", registration, confirmed)
    await step("registration: ContributionInvoiced", registration, invoiced)
    for service in (registration, eligibility, billing):
        await service.database.dispose()
    return {label: s * 1e6 / n for label, s in seconds.items()}


def main(n: int, repeat: int) -> None:
    configure_logging("bench", "WARNING", "console", stream=sys.stderr)
    runs = []
    for i in range(repeat):
        with tempfile.TemporaryDirectory(prefix=f"lindung-handler-cpu-{i}-") as work:
            runs.append(asyncio.run(chain(n, Path(work))))
    print(f"CPU per handled event, N = {n:,}, median of {repeat} run(s), Kafka left out:")
    total = 0.0
    for label in runs[0]:
        median = statistics.median(run[label] for run in runs)
        spread = ", ".join(f"{run[label]:.0f}" for run in runs)
        total += median
        print(f"  {label:38s} {median:6.0f} us  (runs: {spread})")
    print(f"  {'per worker, the five together':38s} {total:6.0f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="workers per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is shown")
    args = parser.parse_args()
    main(args.n, args.repeat)
