"""Billing's handlers run in memory (FastStream's TestKafkaBroker) through the real runtime
middleware: invoicing confirmed workers, activating on payment, and expiry warnings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker

from lindung_billing.app import create_service
from lindung_billing.db import ExpiryAlert, Invoice, InvoiceLine, Payment
from lindung_billing.settings import BillingSettings
from lindung_contracts import (
    ContributionInvoiced,
    CoverageActivated,
    CoverageExpiring,
    DayStarted,
    EligibilityConfirmed,
    PaymentReceived,
    ProgramPublished,
    topics,
)
from lindung_runtime import FixedClock, Service
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

NOW = datetime(2025, 10, 20, 10, 0, tzinfo=UTC)
INVOICE = f"INV-{PROGRAM}"
PER_WORKER = 3 * 16_800  # Oct-Dec 2025 at JKK Rp 10,000 + JKM Rp 6,800


# --- helpers --------------------------------------------------------------------------------------


def program(**overrides: Any) -> ProgramPublished:
    return founding_program(
        **{"alert_days_before_end": [30], "staff_emails": ["disnaker@example.go.id"], **overrides}
    )


def confirmed(serial: int, *, start: date = date(2025, 10, 1)) -> EligibilityConfirmed:
    nik = f"531801010190{serial:04d}"
    return EligibilityConfirmed(
        worker_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PROGRAM}/{nik}")),
        program_id=PROGRAM,
        nik=nik,
        coverage_start=start,
        coverage_end=date(2025, 12, 31),
        decided_at=NOW,
        full_name=f"Pekerja {serial}",
        village="Kalembu Ndara Mane",
        district="Wewewa Barat",
    )


def payment(amount: int, reference: str, invoice_id: str = INVOICE) -> PaymentReceived:
    return PaymentReceived(
        invoice_id=invoice_id, amount_idr=amount, paid_at=NOW, reference=reference
    )


@pytest.fixture
async def service(data_dir: Path) -> AsyncIterator[Service]:
    settings = BillingSettings(LINDUNG_DATA_DIR=str(data_dir), **QUICK_GIVE_UP)
    async with with_tables(create_service(settings, clock=FixedClock(NOW))) as svc:
        yield svc


# --- tests --------------------------------------------------------------------------------------


async def test_confirmed_worker_is_invoiced_for_every_covered_month(service: Service) -> None:
    worker = confirmed(1)
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, worker)

    [line] = await emitted(service, ContributionInvoiced)
    assert line.invoice_id == INVOICE
    assert (line.worker_id, line.nik, line.program_id) == (worker.worker_id, worker.nik, PROGRAM)
    assert line.periods == ["2025-10", "2025-11", "2025-12"]
    assert line.components == {"JKK": 10_000, "JKM": 6_800}
    assert line.monthly_amount_idr == 16_800
    assert line.amount_idr == 50_400
    [invoice] = await rows(service, Invoice)
    assert (invoice.invoice_id, invoice.total_idr, invoice.paid_idr) == (INVOICE, 50_400, 0)
    assert await emitted(service, CoverageActivated) == []


async def test_late_start_is_invoiced_only_for_the_months_covered(service: Service) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program(reported_income_idr=2_000_000))
        await publish(br, confirmed(1, start=date(2025, 11, 1)))

    [line] = await emitted(service, ContributionInvoiced)
    assert line.periods == ["2025-11", "2025-12"]
    assert line.components == {"JKK": 20_000, "JKM": 6_800}
    assert line.amount_idr == 2 * 26_800


async def test_redelivered_confirmation_is_invoiced_once(service: Service) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        ce_id = await publish(br, confirmed(1))
        await publish(br, confirmed(1), ce_id=ce_id)
        await publish(br, confirmed(1))  # new id, same worker

    assert len(await emitted(service, ContributionInvoiced)) == 1
    [invoice] = await rows(service, Invoice)
    assert invoice.total_idr == PER_WORKER


async def test_payment_of_the_total_activates_every_worker_on_the_invoice(service: Service) -> None:
    workers = [confirmed(1), confirmed(2)]
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        for worker in workers:
            await publish(br, worker)
        await publish(br, payment(2 * PER_WORKER, "SP2D-0001"))

    activated = await emitted(service, CoverageActivated)
    assert sorted(a.worker_id for a in activated) == sorted(w.worker_id for w in workers)
    assert all(
        (a.invoice_id, a.coverage_start, a.coverage_end)
        == (INVOICE, date(2025, 10, 1), date(2025, 12, 31))
        for a in activated
    )
    assert all(line.activated_at is not None for line in await rows(service, InvoiceLine))
    [invoice] = await rows(service, Invoice)
    assert invoice.paid_idr == invoice.total_idr == 2 * PER_WORKER


async def test_payment_below_the_total_activates_nothing(service: Service) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, confirmed(1))
        await publish(br, confirmed(2))
        await publish(br, payment(2 * PER_WORKER - 1, "SP2D-0001"))

    assert await emitted(service, CoverageActivated) == []
    assert all(line.activated_at is None for line in await rows(service, InvoiceLine))
    [invoice] = await rows(service, Invoice)
    assert invoice.paid_idr == 2 * PER_WORKER - 1

    async with TestKafkaBroker(service.broker) as br:
        await publish(br, payment(1, "SP2D-0002"))  # the rest arrives: now everyone is covered

    assert len(await emitted(service, CoverageActivated)) == 2


async def test_repeated_payment_reference_counts_once(service: Service) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, confirmed(1))
        await publish(br, payment(30_000, "SP2D-0001"))
        await publish(br, payment(30_000, "SP2D-0001"))  # announced again, under a new ce_id

        [invoice] = await rows(service, Invoice)
        assert invoice.paid_idr == 30_000
        assert len(await rows(service, Payment)) == 1
        assert await emitted(service, CoverageActivated) == []

        await publish(br, payment(20_400, "SP2D-0002"))

    assert len(await emitted(service, CoverageActivated)) == 1


async def test_confirmation_arriving_after_the_payment_waits_for_more_money(
    service: Service,
) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, confirmed(1))
        await publish(br, payment(PER_WORKER, "SP2D-0001"))
        await publish(br, confirmed(2))

        assert len(await emitted(service, CoverageActivated)) == 1

        await publish(br, payment(PER_WORKER, "SP2D-0002"))

    activated = await emitted(service, CoverageActivated)
    assert sorted(a.worker_id for a in activated) == sorted(
        [confirmed(1).worker_id, confirmed(2).worker_id]
    )


async def test_prepayment_activates_the_worker_as_it_is_invoiced(service: Service) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, confirmed(1))
        await publish(br, payment(3 * PER_WORKER, "SP2D-0001"))  # paid ahead for three
        await publish(br, confirmed(2))

    assert len(await emitted(service, CoverageActivated)) == 2


async def test_two_payments_in_one_batch_activate_each_worker_once(service: Service) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, confirmed(1))
        await deliver_batch(
            service, [payment(PER_WORKER, "SP2D-0001"), payment(1_000, "SP2D-0002")]
        )

    assert len(await emitted(service, CoverageActivated)) == 1


async def test_payment_for_an_unknown_invoice_is_dead_lettered(service: Service) -> None:
    dlq = DeadLetters(service, topics.PAYMENT_RECEIVED)
    stray = payment(50_400, "SP2D-9999", invoice_id="INV-no-such-programme")
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program())
        await publish(br, stray)

    assert service.dead_lettered == 1
    [(body, headers)] = dlq.records
    assert PaymentReceived.model_validate_json(body) == stray
    assert headers["x-lindung-error-code"] == "unknown_invoice"
    assert headers["x-lindung-service"] == "billing"
    assert headers["x-lindung-original-topic"] == topics.PAYMENT_RECEIVED
    assert await rows(service, Payment) == []


async def test_confirmation_for_an_unknown_programme_is_dead_lettered_as_not_ready(
    service: Service,
) -> None:
    dlq = DeadLetters(service, topics.ELIGIBILITY_CONFIRMED)
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, confirmed(1))

    assert [h["x-lindung-error-code"] for _, h in dlq.records] == ["not_ready"]
    assert await emitted(service, ContributionInvoiced) == []


async def test_day_started_warns_only_active_workers_once_per_window(service: Service) -> None:
    paid = [confirmed(1), confirmed(2)]
    unpaid = confirmed(3)
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program(alert_days_before_end=[30]))
        for worker in paid:
            await publish(br, worker)
        await publish(br, payment(2 * PER_WORKER, "SP2D-0001"))
        await publish(br, unpaid)  # invoiced after the payment: not active
        await publish(br, DayStarted(date=date(2025, 11, 30)))  # 31 days before the end: nothing

        assert await emitted(service, CoverageExpiring) == []

        await publish(br, DayStarted(date=date(2025, 12, 1)))  # exactly 30 days before 31 Dec
        await publish(br, DayStarted(date=date(2025, 12, 1)))  # the same day again, new ce_id

    alerts = await emitted(service, CoverageExpiring)
    assert sorted(a.worker_id for a in alerts) == sorted(w.worker_id for w in paid)
    assert all(
        (a.days_left, a.coverage_end, a.alert_size, a.alert_id)
        == (30, date(2025, 12, 31), 2, f"{PROGRAM}:2025-12-31:30d")
        for a in alerts
    )
    assert {a.full_name for a in alerts} == {"Pekerja 1", "Pekerja 2"}
    assert len(await rows(service, ExpiryAlert)) == 2


async def test_each_alert_window_warns_separately(service: Service) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program(alert_days_before_end=[30, 7]))
        await publish(br, confirmed(1))
        await publish(br, payment(PER_WORKER, "SP2D-0001"))
        await publish(br, DayStarted(date=date(2025, 12, 1)))
        await publish(br, DayStarted(date=date(2025, 12, 24)))
        await publish(br, DayStarted(date=date(2025, 12, 24)))

    alerts = await emitted(service, CoverageExpiring)
    assert sorted(a.days_left for a in alerts) == [7, 30]
    assert len({a.alert_id for a in alerts}) == 2


async def test_the_same_day_twice_in_one_batch_warns_once(service: Service) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program(alert_days_before_end=[30]))
        await publish(br, confirmed(1))
        await publish(br, payment(PER_WORKER, "SP2D-0001"))
        await deliver_batch(
            service, [DayStarted(date=date(2025, 12, 1)), DayStarted(date=date(2025, 12, 1))]
        )

    assert len(await emitted(service, CoverageExpiring)) == 1
