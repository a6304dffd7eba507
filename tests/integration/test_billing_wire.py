"""Billing against a real broker: invoice on confirmation, activate on payment, dead-letter a
payment nobody invoiced, warn before coverage ends."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from lindung_billing.app import create_service
from lindung_billing.db import Program
from lindung_billing.settings import BillingSettings
from lindung_contracts import (
    ContributionInvoiced,
    CoverageActivated,
    CoverageExpiring,
    DayStarted,
    EligibilityConfirmed,
    PaymentReceived,
    topics,
)
from tests.integration.conftest import on_broker, running, wait_for_rows, wire
from tests.sources import TrustedClient
from tests.unit.handler_kit import PROGRAM, founding_program

pytestmark = pytest.mark.integration

INVOICE = f"INV-{PROGRAM}"
NOW = datetime(2025, 10, 20, tzinfo=UTC)


def confirmed(serial: int) -> EligibilityConfirmed:
    nik = f"531801010190{serial:04d}"
    return EligibilityConfirmed(
        worker_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PROGRAM}/{nik}")),
        program_id=PROGRAM,
        nik=nik,
        coverage_start=date(2025, 10, 1),
        coverage_end=date(2025, 12, 31),
        decided_at=NOW,
        full_name=f"Pekerja {serial}",
    )


@pytest.mark.integration
async def test_confirmed_workers_are_invoiced_activated_on_payment_and_warned_before_the_end(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    service = create_service(BillingSettings(**on_broker(data_dir, kafka_bootstrap)))
    workers = [confirmed(1), confirmed(2)]
    outputs = [
        topics.CONTRIBUTION_INVOICED,
        topics.COVERAGE_ACTIVATED,
        topics.COVERAGE_EXPIRING,
        topics.dead_letter_topic(topics.PAYMENT_RECEIVED),
    ]
    async with (
        running(service),
        TrustedClient(kafka_bootstrap) as client,
        wire(kafka_bootstrap, outputs) as out,
    ):
        await client.publish(founding_program(alert_days_before_end=[30]))
        await wait_for_rows(service, Program, 1, what="the programme to reach billing")
        for worker in workers:
            await client.publish(worker)
        invoiced = await out.wait_for(topics.CONTRIBUTION_INVOICED, 2)

        stray = PaymentReceived(
            invoice_id="INV-nobody", amount_idr=50_400, paid_at=NOW, reference="SP2D-9999"
        )
        stray_id = await client.publish(stray)
        [dead] = await out.wait_for(topics.dead_letter_topic(topics.PAYMENT_RECEIVED), 1)

        await client.publish(
            PaymentReceived(
                invoice_id=INVOICE, amount_idr=100_800, paid_at=NOW, reference="SP2D-0001"
            )
        )
        activated = await out.wait_for(topics.COVERAGE_ACTIVATED, 2)

        await client.publish(DayStarted(date=date(2025, 12, 1)))
        expiring = await out.wait_for(topics.COVERAGE_EXPIRING, 2)

    lines = [ContributionInvoiced.model_validate_json(r.value) for r in invoiced]
    assert {r.key for r in invoiced} == {w.nik for w in workers}
    assert all(r.headers["ce_type"] == ContributionInvoiced.ce_type() for r in invoiced)
    assert all((line.invoice_id, line.amount_idr) == (INVOICE, 50_400) for line in lines)

    assert dead.headers["x-lindung-error-code"] == "unknown_invoice"
    assert dead.headers["x-lindung-service"] == "billing"
    assert dead.headers["ce_id"] == stray_id
    assert json.loads(dead.value)["invoice_id"] == "INV-nobody"

    assert sorted(
        CoverageActivated.model_validate_json(r.value).worker_id for r in activated
    ) == sorted(w.worker_id for w in workers)
    alerts = [CoverageExpiring.model_validate_json(r.value) for r in expiring]
    assert {(a.days_left, a.alert_size, a.alert_id) for a in alerts} == {
        (30, 2, f"{PROGRAM}:2025-12-31:30d")
    }
