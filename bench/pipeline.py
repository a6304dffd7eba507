"""Lindung pipeline benchmark: the raw broker, each service alone, and the whole pipeline.

    .venv/bin/python bench/pipeline.py                 # N = 10,000 and 100,000 (about 20 min)
    .venv/bin/python bench/pipeline.py --sizes 10000   # quicker

Everything runs on this machine in one run: the embedded broker (Tansu, memory storage), each
service as its own process with its own SQLite file (as `lindung up` runs them), and the stack
floor: the same registrations through three bare hops (bench/floor_hop.py) that do only what the
libraries must. Figures are ratios against the raw broker measured in the same run, so they
travel between machines better than absolute rates. Prints a table and writes bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table

from lindung_cli.stack import Stack, StackSettings
from lindung_contracts import (
    CoverageExpiring,
    DayStarted,
    EligibilityConfirmed,
    Event,
    ProgramPublished,
    RegistrationRequested,
    WorkerRegistered,
    topics,
)
from lindung_contracts.access import trusted_source
from lindung_runtime.embedded import EmbeddedKafka, free_port
from lindung_runtime.kafka import EventClient, GroupOffsets, TopicReader, ensure_topics

ROOT = Path(__file__).resolve().parent
PROGRAM = "bench-2025q4"
START = date(2025, 10, 1)
END = date(2025, 12, 31)


#: The CloudEvents source the bench publishes each topic from: one its consumers trust, or they
#: would dead-letter it as untrusted_source.
source_for = partial(trusted_source, tag="bench")


def bench_client(bootstrap: str) -> EventClient:
    return EventClient(bootstrap, source=source_for)


console = Console()


# --- workload -----------------------------------------------------------------------------------


def program(quota: int) -> ProgramPublished:
    return ProgramPublished(
        program_id=PROGRAM,
        name="Benchmark",
        sponsor="Pemerintah Kabupaten Sumba Barat Daya",
        region_code="5318",
        quota=quota,
        coverage_start=START,
        coverage_end=END,
        staff_emails=["bench@example.go.id"],
    )


@dataclass(frozen=True)
class Person:
    nik: str
    born: date
    gender: str
    district: str


def person(i: int) -> Person:
    """A distinct valid NIK for every i < 11 * 9,999 * 3,000 (region, birth date, serial)."""
    district = f"{i % 11 + 1:02d}"
    serial = (i // 11) % 9999 + 1
    born = date(1970, 1, 1) + timedelta(days=(i // (11 * 9999)) % 3000)
    gender = "F" if i % 2 else "M"
    day = born.day + (40 if gender == "F" else 0)
    nik = f"5318{district}{day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"
    return Person(nik, born, gender, district)


def registration_request(i: int) -> RegistrationRequested:
    p = person(i)
    return RegistrationRequested(
        program_id=PROGRAM,
        nik=p.nik,
        full_name=f"Pekerja {i}",
        birth_date=p.born.strftime("%d/%m/%Y"),
        gender="L" if p.gender == "M" else "P",
        occupation="Petani",
        village=f"Desa {i % 173}",
        district=f"Kecamatan {p.district}",
        phone="0812" + f"{i % 100_000_000:08d}" if i % 3 == 0 else None,
    )


def worker_registered(i: int) -> WorkerRegistered:
    p = person(i)
    return WorkerRegistered(
        worker_id=f"w-{i}",
        program_id=PROGRAM,
        nik=p.nik,
        full_name=f"Pekerja {i}",
        birth_date=p.born,
        gender=p.gender,  # type: ignore[arg-type]
        village=f"Desa {i % 173}",
        district=f"Kecamatan {p.district}",
        registered_at=datetime(2025, 9, 30, tzinfo=UTC),
    )


def eligibility_confirmed(i: int) -> EligibilityConfirmed:
    p = person(i)
    return EligibilityConfirmed(
        worker_id=f"w-{i}",
        program_id=PROGRAM,
        nik=p.nik,
        coverage_start=START,
        coverage_end=END,
        decided_at=datetime(2025, 10, 1, tzinfo=UTC),
    )


def coverage_expiring(i: int, n: int) -> CoverageExpiring:
    p = person(i)
    return CoverageExpiring(
        worker_id=f"w-{i}",
        program_id=PROGRAM,
        nik=p.nik,
        coverage_end=END,
        days_left=30,
        alert_id=f"{PROGRAM}/30",
        alert_size=n,
    )


# --- measurement helpers ------------------------------------------------------------------------


async def publish(bootstrap: str, events: Sequence[Event]) -> float:
    """Publish without waiting on each send (as the outbox relay does); returns seconds."""
    started = time.perf_counter()
    async with bench_client(bootstrap) as client:
        for start in range(0, len(events), 5000):
            await client.publish_many(events[start : start + 5000])
    return time.perf_counter() - started


async def wait_for_count(
    bootstrap: str, topic: str, n: int, timeout: float, poll: float = 0.25
) -> tuple[float, float]:
    """(when the first record appeared, when the n-th did), as perf_counter times. Records are
    read and counted (end minus beginning offsets is not a record count on every broker)."""
    first = None
    count = 0
    deadline = time.perf_counter() + timeout
    async with TopicReader(bootstrap, [topic]) as reader:
        while True:
            count += len(await reader.read_new())
            now = time.perf_counter()
            if count and first is None:
                first = now
            if count >= n:
                return first or now, now
            if now > deadline:
                raise TimeoutError(f"{topic}: {count:,} of {n:,} after {timeout:.0f}s")
            await asyncio.sleep(poll)


async def wait_for_consumed(
    bootstrap: str, group: str, topic: str, n: int, timeout: float
) -> float:
    """Sustained records/s of a consumer group through the n records a fresh topic holds: from
    its first offset commit to the commit past the n-th, the records of that first commit left
    out (so neither start-up nor the group join is counted).

    Counted from committed offsets alone (a fresh topic written by one producer holds offsets
    0..n-1, so the commits sum to the records consumed). End offsets are not used: Tansu reports
    the last offset where Kafka reports the next one, which made the group look started before
    it had joined. One `GroupOffsets` for the whole wait, polled every 0.1 s."""
    first: tuple[float, int] | None = None
    deadline = time.perf_counter() + timeout
    async with GroupOffsets(bootstrap) as offsets:
        while True:
            consumed = sum((await offsets.committed(group, [topic])).values())
            now = time.perf_counter()
            if consumed and first is None:
                first = (now, consumed)
            if consumed >= n:
                assert first is not None
                started, already = first
                if consumed == already:  # all in one commit: too few records to measure a rate
                    raise RuntimeError(f"{group}: {n:,} records went in one batch; use a larger n")
                return (consumed - already) / (now - started)
            if now > deadline:
                raise TimeoutError(f"{group}: {consumed:,} of {n:,} consumed after {timeout:.0f}s")
            await asyncio.sleep(0.1)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set size so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ms_per_worker(pids: dict[str, int], before: dict[str, float], n: int) -> dict[str, float]:
    """CPU each process used since `before` (its `cpu_seconds`), in ms per worker: where the two
    cores went (the sum bounds throughput). The pipeline and the stack floor both use it."""
    return {
        name: round((cpu_seconds(pid) - before[name]) * 1000 / n, 3) for name, pid in pids.items()
    }


def cpu_text(cpu_ms: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.2f}" for name, ms in cpu_ms.items())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the measurements ---------------------------------------------------------------------------


async def raw_broker(bootstrap: str, n: int, size: int) -> dict[str, float]:
    """The ceiling: aiokafka producing (acks=all, no wait per send) and consuming n messages of
    `size` bytes, no processing at all."""
    await ensure_topics(bootstrap, ["bench.raw"], 4)
    payload = b"x" * size
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    pending = [await producer.send("bench.raw", payload, key=str(i).encode()) for i in range(n)]
    await asyncio.gather(*pending)
    produce_s = time.perf_counter() - started
    await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    await consumer.topics()
    parts = [TopicPartition("bench.raw", p) for p in consumer.partitions_for_topic("bench.raw")]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    started = time.perf_counter()
    got = 0
    while got < n:
        batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
        got += sum(len(m) for m in batch.values())
    consume_s = time.perf_counter() - started
    await consumer.stop()
    return {"produce_per_s": n / produce_s, "consume_per_s": n / consume_s}


@dataclass
class ServiceCase:
    name: str
    input_topic: str
    setup: Callable[[int], list[Event]]  # what must be there before the input (programme, day)
    inputs: Callable[[int], list[Event]]


CASES = [
    ServiceCase(
        "registration",
        topics.REGISTRATION_REQUESTED,
        lambda n: [program(n)],  # registration checks requests against the programme
        lambda n: [registration_request(i) for i in range(n)],
    ),
    ServiceCase(
        "eligibility",
        topics.WORKER_REGISTERED,
        lambda n: [program(n), DayStarted(date=START)],
        lambda n: [worker_registered(i) for i in range(n)],
    ),
    ServiceCase(
        "billing",
        topics.ELIGIBILITY_CONFIRMED,
        lambda n: [program(n), DayStarted(date=START)],
        lambda n: [eligibility_confirmed(i) for i in range(n)],
    ),
    ServiceCase(
        "notification",
        topics.COVERAGE_EXPIRING,
        lambda n: [program(n)],
        lambda n: [coverage_expiring(i, n) for i in range(n)],
    ),
]


async def one_service(case: ServiceCase, n: int, work: Path) -> dict[str, float]:
    """The service alone, its input topic already holding n events: sustained events/s from its
    first commit to its last (the consumer-group join is left out)."""
    broker = EmbeddedKafka(work / f"{case.name}-broker.log")
    bootstrap = await broker.start()
    try:
        await ensure_topics(bootstrap, None, 4)
        await publish(bootstrap, case.setup(n))
        await publish(bootstrap, case.inputs(n))
        settings = StackSettings(
            LINDUNG_DATA_DIR=str(work / case.name),
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            LOG_LEVEL="WARNING",
            REGISTRATION_HTTP_PORT=0,
        )
        async with Stack(settings, services=(case.name,)) as stack:
            rate = await wait_for_consumed(
                bootstrap, f"lindung-{case.name}.{case.input_topic}", case.input_topic, n, 600
            )
            pid = stack.children[0].process.pid  # type: ignore[union-attr]
            rss = peak_rss_mb(pid)
        return {"events_per_s": rate, "peak_rss_mb": rss}
    finally:
        broker.stop()


async def two_eligibility_instances(n: int, work: Path) -> dict[str, Any]:
    """Two eligibility processes in one consumer group, sharing their service's database, on n
    registered workers with seats for half of them: how the partitions split, how the events
    split, and whether the quota held exactly (EligibilityConfirmed counted on the topic)."""
    broker = EmbeddedKafka(work / "scale-broker.log")
    bootstrap = await broker.start()
    quota = n // 2
    processes: list[subprocess.Popen[bytes]] = []
    try:
        await ensure_topics(bootstrap, None, 4)
        await publish(bootstrap, [program(quota), DayStarted(date=START)])
        await publish(bootstrap, [worker_registered(i) for i in range(n)])
        ports = [free_port(), free_port()]
        shared = dict(
            os.environ,
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            LINDUNG_DATA_DIR=str(work / "scale"),
            LOG_LEVEL="WARNING",
            DATABASE_MIGRATE_ON_START="false",
        )
        # Migrate once, then start both, as production does (a Job, then the replicas).
        migrate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lindung_cli", "migrate", "eligibility", env=shared
        )
        if await migrate.wait() != 0:
            raise RuntimeError("lindung migrate eligibility failed")
        for i, port in enumerate(ports):
            env = dict(shared, ADMIN_PORT=str(port))  # /metrics is on the admin port
            log = (work / f"scale-eligibility-{i}.log").open("wb")
            processes.append(
                subprocess.Popen(  # noqa: ASYNC220 - started, then polled through Kafka
                    [sys.executable, "-m", "lindung_cli", "service", "eligibility"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        group = f"lindung-eligibility.{topics.WORKER_REGISTERED}"
        rate = await wait_for_consumed(bootstrap, group, topics.WORKER_REGISTERED, n, 600)
        for i, process in enumerate(processes):
            if process.poll() is not None:
                log_tail = (work / f"scale-eligibility-{i}.log").read_text()[-2000:]
                raise RuntimeError(f"eligibility instance {i} exited:\n{log_tail}")
        per_instance = []
        async with httpx.AsyncClient() as http:
            for port in ports:
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                per_instance.append(int(sum(_samples(text, topics.WORKER_REGISTERED))))
        await wait_for_count(bootstrap, topics.ELIGIBILITY_REJECTED, n - quota, 120)
        await wait_for_count(bootstrap, topics.ELIGIBILITY_CONFIRMED, quota, 120)
        await asyncio.sleep(2)  # anything beyond the quota would show up by now
        confirmed = await distinct_workers(bootstrap, topics.ELIGIBILITY_CONFIRMED)
        return {
            "n": n,
            "quota": quota,
            "partitions": 4,
            "events_per_s": rate,
            "processed_per_instance": per_instance,
            "confirmed": confirmed,
            "quota_exact": confirmed == quota,
        }
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        broker.stop()


def _samples(metrics_text: str, topic: str) -> list[float]:
    """Values of lindung_events_consumed_total{outcome="processed"} for `topic`."""
    return [
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("lindung_events_consumed_total{")
        and f'topic="{topic}"' in line
        and 'outcome="processed"' in line
    ]


async def records_per_batch(stack: Stack) -> dict[str, float]:
    """Mean records per batch (one transaction each) of each service's busiest input topic so
    far, from its /metrics: how well batches filled under the run's load."""
    found: dict[str, float] = {}
    async with httpx.AsyncClient() as http:
        for child in stack.children:
            text = (await http.get(f"http://127.0.0.1:{child.admin_port}/metrics")).text
            records: dict[str, float] = {}
            batches: dict[str, float] = {}
            for line in text.splitlines():
                if line.startswith("lindung_events_consumed_total{"):
                    topic = line.split('topic="', 1)[1].split('"', 1)[0]
                    records[topic] = records.get(topic, 0.0) + float(line.rsplit(" ", 1)[1])
                elif line.startswith("lindung_batch_duration_seconds_count{"):
                    topic = line.split('topic="', 1)[1].split('"', 1)[0]
                    batches[topic] = float(line.rsplit(" ", 1)[1])
            if records:
                busiest = max(records, key=records.__getitem__)
                found[child.label] = round(records[busiest] / max(1.0, batches.get(busiest, 1)), 1)
    return found


async def distinct_workers(bootstrap: str, topic: str) -> int:
    """Workers with a record on the topic (a re-sent record, same event id, counts once)."""
    async with TopicReader(bootstrap, [topic]) as reader:
        return len({record.json()["worker_id"] for record in await reader.read_new()})


async def end_to_end(n: int, work: Path) -> dict[str, Any]:
    """All four services and the broker on this machine: n registrations published at once,
    until n ContributionInvoiced are on the topic."""
    broker = EmbeddedKafka(work / f"e2e-{n}-broker.log")
    bootstrap = await broker.start()
    try:
        settings = StackSettings(
            LINDUNG_DATA_DIR=str(work / f"e2e-{n}"),
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            LOG_LEVEL="WARNING",
            REGISTRATION_HTTP_PORT=0,
        )
        async with Stack(settings) as stack:
            await publish(bootstrap, [program(n), DayStarted(date=START)])
            requests = [registration_request(i) for i in range(n)]
            await stack.wait_ready()  # started, and every consumer group joined
            pids = {c.name: c.process.pid for c in stack.children if c.process}
            assert broker.process is not None
            pids["broker"] = broker.process.pid
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            started = time.perf_counter()
            await publish(bootstrap, requests)
            published = time.perf_counter() - started
            try:
                _, done = await wait_for_count(
                    bootstrap, topics.CONTRIBUTION_INVOICED, n, timeout=max(120, n / 50)
                )
            except TimeoutError:
                console.print(f"[red]stalled[/] (logs: {stack.logs})")
                raise
            elapsed = done - started
            rss = {c.name: peak_rss_mb(c.process.pid) for c in stack.children if c.process}
            cpu_ms = cpu_ms_per_worker(pids, cpu_before, n)
            batches = await records_per_batch(stack)
        return {
            "n": n,
            "seconds": elapsed,
            "workers_per_s": n / elapsed,
            "publish_seconds": published,
            "peak_rss_mb": rss,
            "cpu_ms_per_worker": cpu_ms,
            "records_per_batch": batches,
        }
    finally:
        broker.stop()


FLOOR_HOPS = (topics.REGISTRATION_REQUESTED, "bench.floor.1", "bench.floor.2", "bench.floor.3")


async def stack_floor(n: int, work: Path) -> dict[str, Any]:
    """The same n registrations through three bare hops (bench/floor_hop.py), one process each,
    as registration -> eligibility -> billing are: what this broker, FastStream, aiokafka and
    SQLite allow on this machine before any of Lindung's own work."""
    broker = EmbeddedKafka(work / f"floor-{n}-broker.log")
    bootstrap = await broker.start()
    hops: list[asyncio.subprocess.Process] = []
    try:
        await ensure_topics(bootstrap, FLOOR_HOPS, 4)
        for i, (source, sink) in enumerate(itertools.pairwise(FLOOR_HOPS)):
            database = str(work / f"floor-{n}-{i}.db")
            hops.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(ROOT / "floor_hop.py"),
                    bootstrap,
                    source,
                    sink,
                    database,
                    stdout=asyncio.subprocess.PIPE,
                )
            )
        requests = [registration_request(i) for i in range(n)]
        for hop in hops:  # each says so once its consumer group has assigned it partitions
            assert hop.stdout is not None
            line = await asyncio.wait_for(hop.stdout.readline(), timeout=90)
            if line.strip() != b"ready":
                raise RuntimeError(f"a floor hop did not start (exit code {hop.returncode})")
        pids = {f"hop {i + 1}": hop.pid for i, hop in enumerate(hops)}
        assert broker.process is not None
        pids["broker"] = broker.process.pid
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        await publish(bootstrap, requests)
        try:  # ~30 s for 100,000 here; a hop that died shows as a stall
            _, done = await wait_for_count(bootstrap, FLOOR_HOPS[-1], n, max(120, n / 500))
        except TimeoutError:
            console.print(f"[red]stalled[/]; hops' exit codes: {[h.returncode for h in hops]}")
            raise
        return {
            "n": n,
            "hops": len(hops),
            "seconds": done - started,
            "workers_per_s": n / (done - started),
            "peak_rss_mb": max(peak_rss_mb(hop.pid) for hop in hops),
            "cpu_ms_per_worker": cpu_ms_per_worker(pids, cpu_before, n),
        }
    finally:
        for hop in hops:
            if hop.returncode is None:
                hop.terminate()
        for hop in hops:
            await asyncio.wait_for(hop.wait(), 10)
        broker.stop()


async def latency(rate: float, seconds: float, work: Path) -> dict[str, float]:
    """RegistrationRequested → ContributionInvoiced at a steady offered load, per worker."""
    n = int(rate * seconds)
    broker = EmbeddedKafka(work / "latency-broker.log")
    bootstrap = await broker.start()
    try:
        settings = StackSettings(
            LINDUNG_DATA_DIR=str(work / "latency"),
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            LOG_LEVEL="WARNING",
            REGISTRATION_HTTP_PORT=0,
        )
        warm_up = 50
        async with Stack(settings):
            await publish(bootstrap, [program(n + warm_up), DayStarted(date=START)])
            # Steady state first: every consumer group joined and every path taken once (the
            # first records otherwise wait out group joins, ~5-10 s, and dominate the tail).
            await publish(bootstrap, [registration_request(n + i) for i in range(warm_up)])
            await wait_for_count(bootstrap, topics.CONTRIBUTION_INVOICED, warm_up, timeout=120)
            sent: dict[str, float] = {}
            seen: dict[str, float] = {}
            consumer = AIOKafkaConsumer(
                topics.CONTRIBUTION_INVOICED,
                bootstrap_servers=bootstrap,
                group_id=None,
                auto_offset_reset="earliest",
                # The embedded broker holds a fetch for its whole wait even when records arrive
                # meanwhile: at aiokafka's default (500 ms) the observer itself added up to that
                # to every figure. 5 ms keeps its own share small (since 2026-12-06).
                fetch_max_wait_ms=5,
            )
            await consumer.start()

            async def observe() -> None:
                while len(seen) < n + warm_up:
                    batch = await consumer.getmany(timeout_ms=100)
                    now = time.perf_counter()
                    for messages in batch.values():
                        for m in messages:
                            seen.setdefault(json.loads(m.value)["nik"], now)

            watcher = asyncio.create_task(observe())
            async with bench_client(bootstrap) as client:
                tick = 0.05
                per_tick = max(1, round(rate * tick))
                started = time.perf_counter()
                for start in range(0, n, per_tick):
                    chunk = [
                        registration_request(i) for i in range(start, min(n, start + per_tick))
                    ]
                    await client.publish_many(chunk)
                    now = time.perf_counter()
                    for request in chunk:
                        sent[request.nik] = now
                    target = started + (start + per_tick) / rate
                    await asyncio.sleep(max(0.0, target - time.perf_counter()))
            await asyncio.wait_for(watcher, timeout=300)
            await consumer.stop()
        values = [(seen[k] - sent[k]) * 1000 for k in sent if k in seen]
        return {
            "offered_per_s": rate,
            "workers": len(values),
            "p50_ms": percentile(values, 0.50),
            "p95_ms": percentile(values, 0.95),
            "p99_ms": percentile(values, 0.99),
            "mean_ms": statistics.fmean(values),
        }
    finally:
        broker.stop()


# --- main ---------------------------------------------------------------------------------------


async def main(sizes: list[int], service_n: int, latency_rate: float, latency_s: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="lindung-bench-"))
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": "python bench/pipeline.py " + " ".join(sys.argv[1:]),
    }
    try:
        broker = EmbeddedKafka(work / "raw-broker.log")
        bootstrap = await broker.start()
        size = len(registration_request(1).model_dump_json())
        try:
            results["raw_broker"] = {
                "message_bytes": size,
                **await raw_broker(bootstrap, 100_000, size),
            }
        finally:
            broker.stop()
        console.print(f"raw broker: {results['raw_broker']}")
        raw = results["raw_broker"]["consume_per_s"]

        results["services"] = {}
        for case in CASES:
            figures = await one_service(case, service_n, work)
            figures["ratio_to_raw_consume"] = figures["events_per_s"] / raw
            results["services"][case.name] = figures
            console.print(f"{case.name}: {figures}")
            save(results)

        results["scale_out"] = await two_eligibility_instances(service_n, work)
        console.print(f"eligibility x2: {results['scale_out']}")
        save(results)

        results["end_to_end"] = []
        for n in sizes:
            figures = await end_to_end(n, work)
            figures["ratio_to_raw_consume"] = figures["workers_per_s"] / raw
            results["end_to_end"].append(figures)
            console.print(f"end to end {n:,}: {figures}")
            save(results)

        results["floor"] = await stack_floor(max(sizes), work)
        results["floor"]["ratio_to_raw_consume"] = results["floor"]["workers_per_s"] / raw
        console.print(f"stack floor: {results['floor']}")
        save(results)

        results["latency"] = await latency(latency_rate, latency_s, work)
        console.print(f"latency: {results['latency']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save(results)
    console.print(render_table(results))
    console.print(f"Written to {ROOT / 'results.json'}")


def save(results: dict[str, Any]) -> None:
    """After every stage, so that an interrupted run still leaves what it measured."""
    (ROOT / "results.json").write_text(json.dumps(results, indent=2) + "\n")


COLUMNS = ("measure", "rate", "ratio to raw consume", "peak RSS")


def table_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The figures of a run as table rows: the terminal's table and the README's are these."""
    raw = results["raw_broker"]
    rows = [
        (
            f"raw broker produce ({raw['message_bytes']} B)",
            f"{raw['produce_per_s']:,.0f}/s",
            "",
            "",
        ),
        ("raw broker consume", f"{raw['consume_per_s']:,.0f}/s", "1", ""),
    ]
    for name, f in results["services"].items():
        rows.append(
            (
                f"{name} alone",
                f"{f['events_per_s']:,.0f} events/s",
                f"{f['ratio_to_raw_consume']:.4f}",
                f"{f['peak_rss_mb']:.0f} MB",
            )
        )
    scale = results["scale_out"]
    split = " + ".join(f"{v:,}" for v in scale["processed_per_instance"])
    rows.append(
        (
            f"eligibility, 2 instances in 1 group ({scale['partitions']} partitions)",
            f"{scale['events_per_s']:,.0f} events/s, split {split}; "
            f"{scale['confirmed']:,} confirmed for a quota of {scale['quota']:,}",
            f"{scale['events_per_s'] / raw['consume_per_s']:.4f}",
            "",
        )
    )
    for f in results["end_to_end"]:
        rss = ", ".join(f"{k} {v:.0f}" for k, v in f["peak_rss_mb"].items())
        rows.append(
            (
                f"end to end, N = {f['n']:,}",
                f"{f['workers_per_s']:,.0f} workers/s ({f['seconds']:,.0f} s); "
                f"CPU ms per worker: {cpu_text(f['cpu_ms_per_worker'])}",
                f"{f['ratio_to_raw_consume']:.4f}",
                f"{rss} MB",
            )
        )
    floor = results["floor"]
    rows.append(
        (
            f"stack floor: {floor['hops']} bare hops (bench/floor_hop.py), N = {floor['n']:,}",
            f"{floor['workers_per_s']:,.0f} workers/s ({floor['seconds']:,.0f} s); "
            f"CPU ms per worker: {cpu_text(floor['cpu_ms_per_worker'])}",
            f"{floor['ratio_to_raw_consume']:.4f}",
            f"{floor['peak_rss_mb']:.0f} MB (largest hop)",
        )
    )
    lat = results["latency"]
    rows.append(
        (
            f"latency RegistrationRequested → ContributionInvoiced at "
            f"{lat['offered_per_s']:,.0f} workers/s offered ({lat['workers']:,} workers)",
            f"p50 {lat['p50_ms']:,.0f} ms, p95 {lat['p95_ms']:,.0f} ms, "
            f"p99 {lat['p99_ms']:,.0f} ms",
            "",
            "",
        )
    )
    return rows


def render_table(results: dict[str, Any]) -> Table:
    table = Table(title=f"Lindung pipeline ({results['machine']['cpus']} CPUs, embedded broker)")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column != "measure" else "left")
    for row in table_rows(results):
        table.add_row(*row)
    return table


def markdown_table(results: dict[str, Any]) -> str:
    """bench/README.md's table, from a results.json."""
    lines = [f"| {' | '.join(COLUMNS)} |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in table_rows(results)]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--service-n", type=int, default=20_000, help="events per service run")
    parser.add_argument(
        "--latency-rate", type=float, default=150.0, help="offered workers/s (below capacity)"
    )
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument(
        "--markdown", action="store_true", help="print results.json as bench/README.md's table"
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown_table(json.loads((ROOT / "results.json").read_text())))
        sys.exit(0)
    asyncio.run(main(args.sizes, args.service_n, args.latency_rate, args.latency_seconds))
