"""The README's performance table is the one `bench/pipeline.py --markdown` prints from the
committed `bench/results.json`: a re-run of the bench that is not copied into the README fails."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_shows_the_committed_bench_results() -> None:
    spec = importlib.util.spec_from_file_location("bench_pipeline", ROOT / "bench" / "pipeline.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    table = bench.markdown_table(results)
    assert table.count("\n") > 8
    assert table in (ROOT / "README.md").read_text()
