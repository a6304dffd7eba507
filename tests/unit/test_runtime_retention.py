"""Inbox ids and published outbox rows are forgotten after the retention window, never before,
and unpublished outbox rows are never forgotten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import select

from lindung_runtime import FixedClock
from lindung_runtime.db import Database
from lindung_runtime.outbox import RUNTIME_TABLES, InboxMessage, OutboxMessage, purge_old_rows

NOW = datetime(2025, 12, 1, 8, 0, tzinfo=UTC)


def outbox_row(event_id: str, created: datetime, published: datetime | None) -> OutboxMessage:
    return OutboxMessage(
        event_id=event_id,
        topic="worker.registered",
        key="5318********0001",
        event_type="id.lindung.WorkerRegistered.v1",
        payload="{}",
        headers="{}",
        created_at=created,
        published_at=published,
    )


async def test_rows_older_than_the_retention_window_are_purged_and_pending_ones_kept(
    tmp_path: Path,
) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/retention.db")
    await database.create_tables(RUNTIME_TABLES)
    old, recent = NOW - timedelta(days=15), NOW - timedelta(days=13)
    async with database.session() as session:
        session.add(InboxMessage(topic="t", event_id="old", processed_at=old))
        session.add(InboxMessage(topic="t", event_id="recent", processed_at=recent))
        session.add(outbox_row("sent-long-ago", old, old))
        session.add(outbox_row("sent-recently", recent, recent))
        session.add(outbox_row("never-sent", old, None))
        await session.commit()

    purged = await purge_old_rows(database, FixedClock(NOW), retention_days=14)

    async with database.read_session() as session:
        inbox = {row.event_id for row in (await session.exec(select(InboxMessage))).all()}
        outbox = {row.event_id for row in (await session.exec(select(OutboxMessage))).all()}
    await database.dispose()
    assert purged == 2
    assert inbox == {"recent"}
    assert outbox == {"sent-recently", "never-sent"}
