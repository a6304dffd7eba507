"""The hot path: cheaper row building and garbage collection, same results (the batch linger:
test_faststream_adapter.py)."""

from __future__ import annotations

import gc
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from lindung_registration.db import Worker, WorkerStatus
from lindung_runtime.clock import FixedClock
from lindung_runtime.db import Database
from lindung_runtime.outbox import UnitOfWork
from lindung_runtime.rows import NewRow
from lindung_runtime.service import service_process_gc

VALUES = dict(
    worker_id="w-1",
    program_id="p",
    nik="5318010101900001",
    full_name="Maria Bili",
    birth_date=date(1990, 1, 1),
    gender="P",
    village="Kalena Wanno",
    district="Kodi",
    registered_at=datetime(2025, 10, 1, tzinfo=UTC),
)


def test_a_new_row_reads_like_the_model_built_the_ordinary_way() -> None:
    row = NewRow(Worker, dict(VALUES))
    assert {name: getattr(row, name) for name in Worker.model_fields} == Worker(
        **VALUES
    ).model_dump()
    status = NewRow(WorkerStatus, dict(worker_id="w-1", program_id="p", nik="5318010101900001"))
    assert (status.registered, status.invoiced_idr, status.invoice_id) == (False, 0, None)


def test_a_new_row_refuses_a_field_the_model_lacks() -> None:
    with pytest.raises(TypeError, match="no field"):
        NewRow(Worker, dict(VALUES, salary=1))


async def test_created_rows_are_inserted_at_commit_with_changes_made_before_and_after_a_flush(
    tmp_path: Path,
) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}")
    await database.create_tables([Worker, WorkerStatus])
    async with database.session() as session:
        uow = UnitOfWork(session, FixedClock(datetime(2025, 10, 1, tzinfo=UTC)), "test")
        uow.create(Worker, **VALUES)
        status = uow.create(WorkerStatus, worker_id="w-1", program_id="p", nik="5318010101900001")
        status.registered = True  # changed before it was written
        assert await uow.get(WorkerStatus, "w-1") is status  # found before it is written
        await uow.flush()
        counted = (await session.exec(select(WorkerStatus))).all()
        assert [s.registered for s in counted] == [True]  # a query after flush sees it
        status.invoiced_idr = 50_400  # changed after it was written
        await uow.commit()
    async with database.read_session() as session:
        (worker,) = (await session.exec(select(Worker))).all()
        (saved,) = (await session.exec(select(WorkerStatus))).all()
    await database.dispose()
    assert worker.full_name == "Maria Bili" and worker.birth_date == date(1990, 1, 1)
    assert (saved.registered, saved.invoiced_idr) == (True, 50_400)


async def test_a_row_created_twice_in_one_transaction_is_an_error(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}")
    await database.create_tables([Worker])
    async with database.session() as session:
        uow = UnitOfWork(session, FixedClock(datetime(2025, 10, 1, tzinfo=UTC)), "test")
        uow.create(Worker, **VALUES)
        with pytest.raises(ValueError, match="created twice"):
            uow.create(Worker, **VALUES)
    await database.dispose()


async def test_a_loaded_row_added_once_per_record_saves_its_last_change(tmp_path: Path) -> None:
    """Eligibility counts a programme's seats on one loaded row, `add`ing it for every worker:
    only the first `add` reaches the session, which saves every change made after it."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}")
    await database.create_tables([WorkerStatus])
    clock = FixedClock(datetime(2025, 10, 1, tzinfo=UTC))
    async with database.session() as session:
        uow = UnitOfWork(session, clock, "test")
        uow.create(WorkerStatus, worker_id="w-1", program_id="p", nik="5318010101900001")
        await uow.commit()
    async with database.session() as session:
        uow = UnitOfWork(session, clock, "test")
        status = await uow.get(WorkerStatus, "w-1")
        assert status is not None and not isinstance(status, NewRow)
        for alert in range(3):
            status.expiry_alerts = alert + 1
            uow.add(status)
        assert uow.added(WorkerStatus) == [status]
        await uow.commit()
    async with database.read_session() as session:
        (saved,) = (await session.exec(select(WorkerStatus))).all()
    await database.dispose()
    assert saved.expiry_alerts == 3


def test_a_service_process_sets_its_startup_heap_aside_from_the_collector() -> None:
    threshold = gc.get_threshold()
    try:
        service_process_gc(young_threshold=12_345)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (12_345, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
