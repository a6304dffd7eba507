"""One stage of bench/pipeline.py, for comparing two builds side by side (A/B, alternated).

    .venv/bin/python bench/latency_ab.py latency --label after      # 150 workers/s for 20 s
    .venv/bin/python bench/latency_ab.py throughput --label after   # N = 20,000 and its floor

Prints one JSON line: `latency` is pipeline.py's latency stage (RegistrationRequested →
ContributionInvoiced per worker at a steady offered rate, after a warm-up); `throughput` is its
end-to-end stage and the stack floor (bench/floor_hop.py) at the same N, one right after the
other, with their ratio (the figure to compare across runs on this drifting machine) and the
mean records per batch of each service. The build under test is whichever `lindung_runtime`
Python imports: run the other side with `PYTHONPATH` pointing at a copy of it (bench/README.md,
2026-12-06, shows how). Writes nothing to bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline  # bench/ is not a package: pipeline.py is found through sys.path

import lindung_runtime


async def main(stage: str, label: str, rate: float, seconds: float, n: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lindung-ab-"))
    result: dict[str, Any] = {
        "stage": stage,
        "label": label,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "runtime": str(Path(lindung_runtime.__file__).parent),
    }
    try:
        if stage == "latency":
            result.update(await pipeline.latency(rate, seconds, work))
        else:
            e2e = await pipeline.end_to_end(n, work)
            floor = await pipeline.stack_floor(n, work)
            result.update(
                n=n,
                workers_per_s=round(e2e["workers_per_s"], 1),
                floor_workers_per_s=round(floor["workers_per_s"], 1),
                ratio_to_floor=round(e2e["workers_per_s"] / floor["workers_per_s"], 4),
                cpu_ms_per_worker=e2e["cpu_ms_per_worker"],
                records_per_batch=e2e["records_per_batch"],
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("stage", choices=["latency", "throughput"])
    parser.add_argument("--label", default="", help="named in the output line")
    parser.add_argument("--rate", type=float, default=150.0, help="latency: offered workers/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="latency: how long")
    parser.add_argument("--n", type=int, default=20_000, help="throughput: workers")
    args = parser.parse_args()
    figures = asyncio.run(main(args.stage, args.label, args.rate, args.seconds, args.n))
    print(json.dumps(figures), flush=True)
