"""Programme terms through eligibility's and billing's handlers (in memory, the real runtime
steps): a renewal carries the confirmed workers into the next term, billing issues the term's
own invoice, a repeated renewal changes nothing, an overlapping one is dead-lettered, and a
term that ends unrenewed ends every worker's cover once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker

from lindung_billing.app import create_service as create_billing
from lindung_billing.db import Invoice, InvoiceLine
from lindung_billing.settings import BillingSettings
from lindung_contracts import (
    ContributionInvoiced,
    CoverageActivated,
    CoverageEnded,
    CoverageExpiring,
    DayStarted,
    EligibilityConfirmed,
    EligibilityRejected,
    PaymentReceived,
    ProgramRenewed,
    Reason,
    WorkerRegistered,
    topics,
)
from lindung_eligibility.app import create_service as create_eligibility
from lindung_eligibility.db import Decision, Program
from lindung_eligibility.settings import EligibilitySettings
from lindung_runtime import FixedClock, Service
from tests.unit.handler_kit import (
    PROGRAM,
    QUICK_GIVE_UP,
    DeadLetters,
    emitted,
    founding_program,
    publish,
    rows,
    with_tables,
)

NOW = datetime(2025, 10, 29, 9, 0, tzinfo=UTC)
TERM_2 = (date(2026, 1, 1), date(2026, 3, 31))


def program(**overrides: Any) -> Any:
    return founding_program(
        **{
            "quota": 3,
            "max_age": 60,
            "coverage_start_policy": "from_term_start",
            "registration_deadline": date(2025, 11, 15),
            "backdating_approval": "BPJS Kanwil Bali Nusra ND/2025/117",
            "alert_days_before_end": [14],
            **overrides,
        }
    )


def renewal(start: date = TERM_2[0], end: date = TERM_2[1], **fields: Any) -> ProgramRenewed:
    return ProgramRenewed(
        program_id=PROGRAM,
        term_start=start,
        term_end=end,
        renewed_at=datetime(2025, 12, 15, 8, 0, tzinfo=UTC),
        **fields,
    )


def registered(serial: int, born: date) -> WorkerRegistered:
    nik = f"531801{born.day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"
    return WorkerRegistered(
        worker_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PROGRAM}/{nik}")),
        program_id=PROGRAM,
        nik=nik,
        full_name=f"Pekerja {serial}",
        birth_date=born,
        gender="M",
        village="Kalembu Ndara Mane",
        district="Wewewa Barat",
        registered_at=NOW,
    )


@pytest.fixture
async def eligibility(data_dir: Path) -> AsyncIterator[Service]:
    settings = EligibilitySettings(LINDUNG_DATA_DIR=str(data_dir), **QUICK_GIVE_UP)
    async with with_tables(create_eligibility(settings, clock=FixedClock(NOW))) as svc:
        yield svc


@pytest.fixture
async def billing(data_dir: Path) -> AsyncIterator[Service]:
    settings = BillingSettings(LINDUNG_DATA_DIR=str(data_dir), **QUICK_GIVE_UP)
    async with with_tables(create_billing(settings, clock=FixedClock(NOW))) as svc:
        yield svc


WORKERS = [
    registered(1, date(1990, 5, 5)),
    registered(2, date(1965, 2, 10)),  # 60 at the start of 2026, 61 on 10 Feb: not carried
    registered(3, date(1980, 7, 7)),
]


async def test_imported_after_signing_is_covered_from_the_terms_first_day(
    eligibility: Service,
) -> None:
    async with TestKafkaBroker(eligibility.broker) as br:
        await publish(br, program())
        await publish(br, DayStarted(date=date(2025, 10, 29)))  # the day after the PKS
        await publish(br, WORKERS[0])
        await publish(br, DayStarted(date=date(2025, 11, 16)))  # past the deadline
        await publish(br, WORKERS[2])

    starts = [c.coverage_start for c in await emitted(eligibility, EligibilityConfirmed)]
    assert starts == [date(2025, 10, 1), date(2025, 12, 1)]


async def test_a_renewal_carries_each_confirmed_worker_once_checked_on_the_new_term(
    eligibility: Service,
) -> None:
    async with TestKafkaBroker(eligibility.broker) as br:
        await publish(br, program())
        await publish(br, DayStarted(date=date(2025, 10, 29)))
        for worker in WORKERS:
            await publish(br, worker)
        await publish(br, DayStarted(date=date(2025, 12, 15)))
        await publish(br, renewal(quota=5))
        await publish(br, renewal(quota=5))  # the operator pressed twice: a repeat
        late = registered(4, date(1985, 3, 3))
        await publish(br, late)  # registered after the renewal: decided for term 2

    confirmed = await emitted(eligibility, EligibilityConfirmed)
    carried = [c for c in confirmed if c.term == 2 and c.carried]
    assert sorted(c.worker_id for c in carried) == sorted(
        [WORKERS[0].worker_id, WORKERS[2].worker_id]
    )
    assert {(c.coverage_start, c.coverage_end) for c in carried} == {TERM_2}
    assert carried[0].full_name.startswith("Pekerja") and carried[0].village
    [not_carried] = [r for r in await emitted(eligibility, EligibilityRejected) if r.term == 2]
    assert not_carried.worker_id == WORKERS[1].worker_id and not_carried.carried
    assert [r.code for r in not_carried.reasons] == ["age_above_maximum_in_term"]
    [new] = [c for c in confirmed if c.worker_id == late.worker_id]
    assert (new.term, new.carried, new.coverage_start) == (2, False, date(2026, 1, 1))
    [row] = await rows(eligibility, Program)
    assert (row.term, row.quota, row.confirmed_count) == (2, 5, 3)
    assert len(await rows(eligibility, Decision)) == 3 + 3 + 1


async def test_an_overlapping_renewal_is_dead_lettered_with_its_reason(
    eligibility: Service,
) -> None:
    dlq = DeadLetters(eligibility, topics.PROGRAM_RENEWED)
    async with TestKafkaBroker(eligibility.broker) as br:
        await publish(br, program())
        await publish(br, WORKERS[0])
        await publish(br, renewal(date(2025, 12, 1), date(2026, 2, 28)))

    assert [h["x-lindung-error-code"] for _, h in dlq.records] == ["term_overlaps"]
    assert [c.term for c in await emitted(eligibility, EligibilityConfirmed)] == [1]


def confirmation(worker: WorkerRegistered, term: int, start: date, end: date) -> Any:
    return EligibilityConfirmed(
        worker_id=worker.worker_id,
        program_id=PROGRAM,
        nik=worker.nik,
        coverage_start=start,
        coverage_end=end,
        decided_at=NOW,
        full_name=worker.full_name,
        village=worker.village,
        district=worker.district,
        term=term,
        carried=term > 1,
    )


def paid(invoice_id: str, amount: int) -> PaymentReceived:
    return PaymentReceived(
        invoice_id=invoice_id, amount_idr=amount, paid_at=NOW, reference=f"SP2D-{invoice_id}"
    )


async def test_the_renewed_term_has_its_own_invoice_and_term_1_does_not_end(
    billing: Service,
) -> None:
    q4 = (date(2025, 10, 1), date(2025, 12, 31))
    async with TestKafkaBroker(billing.broker) as br:
        await publish(br, program())
        for worker in WORKERS[:2]:
            await publish(br, confirmation(worker, 1, *q4))
        await publish(br, paid(f"INV-{PROGRAM}", 2 * 50_400))
        await publish(br, renewal(reported_income_idr=2_000_000))
        await publish(br, confirmation(WORKERS[0], 2, *TERM_2))
        await publish(br, DayStarted(date=date(2025, 12, 17)))  # 14 days before term 1 ends
        await publish(br, DayStarted(date=date(2026, 1, 1)))
        await publish(br, paid(f"INV-{PROGRAM}-T2", 3 * 26_800))

    invoices = {
        i.invoice_id: (i.term, i.total_idr, i.paid_idr) for i in await rows(billing, Invoice)
    }
    assert invoices == {
        f"INV-{PROGRAM}": (1, 100_800, 100_800),
        f"INV-{PROGRAM}-T2": (2, 80_400, 80_400),  # JKK 1 % of Rp 2,000,000 + JKM, 3 months
    }
    [line_2] = [e for e in await emitted(billing, ContributionInvoiced) if e.term == 2]
    assert line_2.periods == ["2026-01", "2026-02", "2026-03"]
    activated = await emitted(billing, CoverageActivated)
    assert sorted((a.term, a.coverage_start) for a in activated) == [
        (1, date(2025, 10, 1)),
        (1, date(2025, 10, 1)),
        (2, date(2026, 1, 1)),
    ]
    alerts = await emitted(billing, CoverageExpiring)
    assert {a.renewed_until for a in alerts} == {TERM_2[1]} and len(alerts) == 2
    assert await emitted(billing, CoverageEnded) == []  # renewed: nobody's cover ends yet
    assert len(await rows(billing, InvoiceLine)) == 3


async def test_a_term_nobody_renewed_ends_each_workers_cover_once(billing: Service) -> None:
    q4 = (date(2025, 10, 1), date(2025, 12, 31))
    async with TestKafkaBroker(billing.broker) as br:
        await publish(br, program())
        for worker in WORKERS:
            await publish(br, confirmation(worker, 1, *q4))
        await publish(br, paid(f"INV-{PROGRAM}", 3 * 50_400))
        await publish(br, DayStarted(date=date(2025, 12, 31)))  # the last day: still covered
        await publish(br, DayStarted(date=date(2026, 1, 1)))
        await publish(br, DayStarted(date=date(2026, 1, 1)))  # announced again
        await publish(br, DayStarted(date=date(2026, 1, 2)))

    ended = await emitted(billing, CoverageEnded)
    assert sorted(e.worker_id for e in ended) == sorted(w.worker_id for w in WORKERS)
    assert {(e.reason.code, e.coverage_end, e.alert_size) for e in ended} == {
        ("term_ended_not_renewed", date(2025, 12, 31), 3)
    }
    assert {e.alert_id for e in ended} == {f"{PROGRAM}:2025-12-31:ended"}


async def test_a_worker_the_renewal_did_not_carry_ends_with_the_term(billing: Service) -> None:
    q4 = (date(2025, 10, 1), date(2025, 12, 31))
    older = WORKERS[1]
    async with TestKafkaBroker(billing.broker) as br:
        await publish(br, program())
        for worker in WORKERS:
            await publish(br, confirmation(worker, 1, *q4))
        await publish(br, paid(f"INV-{PROGRAM}", 3 * 50_400))
        await publish(br, renewal())
        for worker in (WORKERS[0], WORKERS[2]):
            await publish(br, confirmation(worker, 2, *TERM_2))
        await publish(
            br,
            EligibilityRejected(
                worker_id=older.worker_id,
                program_id=PROGRAM,
                nik=older.nik,
                reasons=[Reason(code="age_above_maximum_in_term", message="Usia / Age")],
                decided_at=NOW,
                term=2,
                carried=True,
            ),
        )
        await publish(br, DayStarted(date=date(2025, 12, 31)))  # still covered
        await publish(br, DayStarted(date=date(2026, 1, 1)))
        await publish(br, DayStarted(date=date(2026, 1, 2)))

    [ended] = await emitted(billing, CoverageEnded)
    assert (ended.worker_id, ended.term, ended.coverage_end) == (older.worker_id, 1, q4[1])
    assert (ended.reason.code, ended.alert_size) == ("age_above_maximum_in_term", 1)


async def test_the_carry_leaves_out_a_worker_another_programme_covers_then(
    eligibility: Service,
) -> None:
    worker = WORKERS[0]
    provinsi = "ntt-provinsi-2026q1"
    async with TestKafkaBroker(eligibility.broker) as br:
        await publish(br, program())
        await publish(br, DayStarted(date=date(2025, 10, 29)))
        await publish(br, worker)
        await publish(
            br,
            program(
                program_id=provinsi,
                coverage_start=date(2026, 1, 1),
                coverage_end=date(2026, 6, 30),
                coverage_start_policy="next_month",
                registration_deadline=None,
            ),
        )
        await publish(br, worker.model_copy(update={"program_id": provinsi, "worker_id": "w-p"}))
        await publish(br, renewal())

    rejections = [r for r in await emitted(eligibility, EligibilityRejected) if r.term == 2]
    assert [(r.worker_id, [c.code for c in r.reasons]) for r in rejections] == [
        (worker.worker_id, ["already_enrolled"])
    ]
