"""bench/README.md's pipeline table is the one `bench/pipeline.py --markdown` prints from the
committed `bench/results.json`, and the README's Performance section quotes that run's headline:
a re-run of the bench not copied into both fails."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_readme_shows_the_committed_bench_results() -> None:
    spec = importlib.util.spec_from_file_location("bench_pipeline", ROOT / "bench" / "pipeline.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    table = bench.markdown_table(results)
    assert table.count("\n") > 8
    assert table in (ROOT / "bench" / "README.md").read_text(), (
        "bench/README.md lacks the table of bench/results.json; paste in the output of "
        "`.venv/bin/python bench/pipeline.py --markdown`:\n" + table
    )


def test_readme_quotes_the_committed_headline() -> None:
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    largest = max(results["end_to_end"], key=lambda run: run["n"])
    floor = results["floor"]
    readme = (ROOT / "README.md").read_text()
    assert "## Performance" in readme
    section = readme.split("## Performance", 1)[1].split("\n## ", 1)[0]
    for figure in (
        f"{largest['workers_per_s']:,.0f} workers/s",
        f"N = {largest['n']:,}",
        f"{floor['workers_per_s']:,.0f} workers/s",
        f"ratio of **{largest['workers_per_s'] / floor['workers_per_s']:.2f}**",
    ):
        assert figure in section, f"README.md's Performance section lacks {figure!r}"
