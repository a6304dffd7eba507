"""Chaos scenarios: the real services as separate processes against a real broker process, with
faults injected from the test (kill -9, broker outage, hostile input, SMTP down, a locked
database). Each prints one line of figures; run them with `pytest -m chaos -s` (or see them in
the captured output)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def show(capsys: pytest.CaptureFixture[str]) -> Iterator[object]:
    """Print a figures line to the terminal even when pytest captures output."""

    def emit(line: str) -> None:
        with capsys.disabled():
            print(f"\n{line}", flush=True)

    yield emit


@pytest.fixture(autouse=True)
def quick_services(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings every service process inherits (the supervisor passes its environment on)."""
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")  # one INFO line per event costs throughput
    monkeypatch.setenv("OUTBOX_POLL_SECONDS", "0.2")
    monkeypatch.setenv("DIGEST_POLL_SECONDS", "0.5")
