"""Scale-out on PostgreSQL: each service as one instance, then as two in one consumer group.

    eval "$(LINDUNG_PG_PORT=55471 LINDUNG_PG_DATA=/tmp/pg-bench .ci/postgres.sh start)"
    .venv/bin/python bench/scale_out.py --n 20000    # the server of $LINDUNG_TEST_POSTGRES_URL
    LINDUNG_PG_DATA=/tmp/pg-bench .ci/postgres.sh stop

For each service (bench/pipeline.py's CASES: its input topic, the events it needs first), in one
run: a fresh embedded broker (4 partitions per topic) and a fresh PostgreSQL database, migrated
once; then 1 or 2 `lindung service NAME` processes sharing that database, started and joined
(/readyz) before the n input events are published, so start-up and the group join are neither
timed nor charged. Reported: sustained events/s (pipeline.wait_for_consumed), the ratio of two
instances to one, which partitions each instance held (bench/scale_out_hook/) and how many
events it processed (/metrics), and the CPU per event of the service processes, the broker and
PostgreSQL's processes (backends that exit before the end are missed: the pools keep theirs),
from the publication of the inputs until every output is published (the outbox drained).
Two processes on a 2-core machine share those cores with the broker and PostgreSQL, so the
ratio can be below 1: it is reported as measured. Prints a table; writes nothing to the repo.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline  # bench/ is not a package

from lindung_runtime.embedded import EmbeddedKafka, free_port
from lindung_runtime.kafka import ensure_topics

HOOK = Path(__file__).resolve().parent / "scale_out_hook"
PARTITIONS = 4


def postgres_cpu() -> dict[int, float]:
    """CPU seconds so far of every PostgreSQL process on this machine (server and backends)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found[int(entry.name)] = pipeline.cpu_seconds(int(entry.name))
            except OSError:  # gone meanwhile
                continue
    return found


async def admin(admin_url: str, statement: str) -> None:
    connection = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def fresh_database(admin_url: str) -> str:
    """A new, empty database on the server of `admin_url`; returns its SQLAlchemy URL."""
    name = f"lindung_bench_{uuid.uuid4().hex[:10]}"
    await admin(admin_url, f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


async def wait_outbox_drained(database_url: str, timeout: float = 300) -> None:
    """Until the instances' relays have published every event the run produced: the CPU per
    event then includes sending the outputs, not only consuming the inputs."""
    connection = await asyncpg.connect(
        database_url.replace("postgresql+asyncpg://", "postgresql://")
    )
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        query = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        while await connection.fetchval(query):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("outbox not drained")
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def wait_ready(port: int, process: asyncio.subprocess.Process, timeout: float = 120) -> None:
    """Until the instance's /readyz answers 200: its subscribers have started, which waits
    until its consumer groups have assigned it partitions."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(timeout=5.0) as http:
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"an instance exited with {process.returncode} at start-up")
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"instance on admin port {port} not ready")
            await asyncio.sleep(0.2)


def partitions_held(assignments: Path, pid: int, topic: str) -> list[int]:
    """The partitions of `topic` the process held last (its consumer of `topic`)."""
    path = assignments / f"{pid}.jsonl"
    latest: dict[int, list[int]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        entry = json.loads(line)
        if topic in entry["topics"]:
            latest[entry["consumer"]] = [p for t, p in entry["partitions"] if t == topic]
    return sorted(p for held in latest.values() for p in held)


async def run(
    case: pipeline.ServiceCase, instances: int, n: int, postgres: str, work: Path
) -> dict[str, Any]:
    """The service as `instances` processes on a fresh broker and database; see the docstring."""
    label = f"{case.name}-x{instances}"
    broker = EmbeddedKafka(work / f"{label}-broker.log")
    bootstrap = await broker.start()
    assignments = work / f"{label}-assignments"
    assignments.mkdir()
    processes: list[asyncio.subprocess.Process] = []
    database = ""
    try:
        await ensure_topics(bootstrap, None, PARTITIONS)
        await pipeline.publish(bootstrap, case.setup(n))
        database = await fresh_database(postgres)
        env = dict(
            os.environ,
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            LINDUNG_DATA_DIR=str(work / label),
            LOG_LEVEL="WARNING",
            DATABASE_MIGRATE_ON_START="false",
            SMTP_HOST="127.0.0.1",  # nobody listens: a complete digest is postponed, not mailed
            SMTP_PORT=str(free_port()),
            SMTP_SECURITY="none",
            LINDUNG_BENCH_ASSIGNMENTS=str(assignments),
            PYTHONPATH=os.pathsep.join([str(HOOK), *filter(None, [os.environ.get("PYTHONPATH")])]),
            **{f"{case.name.upper()}_DATABASE_URL": database},
        )
        # Migrate once, then start the instances, as production does (a Job, then the replicas).
        migrate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lindung_cli", "migrate", case.name, env=env
        )
        if await migrate.wait() != 0:
            raise RuntimeError(f"lindung migrate {case.name} failed")
        ports = [free_port() for _ in range(instances)]
        for i, port in enumerate(ports):
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "lindung_cli",
                    "service",
                    case.name,
                    env=dict(env, ADMIN_PORT=str(port), HTTP_PORT=str(free_port())),
                    stdout=(work / f"{label}-{i}.log").open("wb"),
                    stderr=asyncio.subprocess.STDOUT,
                )
            )
        for port, process in zip(ports, processes, strict=True):
            await wait_ready(port, process)
        assert broker.process is not None
        pids = {f"instance {i + 1}": p.pid for i, p in enumerate(processes)}
        pids["broker"] = broker.process.pid
        cpu_before = {name: pipeline.cpu_seconds(pid) for name, pid in pids.items()}
        pg_before = postgres_cpu()

        await pipeline.publish(bootstrap, case.inputs(n))
        group = f"lindung-{case.name}.{case.input_topic}"
        rate = await pipeline.wait_for_consumed(bootstrap, group, case.input_topic, n, 900)
        await wait_outbox_drained(database)

        cpu = pipeline.cpu_ms_per_worker(pids, cpu_before, n)
        pg_after = postgres_cpu()
        cpu["postgres"] = round(
            sum(s - pg_before.get(pid, 0.0) for pid, s in pg_after.items()) * 1000 / n, 3
        )
        processed = []
        async with httpx.AsyncClient() as http:
            for port in ports:
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                processed.append(int(sum(pipeline._samples(text, case.input_topic))))
        return {
            "events_per_s": rate,
            "partitions": [
                partitions_held(assignments, p.pid, case.input_topic) for p in processes
            ],
            "processed": processed,
            "cpu_ms_per_event": cpu,
        }
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 30)
        broker.stop()
        if database:
            name = database.rsplit("/", 1)[1]
            await admin(postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cores_busy(figures: dict[str, Any]) -> float:
    """The rate times the total CPU per event: how much of the machine's cores the run used."""
    return float(figures["events_per_s"] * sum(figures["cpu_ms_per_event"].values()) / 1000)


def cpu_text(figures: dict[str, Any]) -> str:
    per = figures["cpu_ms_per_event"]
    service = sum(v for k, v in per.items() if k.startswith("instance"))
    return f"service {service:.2f}, broker {per['broker']:.2f}, PostgreSQL {per['postgres']:.2f}"


def table(n: int, results: dict[str, dict[int, dict[str, Any]]]) -> str:
    """The measurements as a markdown table (bench/README.md keeps them)."""
    lines = [
        f"| service (N = {n:,}) | 1 instance | 2 instances | ratio | partitions held "
        "(2 instances) | events processed | CPU ms per event: 1 instance | 2 instances "
        "| cores busy: 1 → 2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by in results.items():
        one, two = by[1], by[2]
        lines.append(
            f"| {name} | {one['events_per_s']:,.0f}/s | {two['events_per_s']:,.0f}/s "
            f"| {two['events_per_s'] / one['events_per_s']:.2f} "
            f"| {' / '.join(','.join(map(str, p)) or '-' for p in two['partitions'])} "
            f"| {' + '.join(f'{v:,}' for v in two['processed'])} | {cpu_text(one)} "
            f"| {cpu_text(two)} | {cores_busy(one):.2f} → {cores_busy(two):.2f} |"
        )
    return "\n".join(lines)


async def main(n: int, postgres: str, services: list[str]) -> None:
    results: dict[str, dict[int, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="lindung-scale-out-") as work:
        for case in pipeline.CASES:
            if case.name not in services:
                continue
            for instances in (1, 2):
                figures = await run(case, instances, n, postgres, Path(work))
                results.setdefault(case.name, {})[instances] = figures
                print(f"{case.name} x{instances}: {json.dumps(figures)}", flush=True)
    print(table(n, results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="input events per run")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("LINDUNG_TEST_POSTGRES_URL"),
        help="admin URL of a PostgreSQL server (default: $LINDUNG_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--services", nargs="+", default=[c.name for c in pipeline.CASES])
    arguments = parser.parse_args()
    if not arguments.postgres:
        parser.error("--postgres (or LINDUNG_TEST_POSTGRES_URL) is required")
    asyncio.run(main(arguments.n, arguments.postgres, arguments.services))
