"""Where each service's SQLite time goes during the end-to-end run of bench/pipeline.py.

    .venv/bin/python bench/sqlite_cpu.py [--n 100000] [--top 6]

Runs the same end-to-end stage (all four services and the broker, N registrations until N
ContributionInvoiced) with bench/sqlite_cpu_hook/ on the services' PYTHONPATH, which times every
call on aiosqlite's SQLite thread in that thread's own CPU time, and prints, per service, the
SQLite CPU per worker and the statements that cost most. Thread CPU time is not what other
processes do to the wall clock, so two commits compare well here even when end-to-end rates on a
shared 2-core machine drift more than the change between them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline  # bench/ is not a package

HOOK = Path(__file__).resolve().parent / "sqlite_cpu_hook"


def service_of(argv: list[str]) -> str | None:
    """`lindung service NAME` processes only (not the bench's own)."""
    return argv[argv.index("service") + 1] if "service" in argv[:-1] else None


async def main(n: int, top: int) -> None:
    """The run in a scratch folder removed after it (the stack's SQLite files, logs, statements)."""
    with tempfile.TemporaryDirectory(prefix="lindung-sqlite-cpu-") as work:
        await measure(n, top, Path(work))


async def measure(n: int, top: int, work: Path) -> None:
    out = work / "statements"
    out.mkdir()
    os.environ["LINDUNG_BENCH_SQLITE_CPU_DIR"] = str(out)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(HOOK), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    figures = await pipeline.end_to_end(n, work)  # returns once the services have exited
    cpu = figures["cpu_ms_per_worker"]
    rate = figures["workers_per_s"]
    print(f"end to end, N = {n:,}: {rate:,.0f} workers/s; {pipeline.cpu_text(cpu)}")
    for path in sorted(out.glob("*.json")):
        data = json.loads(path.read_text())
        service = service_of(data["argv"])
        statements = data["statements"]
        total = sum(seconds for _, _, seconds in statements.values())
        if service is None or total == 0:
            continue
        print(
            f"\n{service}: SQLite thread {total * 1000 / n:.3f} ms CPU per worker "
            f"(process {cpu.get(service, 0):.2f})"
        )
        ranked = sorted(statements.items(), key=lambda item: -item[1][2])[:top]
        for statement, (calls, rows, seconds) in ranked:
            share = f"{seconds * 1000 / n:6.3f} ms  {int(calls):>6,} calls {int(rows):>8,} rows"
            print(f"  {share}  {statement}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=6)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.n, arguments.top))
