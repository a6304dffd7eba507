"""Rupiah amounts past 2**31 are stored whole, in databases built by the services' real Alembic
histories, through the real handlers.

The large case is one programme invoiced for 100,000 workers for a year: 100,000 x 12 months x
Rp 16,800 (JKK Rp 10,000 + JKM Rp 6,800) = Rp 20,160,000,000, of which the sponsor pays
Rp 5,000,000,000 at once; both are far past a 32-bit integer column (Rp 2.1 bn, reached at ~10,650
such workers). It runs on PostgreSQL only (SQLite's INTEGER is 64-bit whatever the column says).
Events go to the subscribers in consumer-sized batches directly (FastStream's in-memory broker,
as the handler tests do): a broker adds nothing to what is tested here, and 100,000 events over
it would cost minutes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from sqlalchemy import func, text
from sqlmodel import select

from lindung_billing.app import create_service as create_billing
from lindung_billing.db import Invoice, InvoiceLine, Payment, Program
from lindung_billing.settings import BillingSettings
from lindung_contracts import (
    ContributionInvoiced,
    CoverageActivated,
    EligibilityConfirmed,
    Event,
    PaymentReceived,
)
from lindung_contracts.events import RUPIAH_MAX
from lindung_registration.app import create_service as create_registration
from lindung_registration.db import PaymentRecord, WorkerStatus
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import FixedClock, Service
from lindung_runtime.migrations import upgrade_async
from lindung_runtime.outbox import OutboxMessage
from tests.conftest import POSTGRES_URL
from tests.unit.handler_kit import QUICK_GIVE_UP, deliver_batch, founding_program, rows

pytestmark = pytest.mark.integration

PROGRAM = "ntt-pekerja-rentan-2025"
INVOICE = f"INV-{PROGRAM}"
NOW = datetime(2025, 1, 20, 9, 0, tzinfo=UTC)
WORKERS = 100_000
BATCH = 1_000  # records per transaction, as a consumer's fetch would hand them over
PER_WORKER = 12 * 16_800
TOTAL = WORKERS * PER_WORKER  # Rp 20,160,000,000
PAID = 5_000_000_000
INT4_MAX = 2**31 - 1


@asynccontextmanager
async def migrated(data_dir: Path) -> AsyncIterator[tuple[Service, Service]]:
    """Billing and registration on databases their Alembic histories built: the autouse
    `service_databases` fixture gives each a fresh PostgreSQL database on PostgreSQL runs."""
    settings: dict[str, Any] = {"LINDUNG_DATA_DIR": str(data_dir), **QUICK_GIVE_UP}
    billing_settings = BillingSettings(**settings)
    registration_settings = RegistrationSettings(**settings)
    await upgrade_async("billing", billing_settings.database_url_for("billing"))
    await upgrade_async("registration", registration_settings.database_url_for("registration"))
    billing = create_billing(billing_settings, clock=FixedClock(NOW))
    registration = create_registration(registration_settings, clock=FixedClock(NOW))
    try:
        yield billing, registration
    finally:
        await billing.database.dispose()
        await registration.database.dispose()


def program(**overrides: Any) -> Event:
    fields = {
        "program_id": PROGRAM,
        "quota": WORKERS,
        "coverage_start": date(2025, 1, 1),
        "coverage_end": date(2025, 12, 31),
    }
    return founding_program(**{**fields, **overrides})


def confirmations(count: int) -> list[EligibilityConfirmed]:
    return [
        EligibilityConfirmed(
            worker_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PROGRAM}/{serial}")),
            program_id=PROGRAM,
            nik=f"53180101019{serial:05d}",
            coverage_start=date(2025, 1, 1),
            coverage_end=date(2025, 12, 31),
            decided_at=NOW,
            full_name=f"Pekerja {serial}",
            village="Kalembu Ndara Mane",
            district="Wewewa Barat",
        )
        for serial in range(count)
    ]


def payment(amount: int) -> PaymentReceived:
    return PaymentReceived(
        invoice_id=INVOICE, amount_idr=amount, paid_at=NOW, reference="SP2D-2025-0001"
    )


async def deliver_in_batches(service: Service, events: Sequence[Event]) -> None:
    """Hand `events` over BATCH at a time; stop at the first batch the service could not store
    (an int4 overflow is retried record by record, then dead-lettered: slow, and the answer)."""
    for start in range(0, len(events), BATCH):
        await deliver_batch(service, events[start : start + BATCH])
        assert service.dead_lettered == 0, f"dead letters in the batch from event {start}"
        if start == 2 * BATCH:
            await analyze(service)


async def analyze(service: Service) -> None:
    """Give the planner the statistics autovacuum would soon gather in a running deployment: on a
    fresh database it cannot know the inbox holds one topic, and checks each batch's ids against
    every earlier row of it (each batch slower than the last: minutes at 100,000)."""
    if service.database.engine.dialect.name != "postgresql":
        return
    async with service.database.engine.connect() as connection:
        await connection.execute(text("ANALYZE"))
        await connection.commit()


async def scalar(service: Service, statement: Any) -> Any:
    async with service.database.read_session() as session:
        return (await session.exec(statement)).one()


async def emitted_invoices(service: Service) -> list[ContributionInvoiced]:
    """The ContributionInvoiced events billing wrote to its outbox."""
    async with service.database.read_session() as session:
        statement = select(OutboxMessage.payload).where(
            OutboxMessage.topic == ContributionInvoiced.TOPIC
        )
        payloads = (await session.exec(statement)).all()
    return [ContributionInvoiced.model_validate_json(p) for p in payloads]


@pytest.mark.skipif(not POSTGRES_URL, reason="LINDUNG_TEST_POSTGRES_URL not set (.ci/run sets it)")
async def test_a_year_for_100_000_workers_and_a_5_bn_payment_are_stored_whole(
    data_dir: Path,
) -> None:
    assert TOTAL > INT4_MAX and PAID > INT4_MAX  # the point of the test
    async with migrated(data_dir) as (billing, registration):
        async with TestKafkaBroker(billing.broker):
            await deliver_batch(billing, [program()])
            await deliver_in_batches(billing, confirmations(WORKERS))
            await deliver_in_batches(billing, [payment(PAID)])

        [invoice] = await rows(billing, Invoice)
        assert (invoice.total_idr, invoice.paid_idr) == (TOTAL, PAID)
        assert await scalar(billing, select(func.count()).select_from(InvoiceLine)) == WORKERS
        assert await scalar(billing, select(func.sum(InvoiceLine.amount_idr))) == TOTAL
        [stored] = await rows(billing, Payment)
        assert stored.amount_idr == PAID
        activated = select(func.count()).where(OutboxMessage.topic == CoverageActivated.TOPIC)
        assert await scalar(billing, activated) == 0  # a quarter of the year paid: none covered
        invoiced = await emitted_invoices(billing)
        assert sum(e.amount_idr for e in invoiced) == TOTAL

        async with TestKafkaBroker(registration.broker):
            await deliver_in_batches(registration, invoiced)
            await deliver_in_batches(registration, [payment(PAID)])

        assert await scalar(registration, select(func.sum(WorkerStatus.invoiced_idr))) == TOTAL
        [record] = await rows(registration, PaymentRecord)
        assert (record.invoice_id, record.amount_idr) == (INVOICE, PAID)


async def test_every_stored_amount_holds_the_largest_the_contract_allows(data_dir: Path) -> None:
    """Each Rupiah column (income, line, total, payment, paid; the projection's invoiced and
    payment amounts) stores what an event may carry, on SQLite and PostgreSQL runs alike."""
    async with migrated(data_dir) as (billing, registration):
        async with TestKafkaBroker(billing.broker):
            await deliver_in_batches(billing, [program(reported_income_idr=RUPIAH_MAX)])
            await deliver_in_batches(billing, confirmations(1))
            await deliver_in_batches(billing, [payment(RUPIAH_MAX)])

        [line] = await emitted_invoices(billing)
        assert line.amount_idr == 12 * (RUPIAH_MAX // 100 + 6_800)  # JKK 1% + JKM, 12 months
        [stored_program] = await rows(billing, Program)
        assert stored_program.reported_income_idr == RUPIAH_MAX
        [invoice] = await rows(billing, Invoice)
        assert (invoice.total_idr, invoice.paid_idr) == (line.amount_idr, RUPIAH_MAX)
        [stored_line] = await rows(billing, InvoiceLine)
        assert stored_line.amount_idr == line.amount_idr
        assert stored_line.activated_at is not None  # paid in full
        [stored_payment] = await rows(billing, Payment)
        assert stored_payment.amount_idr == RUPIAH_MAX

        async with TestKafkaBroker(registration.broker):
            await deliver_in_batches(registration, [line])
            await deliver_in_batches(registration, [payment(RUPIAH_MAX)])

        [status] = await rows(registration, WorkerStatus)
        assert status.invoiced_idr == line.amount_idr
        [record] = await rows(registration, PaymentRecord)
        assert record.amount_idr == RUPIAH_MAX
