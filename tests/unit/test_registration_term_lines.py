"""Registration's `term_line` rows: each worker's invoice line of each term, in columns, projected
from `contribution.invoiced` (run in memory through the real runtime middleware)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker

from lindung_contracts import ContributionInvoiced
from lindung_registration.app import create_service
from lindung_registration.db import TermLine, TimelineEntry, WorkerStatus
from lindung_registration.domain import worker_id_for
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import FixedClock, Service
from tests.unit.handler_kit import PROGRAM, deliver_batch, publish, rows, with_tables

NOW = datetime(2025, 10, 1, 8, 30, tzinfo=UTC)
NIK_WOMAN = "5318014101900002"
NIK_MAN = "5318010101850001"


def invoiced(nik: str = NIK_WOMAN, **overrides: Any) -> ContributionInvoiced:
    fields: dict[str, Any] = {
        "worker_id": worker_id_for(PROGRAM, nik),
        "program_id": PROGRAM,
        "nik": nik,
        "invoice_id": f"INV-{PROGRAM}",
        "periods": ["2025-10", "2025-11", "2025-12"],
        "monthly_amount_idr": 16_800,
        "amount_idr": 50_400,
        "components": {"JKK": 10_000, "JKM": 6_800},
    }
    fields.update(overrides)
    return ContributionInvoiced(**fields)


def line_of(line: TermLine) -> tuple[Any, ...]:
    return (
        line.program_id,
        line.invoice_id,
        line.first_month,
        line.months,
        line.monthly_amount_idr,
        line.amount_idr,
    )


async def lines(service: Service) -> dict[tuple[str, int], tuple[Any, ...]]:
    return {(t.worker_id, t.term): line_of(t) for t in await rows(service, TermLine)}


@pytest.fixture
async def service(data_dir: Path) -> AsyncIterator[Service]:
    settings = RegistrationSettings(LINDUNG_DATA_DIR=str(data_dir))
    async with with_tables(create_service(settings, clock=FixedClock(NOW))) as svc:
        yield svc


async def test_each_invoice_line_is_a_term_line_and_a_redelivery_changes_nothing(
    service: Service,
) -> None:
    woman, man = worker_id_for(PROGRAM, NIK_WOMAN), worker_id_for(PROGRAM, NIK_MAN)
    renewal = invoiced(
        invoice_id=f"INV-{PROGRAM}-2",
        # Periods in any order: the first month is the earliest.
        periods=["2026-03", "2026-01", "2026-02", "2026-04", "2026-05", "2026-06"],
        amount_idr=3_000_000_000,  # past 2**31: BIGINT
        monthly_amount_idr=500_000_000,
        term=2,
    )
    async with TestKafkaBroker(service.broker) as br:
        first = await publish(br, invoiced())
        await publish(br, invoiced(NIK_MAN, periods=["2025-12"], amount_idr=16_800))
        await publish(br, renewal)
        # Redelivered, even with other content: the timeline has its id, nothing changes.
        await publish(br, invoiced(amount_idr=1, periods=["2024-01"]), ce_id=first)

    assert await lines(service) == {
        (woman, 1): (PROGRAM, f"INV-{PROGRAM}", date(2025, 10, 1), 3, 16_800, 50_400),
        (man, 1): (PROGRAM, f"INV-{PROGRAM}", date(2025, 12, 1), 1, 16_800, 16_800),
        (woman, 2): (
            PROGRAM,
            f"INV-{PROGRAM}-2",
            date(2026, 1, 1),
            6,
            500_000_000,
            3_000_000_000,
        ),
    }
    assert len(await rows(service, TimelineEntry)) == 3
    statuses = {s.worker_id: s.invoiced_idr for s in await rows(service, WorkerStatus)}
    assert statuses == {woman: 50_400 + 3_000_000_000, man: 16_800}


async def test_a_later_line_of_the_same_term_replaces_it_and_a_batch_s_last_wins(
    service: Service,
) -> None:
    woman = worker_id_for(PROGRAM, NIK_WOMAN)
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, invoiced())
        await deliver_batch(
            service,
            [
                invoiced(invoice_id="INV-A", periods=["2025-11", "2025-12"], amount_idr=33_600),
                invoiced(invoice_id="INV-B", periods=["2025-12"], amount_idr=16_800),
            ],
        )

    assert await lines(service) == {
        (woman, 1): (PROGRAM, "INV-B", date(2025, 12, 1), 1, 16_800, 16_800),
    }
    assert len(await rows(service, TimelineEntry)) == 3


async def test_a_line_of_no_period_is_on_the_timeline_but_not_a_term_line(
    service: Service,
) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, invoiced(periods=[], amount_idr=0, monthly_amount_idr=0))

    assert await lines(service) == {}
    [entry] = await rows(service, TimelineEntry)
    assert entry.kind == "invoiced"
