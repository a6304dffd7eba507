"""Eligibility's handlers run in memory (FastStream's TestKafkaBroker) through the real runtime
middleware: programmes, the business day, quota and one-membership-per-NIK decisions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from sqlalchemy.dialects import postgresql

from lindung_contracts import (
    DayStarted,
    EligibilityConfirmed,
    EligibilityRejected,
    ProgramPublished,
    WorkerRegistered,
    topics,
)
from lindung_eligibility.app import create_service
from lindung_eligibility.db import Decision, Program
from lindung_eligibility.settings import EligibilitySettings
from lindung_runtime import FixedClock, Service
from lindung_runtime.messages import Transaction
from lindung_runtime.outbox import InboxMessage, OutboxMessage
from tests.unit.handler_kit import (
    PROGRAM,
    QUICK_GIVE_UP,
    DeadLetters,
    deliver_batch,
    emitted,
    founding_program,
    publish,
    rows,
    with_tables,
)

NOW = datetime(2025, 9, 20, 9, 0, tzinfo=UTC)


# --- helpers --------------------------------------------------------------------------------------


def program(program_id: str = PROGRAM, **overrides: Any) -> ProgramPublished:
    return founding_program(
        **{"program_id": program_id, "quota": 2, "min_age": 18, "max_age": 60, **overrides}
    )


def nik(
    serial: int, *, region: str = "5318", born: date = date(1990, 1, 1), woman: bool = False
) -> str:
    day = born.day + 40 if woman else born.day
    return f"{region}01{day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"


def registered(
    serial: int,
    *,
    program_id: str = PROGRAM,
    region: str = "5318",
    born: date = date(1990, 1, 1),
    woman: bool = False,
) -> WorkerRegistered:
    number = nik(serial, region=region, born=born, woman=woman)
    return WorkerRegistered(
        worker_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{program_id}/{number}")),
        program_id=program_id,
        nik=number,
        full_name=f"Pekerja {serial}",
        birth_date=born,
        gender="F" if woman else "M",
        village="Kalembu Ndara Mane",
        district="Wewewa Barat",
        registered_at=NOW,
    )


async def reason_codes(service: Service) -> dict[str, list[str]]:
    """worker_id -> reason codes of its rejection."""
    return {
        e.worker_id: [r.code for r in e.reasons]
        for e in await emitted(service, EligibilityRejected)
    }


@pytest.fixture
async def service(data_dir: Path) -> AsyncIterator[Service]:
    settings = EligibilitySettings(LINDUNG_DATA_DIR=str(data_dir), **QUICK_GIVE_UP)
    async with with_tables(create_service(settings, clock=FixedClock(NOW))) as svc:
        yield svc


# --- tests --------------------------------------------------------------------------------------


async def test_over_quota_worker_is_rejected_not_confirmed(service: Service) -> None:
    workers = [registered(1), registered(2, woman=True), registered(3)]
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program(quota=2))
        for worker in workers:
            await publish(br, worker)

    confirmed = await emitted(service, EligibilityConfirmed)
    assert [c.worker_id for c in confirmed] == [workers[0].worker_id, workers[1].worker_id]
    assert all(
        (c.coverage_start, c.coverage_end) == (date(2025, 10, 1), date(2025, 12, 31))
        for c in confirmed
    )
    assert confirmed[1].full_name == "Pekerja 2" and confirmed[1].village == "Kalembu Ndara Mane"
    assert await reason_codes(service) == {workers[2].worker_id: ["quota_exhausted"]}

    [row] = await rows(service, Program)
    assert (row.quota, row.confirmed_count) == (2, 2)
    decisions = {d.worker_id: d.status for d in await rows(service, Decision)}
    assert sorted(decisions.values()) == ["confirmed", "confirmed", "rejected"]


async def test_worker_outside_the_programme_region_is_rejected_and_takes_no_seat(
    service: Service,
) -> None:
    outsider = registered(1, region="5311")  # Sumba Timur, not Sumba Barat Daya
    legacy = registered(2, region="5312")  # Sumba Barat: accepted as an additional region
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program(quota=1, additional_region_codes=["5312"]))
        await publish(br, outsider)
        await publish(br, legacy)

    assert await reason_codes(service) == {outsider.worker_id: ["region_mismatch"]}
    assert [c.worker_id for c in await emitted(service, EligibilityConfirmed)] == [legacy.worker_id]
    [row] = await rows(service, Program)
    assert row.confirmed_count == 1


async def test_nik_that_contradicts_the_registration_is_rejected_with_every_reason(
    service: Service,
) -> None:
    worker = registered(1, born=date(1990, 1, 1)).model_copy(
        update={"birth_date": date(1991, 1, 1), "gender": "F"}
    )
    child = registered(2, born=date(2010, 5, 5))
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, worker)
        await publish(br, child)

    codes = await reason_codes(service)
    assert codes[worker.worker_id] == ["birth_date_mismatch", "gender_mismatch"]
    assert codes[child.worker_id] == ["age_below_minimum"]


async def test_day_after_programme_start_moves_coverage_start_to_next_month(
    service: Service,
) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, DayStarted(date=date(2025, 10, 15)))
        await publish(br, registered(1))
        await publish(br, DayStarted(date=date(2025, 10, 2)))  # late: the clock never goes back
        await publish(br, registered(2))

    confirmed = await emitted(service, EligibilityConfirmed)
    assert [(c.coverage_start, c.coverage_end) for c in confirmed] == [
        (date(2025, 11, 1), date(2025, 12, 31)),
        (date(2025, 11, 1), date(2025, 12, 31)),
    ]


async def test_day_on_programme_start_keeps_its_start_and_a_december_day_ends_it(
    service: Service,
) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, DayStarted(date=date(2025, 10, 1)))
        await publish(br, registered(1))
        await publish(br, DayStarted(date=date(2025, 12, 2)))  # next month begins after the end
        late = registered(2)
        await publish(br, late)

    [confirmed] = await emitted(service, EligibilityConfirmed)
    assert confirmed.coverage_start == date(2025, 10, 1)
    assert await reason_codes(service) == {late.worker_id: ["program_ended"]}


async def test_same_nik_in_an_overlapping_programme_is_rejected_as_already_enrolled(
    service: Service,
) -> None:
    first = registered(1)
    overlapping = registered(1, program_id="ntt-provinsi-2025h2")
    later = registered(1, program_id="sbd-pekerja-rentan-2026q1")
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(
            br,
            program(
                "ntt-provinsi-2025h2",
                coverage_start=date(2025, 7, 1),
                coverage_end=date(2025, 12, 31),
                region_code="5318",
                quota=10,
            ),
        )
        await publish(
            br,
            program(
                "sbd-pekerja-rentan-2026q1",
                coverage_start=date(2026, 1, 1),
                coverage_end=date(2026, 3, 31),
                quota=10,
            ),
        )
        await publish(br, first)
        await publish(br, overlapping)
        await publish(br, later)  # starts the day after the first term ends: no overlap

    assert await reason_codes(service) == {overlapping.worker_id: ["already_enrolled"]}
    assert {c.worker_id for c in await emitted(service, EligibilityConfirmed)} == {
        first.worker_id,
        later.worker_id,
    }


async def test_redelivered_worker_is_decided_once(service: Service) -> None:
    worker = registered(1)
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program(quota=5))
        ce_id = await publish(br, worker)
        await publish(br, worker, ce_id=ce_id)  # redelivery
        await publish(br, worker)  # re-announced under a new id

    assert len(await emitted(service, EligibilityConfirmed)) == 1
    assert len(await rows(service, Decision)) == 1
    [row] = await rows(service, Program)
    assert row.confirmed_count == 1


async def test_amended_programme_keeps_the_seats_already_taken(service: Service) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program(quota=1))
        await publish(br, registered(1))
        await publish(br, program(quota=2))  # the sponsor adds a seat
        await publish(br, registered(2))
        third = registered(3)
        await publish(br, third)

    [row] = await rows(service, Program)
    assert (row.quota, row.confirmed_count) == (2, 2)
    assert await reason_codes(service) == {third.worker_id: ["quota_exhausted"]}


async def test_worker_for_an_unknown_programme_is_retried_then_dead_lettered(
    service: Service,
) -> None:
    dlq = DeadLetters(service, topics.WORKER_REGISTERED)
    orphan = registered(1, program_id="not-published-yet")
    async with TestKafkaBroker(service.broker) as br:
        ce_id = await publish(br, orphan)

        assert service.dead_lettered == 1
        [(body, headers)] = dlq.records
        assert WorkerRegistered.model_validate_json(body) == orphan
        assert headers["x-lindung-error-code"] == "not_ready"
        assert headers["x-lindung-service"] == "eligibility"
        assert headers["x-lindung-original-topic"] == topics.WORKER_REGISTERED
        assert int(headers["x-lindung-attempts"]) >= 2  # retried before it was given up
        assert "not-published-yet" in headers["x-lindung-error"]
        assert await rows(service, Decision) == []
        assert await rows(service, OutboxMessage) == []
        assert await rows(service, InboxMessage) == []

        # It was never marked as seen: replaying it (same id) once the programme exists decides it.
        await publish(br, program("not-published-yet"))
        await publish(br, orphan, ce_id=ce_id)

    assert [c.worker_id for c in await emitted(service, EligibilityConfirmed)] == [orphan.worker_id]


async def test_worker_waits_for_a_programme_that_arrives_while_it_is_retried(
    data_dir: Path,
) -> None:
    settings = EligibilitySettings(
        LINDUNG_DATA_DIR=str(data_dir),
        consumer_retry_base_seconds=0.01,
        consumer_not_ready_max_wait_seconds=10,
    )
    service = create_service(settings, clock=FixedClock(NOW))
    early = registered(1)
    async with with_tables(service), TestKafkaBroker(service.broker) as br:
        waiting = asyncio.create_task(publish(br, early))  # retried: its programme is unknown
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await publish(br, program())
        await asyncio.wait_for(waiting, timeout=10)

    assert service.dead_lettered == 0
    assert [c.worker_id for c in await emitted(service, EligibilityConfirmed)] == [early.worker_id]


async def test_batch_locks_its_programmes_in_id_order_before_deciding(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two instances whose batches span the same programmes must lock them in one order, else
    each waits for the other's (PostgreSQL aborts one as a deadlock). So the batch locks every
    programme it takes seats in, sorted, in one statement before it reads or writes decisions."""
    other = "aaa-pekerja-rentan-2025q4"  # sorts before PROGRAM
    steps: list[tuple[str, Any]] = []
    read, insert = Transaction.rows, Transaction.insert_new

    async def spy_rows(tx: Transaction, statement: Any) -> Any:
        sql = statement.compile(dialect=postgresql.dialect())
        if "FOR UPDATE" in str(sql):
            assert "ORDER BY program.program_id" in str(sql)
            steps.append(("lock", [v for p in sql.params.values() for v in p]))
        elif "FROM decision" in str(sql):
            steps.append(("read", "decision"))
        return await read(tx, statement)

    async def spy_insert(tx: Transaction, model: Any, rows: Any, returning: Any = None) -> Any:
        if model is Decision:
            steps.append(("decide", sorted(row["program_id"] for row in rows)))
        return await insert(tx, model, rows, returning)

    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, program(other))
        monkeypatch.setattr(Transaction, "rows", spy_rows)
        monkeypatch.setattr(Transaction, "insert_new", spy_insert)
        await deliver_batch(
            service, [registered(1), registered(2, program_id=other), registered(3)]
        )

    assert steps == [
        ("lock", [other, PROGRAM]),
        ("read", "decision"),
        ("decide", [other, PROGRAM, PROGRAM]),
    ]
    assert len(await emitted(service, EligibilityConfirmed)) == 3
    [first, second] = sorted(await rows(service, Program), key=lambda p: p.program_id)
    assert (first.confirmed_count, second.confirmed_count) == (1, 2)


async def test_same_worker_twice_in_one_batch_is_decided_once(service: Service) -> None:
    worker, other = registered(1), registered(2)
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program(quota=5))
        await deliver_batch(service, [worker, other, worker])

    assert [c.worker_id for c in await emitted(service, EligibilityConfirmed)] == [
        worker.worker_id,
        other.worker_id,
    ]
    assert len(await rows(service, Decision)) == 2
    [row] = await rows(service, Program)
    assert row.confirmed_count == 2


async def test_a_batch_fills_the_quota_in_order_and_rejects_the_rest(service: Service) -> None:
    workers = [registered(n) for n in range(1, 5)]
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program(quota=3))
        await publish(br, workers[0])
        await deliver_batch(service, workers[1:])

    assert [c.worker_id for c in await emitted(service, EligibilityConfirmed)] == [
        w.worker_id for w in workers[:3]
    ]
    assert await reason_codes(service) == {workers[3].worker_id: ["quota_exhausted"]}
    [row] = await rows(service, Program)
    assert row.confirmed_count == 3
