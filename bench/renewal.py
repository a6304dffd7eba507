"""What a renewal costs: a programme's N workers carried into its next term, against the
first term's pipeline for the same N, measured in the same run on the same stack.

    .venv/bin/python bench/renewal.py --n 100000      # about 6 min here
    .venv/bin/python bench/renewal.py --n 20000

Term 1: N registrations published at once, until N ContributionInvoiced are on the topic (the
end-to-end stage of bench/pipeline.py). Then one `program.renewed` for the next term, until N
more ContributionInvoiced (term 2's lines) are: eligibility reads the term's confirmed workers,
decides them in one pass and writes N decisions and N EligibilityConfirmed; billing invoices
them in its usual batches. Reported: the events each phase produced, its seconds and CPU per
process, and the renewal's ratio to term 1 for both. Writes bench/renewal.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline  # bench/ is not a package: pipeline.py is found through sys.path

from lindung_cli.stack import Stack, StackSettings
from lindung_contracts import DayStarted, ProgramRenewed, topics
from lindung_runtime.embedded import EmbeddedKafka

TERM_2 = (date(2026, 1, 1), date(2026, 3, 31))


def cpu_now(pids: dict[str, int]) -> dict[str, float]:
    return {name: pipeline.cpu_seconds(pid) for name, pid in pids.items()}


def cpu_spent(pids: dict[str, int], before: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process used since `before`."""
    return {name: round(pipeline.cpu_seconds(pid) - before[name], 2) for name, pid in pids.items()}


async def main(n: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lindung-renewal-"))
    broker = EmbeddedKafka(work / "broker.log")
    bootstrap = await broker.start()
    try:
        settings = StackSettings(
            LINDUNG_DATA_DIR=str(work / "stack"),
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            LOG_LEVEL="WARNING",
            REGISTRATION_HTTP_PORT=0,
        )
        async with Stack(settings) as stack:
            await pipeline.publish(
                bootstrap, [pipeline.program(n), DayStarted(date=pipeline.START)]
            )
            requests = [pipeline.registration_request(i) for i in range(n)]
            await stack.wait_ready()
            pids = {c.name: c.process.pid for c in stack.children if c.process}
            assert broker.process is not None
            pids["broker"] = broker.process.pid
            timeout = max(180, n / 40)

            before = cpu_now(pids)
            started = time.perf_counter()
            await pipeline.publish(bootstrap, requests)
            _, done = await pipeline.wait_for_count(
                bootstrap, topics.CONTRIBUTION_INVOICED, n, timeout
            )
            term_1 = {"seconds": round(done - started, 2), "cpu_seconds": cpu_spent(pids, before)}
            # RegistrationRequested, WorkerRegistered, EligibilityConfirmed, ContributionInvoiced
            term_1["events"] = 4 * n

            await pipeline.publish(bootstrap, [DayStarted(date=date(2025, 12, 15))])
            await asyncio.sleep(2)  # let the day settle: the renewal is decided on it
            renewal = ProgramRenewed(
                program_id=pipeline.PROGRAM,
                term_start=TERM_2[0],
                term_end=TERM_2[1],
                renewed_at=datetime(2025, 12, 15, 8, 0, tzinfo=UTC),
            )
            before = cpu_now(pids)
            started = time.perf_counter()
            await pipeline.publish(bootstrap, [renewal])
            _, done = await pipeline.wait_for_count(
                bootstrap, topics.CONTRIBUTION_INVOICED, 2 * n, timeout
            )
            renewed = {"seconds": round(done - started, 2), "cpu_seconds": cpu_spent(pids, before)}
            # ProgramRenewed, then EligibilityConfirmed and ContributionInvoiced per worker
            renewed["events"] = 1 + 2 * n
            carried = await pipeline.distinct_workers(bootstrap, topics.ELIGIBILITY_CONFIRMED)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    cpu_1, cpu_2 = sum(term_1["cpu_seconds"].values()), sum(renewed["cpu_seconds"].values())
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/renewal.py " + " ".join(sys.argv[1:]),
        "n": n,
        "workers_confirmed": carried,
        "term_1": term_1,
        "renewal": renewed,
        "renewal_to_term_1": {
            "seconds": round(renewed["seconds"] / term_1["seconds"], 3),
            "cpu": round(cpu_2 / cpu_1, 3),
        },
        "renewal_cpu_ms_per_worker": round(cpu_2 * 1000 / n, 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="workers in the programme")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("renewal.json"))
    args = parser.parse_args()
    figures = asyncio.run(main(args.n))
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures), flush=True)
