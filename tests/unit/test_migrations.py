"""Each service's Alembic history builds exactly the schema its models describe, on SQLite and
(when the run has one) on PostgreSQL; and applying it twice changes nothing."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from lindung_runtime.migrations import differences, upgrade
from tests.conftest import POSTGRES_URL, create_databases, database_url, drop_databases

SERVICES = ("registration", "eligibility", "billing", "notification")


def tables_of(service: str) -> list[type]:
    return importlib.import_module(f"lindung_{service}.db").TABLES  # type: ignore[no-any-return]


async def schema_state(url: str, service: str) -> tuple[list[object], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(lambda c: differences(c, tables_of(service)))
            names = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    return diff, names


@pytest.mark.parametrize("service", SERVICES)
def test_history_matches_the_models_on_sqlite(service: str, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / service}.db"
    upgrade(service, url)
    upgrade(service, url)  # idempotent: already at head
    diff, names = asyncio.run(schema_state(url, service))
    assert diff == []
    assert {"outbox", "inbox", "alembic_version"} <= names


@pytest.mark.skipif(not POSTGRES_URL, reason="LINDUNG_TEST_POSTGRES_URL not set (.ci/run sets it)")
@pytest.mark.parametrize("service", SERVICES)
def test_history_matches_the_models_on_postgresql(service: str) -> None:
    name = f"lindung_mig_{uuid.uuid4().hex[:8]}_{service}"
    asyncio.run(create_databases([name]))
    try:
        upgrade(service, database_url(name))
        diff, names = asyncio.run(schema_state(database_url(name), service))
        assert diff == []
        assert {"outbox", "inbox", "alembic_version"} <= names
    finally:
        asyncio.run(drop_databases([name]))


def test_migrate_creates_a_missing_data_directory(tmp_path: Path) -> None:
    """`lindung migrate` before any service ever ran (a fresh LINDUNG_DATA_DIR)."""
    path = tmp_path / "not" / "yet" / "eligibility.db"
    upgrade("eligibility", f"sqlite+aiosqlite:///{path}")
    assert path.exists() and path.stat().st_size > 0
