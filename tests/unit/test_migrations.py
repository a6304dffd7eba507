"""Each service's Alembic history builds exactly the schema its models describe, on SQLite and
(when the run has one) on PostgreSQL; and applying it twice changes nothing."""

from __future__ import annotations

import asyncio
import importlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, inspect, select
from sqlalchemy.ext.asyncio import create_async_engine

from lindung_registration.db import TermLine, TimelineEntry
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


@pytest.fixture(params=["sqlite", "postgresql"])
def registration_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database for registration's history, on SQLite and (when the run has one) PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'registration.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("LINDUNG_TEST_POSTGRES_URL not set (.ci/run sets it)")
    name = f"lindung_mig_{uuid.uuid4().hex[:8]}_registration"
    asyncio.run(create_databases([name]))
    try:
        yield database_url(name)
    finally:
        asyncio.run(drop_databases([name]))


def invoiced_entry(event_id: str, at: datetime, **details: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "kind": "invoiced",
        "nik": "5318014101900002",
        "program_id": "sbd-pekerja-rentan-2025q4",
        "worker_id": "w-1",
        "invoice_id": details.get("invoice_id"),
        "occurred_at": at,
        "trace_id": None,
        "details": json.dumps(details),
    }


async def insert_entries(url: str, entries: list[dict[str, Any]]) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(TimelineEntry.__table__), entries)  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def term_lines(url: str) -> list[dict[str, Any]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            table = TermLine.__table__  # type: ignore[attr-defined]
            result = await connection.execute(select(table).order_by(table.c.term))
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()


def test_0009_fills_term_line_from_the_invoiced_timeline(registration_url: str) -> None:
    """Invoice lines projected before term_line existed are in it after the upgrade: the last
    line of each worker's term, its first month the earliest period, term 1 when the entry was
    projected before terms were kept; other entries and unreadable lines are left out."""
    url = registration_url
    upgrade("registration", url, "0008")
    day = datetime(2025, 10, 1, 8, 30, tzinfo=UTC)
    line = {"monthly_amount_idr": 16_800, "components": {"JKK": 10_000, "JKM": 6_800}}
    asyncio.run(
        insert_entries(
            url,
            [
                # Before terms were kept: no "term" (term 1); replaced by the later line below.
                invoiced_entry(
                    "e-1",
                    day,
                    invoice_id="INV-OLD",
                    periods=["2025-10", "2025-11", "2025-12"],
                    amount_idr=50_400,
                    **line,
                ),
                invoiced_entry(
                    "e-2",
                    day.replace(hour=9),
                    invoice_id="INV-1",
                    periods=["2025-12", "2025-11"],
                    amount_idr=33_600,
                    term=1,
                    **line,
                ),
                invoiced_entry(
                    "e-3",
                    day.replace(day=2),
                    invoice_id="INV-2",
                    periods=["2026-02", "2026-01", "2026-03"],
                    monthly_amount_idr=1_000_000_000,
                    amount_idr=3_000_000_000,  # past 2**31
                    term=2,
                ),
                invoiced_entry("e-4", day.replace(day=3), invoice_id="INV-3", term=3),  # no periods
                {
                    **invoiced_entry("e-5", day.replace(day=4), term=4),
                    "kind": "coverage_activated",
                },
            ],
        )
    )
    upgrade("registration", url)
    assert asyncio.run(term_lines(url)) == [
        {
            "worker_id": "w-1",
            "term": 1,
            "program_id": "sbd-pekerja-rentan-2025q4",
            "invoice_id": "INV-1",
            "first_month": date(2025, 11, 1),
            "months": 2,
            "monthly_amount_idr": 16_800,
            "amount_idr": 33_600,
        },
        {
            "worker_id": "w-1",
            "term": 2,
            "program_id": "sbd-pekerja-rentan-2025q4",
            "invoice_id": "INV-2",
            "first_month": date(2026, 1, 1),
            "months": 3,
            "monthly_amount_idr": 1_000_000_000,
            "amount_idr": 3_000_000_000,
        },
    ]
    diff, _ = asyncio.run(schema_state(url, "registration"))
    assert diff == []
