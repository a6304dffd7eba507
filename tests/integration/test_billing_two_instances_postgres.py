"""Two billing instances on one PostgreSQL database write one invoice concurrently and still agree
with its lines: the total is the sum of the lines to the Rupiah, and once the sponsor has paid it
all, every line is activated exactly once, whichever instance added the line and whichever saw
the payment.

The race it guards: instance A adds lines to the invoice while instance B records a payment. With
read-modify-write of the invoice's totals, measured, 20,000 lines summing to Rp 1,008,000,000 left
an invoice reading Rp 628,185,600; and a line A added while B decided "fully paid" was invisible
to B and judged by A against a stale paid amount, so it waited for a payment that never came.
PostgreSQL only: SQLite serialises writers, so there is no race to lose there.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker
from sqlalchemy import func, text
from sqlmodel import col, select

from lindung_billing.app import create_service
from lindung_billing.db import Invoice, InvoiceLine, Payment, Program
from lindung_billing.settings import BillingSettings
from lindung_contracts import (
    CoverageActivated,
    EligibilityConfirmed,
    Event,
    PaymentReceived,
    topics,
)
from lindung_runtime import Service
from lindung_runtime.messages import Message
from lindung_runtime.migrations import upgrade_async
from tests.conftest import POSTGRES_URL
from tests.integration.conftest import (
    eventually,
    lag,
    on_broker,
    outbox_drained,
    running,
    wait_for_rows,
    wire,
)
from tests.sources import TrustedClient
from tests.unit.handler_kit import (
    PROGRAM,
    QUICK_GIVE_UP,
    deliver_batch,
    emitted,
    founding_program,
    rows,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not POSTGRES_URL, reason="LINDUNG_TEST_POSTGRES_URL not set (.ci/run)"),
]

INVOICE = f"INV-{PROGRAM}"
WORKERS = 20_000
PER_WORKER = 3 * 16_800  # Oct-Dec 2025 at JKK Rp 10,000 + JKM Rp 6,800
TOTAL = WORKERS * PER_WORKER  # Rp 1,008,000,000
CHUNKS = 10  # lines published in 10 chunks, a payment for one chunk's worth between each two
SETTLE_SECONDS = 600.0  # an upper bound on two cores, not a timing assertion


class TaggedClock:
    """The wall clock, with the microsecond's last digit set to the instance's tag: a line's
    `activated_at` then says which instance activated it."""

    def __init__(self, tag: int) -> None:
        self.tag = tag

    def now(self) -> datetime:
        now = datetime.now(UTC)
        return now.replace(microsecond=now.microsecond // 10 * 10 + self.tag)


def billing(data_dir: Path, bootstrap: str, tag: int) -> Service:
    settings = on_broker(data_dir, bootstrap, consumer_batch_size=200)
    return create_service(BillingSettings(**settings), clock=TaggedClock(tag))


def confirmed(serial: int) -> EligibilityConfirmed:
    nik = f"5318010101{serial:06d}"
    return EligibilityConfirmed(
        worker_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PROGRAM}/{nik}")),
        program_id=PROGRAM,
        nik=nik,
        coverage_start=date(2025, 10, 1),
        coverage_end=date(2025, 12, 31),
        decided_at=datetime(2025, 9, 30, tzinfo=UTC),
        full_name=f"Pekerja {serial}",
    )


def paid(chunk: int) -> PaymentReceived:
    return PaymentReceived(
        invoice_id=INVOICE,
        amount_idr=TOTAL // CHUNKS,
        paid_at=datetime(2025, 10, 1, tzinfo=UTC),
        reference=f"SP2D-2025-{chunk:04d}",
    )


def assigned(service: Service, topic: str) -> set[int]:
    return {
        tp.partition
        for sub in service.broker.subscribers
        if any(t.name == topic for t in sub.topics) and sub.consumer is not None
        for tp in sub.consumer.assignment()
    }


def processed(service: Service, topic: str) -> int:
    return int(service.metrics.consumed.labels(service.name, topic, "processed")._value.get())


def interleaved() -> tuple[list[Event], list[Event]]:
    """Chunk 0 of the lines; then alternately a payment for one chunk's worth and the next
    chunk: the money runs about level with the lines, so some lines find it already there
    (activated as they are added) and some wait for the next payment (activated by it)."""
    workers = [confirmed(n) for n in range(WORKERS)]
    size = WORKERS // CHUNKS
    rest: list[Event] = []
    for chunk in range(1, CHUNKS):
        rest.append(paid(chunk))
        rest.extend(workers[chunk * size : (chunk + 1) * size])
    rest.append(paid(CHUNKS))
    return list(workers[:size]), rest


async def test_two_instances_keep_the_invoice_equal_to_its_lines_and_activate_each_once(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    first, second = billing(data_dir, kafka_bootstrap, 1), billing(data_dir, kafka_bootstrap, 2)
    instances = (first, second)
    began = time.monotonic()
    async with running(*instances), TrustedClient(kafka_bootstrap) as client:

        def both_have_partitions() -> bool:
            return all(assigned(s, topics.ELIGIBILITY_CONFIRMED) for s in instances)

        await eventually(both_have_partitions, what="both instances to share the confirmations")
        await client.publish(founding_program())
        await wait_for_rows(first, Program, 1, what="the programme to reach billing")

        async with wire(kafka_bootstrap, [topics.COVERAGE_ACTIVATED]) as out:
            opening, rest = interleaved()
            await client.publish_many(opening)
            # A payment names an invoice its sponsor was sent: one billing knows (an unknown
            # one is dead-lettered). The rest races the opening chunk's lines all the same.
            await wait_for_rows(first, Invoice, 1, what="the invoice to be opened")
            await client.publish_many(rest)

            async def all_consumed() -> bool:
                inputs = (topics.ELIGIBILITY_CONFIRMED, topics.PAYMENT_RECEIVED)
                return all([await lag(kafka_bootstrap, first, topic) == 0 for topic in inputs])

            await eventually(all_consumed, timeout=SETTLE_SECONDS, what="billing to consume all")
            await eventually(
                lambda: outbox_drained(first), timeout=SETTLE_SECONDS, what="the outbox to drain"
            )
            records = await out.poll()
        confirmations = [processed(s, topics.ELIGIBILITY_CONFIRMED) for s in instances]
        payments = [processed(s, topics.PAYMENT_RECEIVED) for s in instances]

        async with first.database.read_session() as session:
            invoice = await session.get(Invoice, INVOICE)
            lines_sum = int((await session.exec(select(func.sum(InvoiceLine.amount_idr)))).one())
            line_count = (await session.exec(select(func.count()).select_from(InvoiceLine))).one()
            payments_sum = int((await session.exec(select(func.sum(Payment.amount_idr)))).one())
            activated_at = (
                await session.exec(
                    select(InvoiceLine.activated_at).where(
                        col(InvoiceLine.activated_at).is_not(None)
                    )
                )
            ).all()
    elapsed = time.monotonic() - began

    assert invoice is not None
    by_instance = Counter(a.microsecond % 10 for a in activated_at if a is not None)
    # Both relays read one outbox, so a row may go out twice (at-least-once): count by ce_id.
    events = {r.headers["ce_id"]: r for r in records}
    per_worker = Counter(json.loads(r.value)["worker_id"] for r in events.values())
    print(
        f"\n{WORKERS:,} lines in {elapsed:.1f} s; confirmations per instance {confirmations}, "
        f"payments per instance {payments}; activations decided per instance "
        f"{dict(sorted(by_instance.items()))}; invoice total Rp {invoice.total_idr:,} "
        f"against lines Rp {lines_sum:,} (lost Rp {lines_sum - invoice.total_idr:,}); "
        f"lines never activated {WORKERS - len(activated_at):,}, activated twice "
        f"{sum(n > 1 for n in per_worker.values())}"
    )
    assert all(confirmations), f"an instance took no confirmations: {confirmations}"
    assert [s.dead_lettered for s in instances] == [0, 0]
    assert line_count == WORKERS and lines_sum == TOTAL
    assert invoice.total_idr == lines_sum, "the invoice's total is not the sum of its lines"
    assert payments_sum == TOTAL and invoice.paid_idr == TOTAL

    # Fully paid: every line activated, and each worker's CoverageActivated emitted once.
    assert len(activated_at) == WORKERS, f"{WORKERS - len(activated_at):,} lines never activated"
    assert len(per_worker) == WORKERS, f"{WORKERS - len(per_worker):,} workers never activated"
    twice = {worker: n for worker, n in per_worker.items() if n > 1}
    assert not twice, f"{len(twice)} workers activated more than once"


# --- the same race, one step at a time ------------------------------------------------------------


async def locks_awaited(service: Service) -> int:
    """Backends of this database waiting for a lock held by another transaction."""
    async with service.database.engine.connect() as connection:
        waiting = await connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return int(waiting.scalar_one())


@pytest.mark.parametrize("held_open", ["line", "payment"])
async def test_a_line_added_while_a_payment_is_decided_is_activated_once(
    data_dir: Path, held_open: str
) -> None:
    """One transaction (the line's or the payment's) is held open half-way while the other runs
    through the consumer: the second must wait for the first and then see its effect, so the
    invoice ends paid up with both lines active, each announced once. Under read-modify-write the
    second ran at once and both judged the invoice without the other's change: the new line was
    left waiting on a paid-up invoice."""
    settings = BillingSettings(LINDUNG_DATA_DIR=str(data_dir), **QUICK_GIVE_UP)
    await upgrade_async("billing", settings.database_url_for("billing"))
    service = create_service(settings)
    line, pay = confirmed(2), paid_for(2)
    first, second = (line, pay) if held_open == "line" else (pay, line)
    try:
        async with TestKafkaBroker(service.broker):
            await deliver_batch(service, [founding_program()])
            await deliver_batch(service, [confirmed(1)])
            async with service.unit_of_work() as uow:  # halfway through `first`'s batch
                route = service.routes[first.TOPIC]
                held = Message(first, "held-open", {}, uow.now())
                uow.emit_all(await route.handler([held], await uow.transaction()))
                racing = asyncio.create_task(deliver_batch(service, [second]))

                async def waits_or_ran() -> bool:
                    return racing.done() or await locks_awaited(service) > 0

                await eventually(waits_or_ran, what="the second transaction to wait or finish")
                await uow.commit()
            await racing
        assert service.dead_lettered == 0

        [invoice] = await rows(service, Invoice)
        assert invoice.paid_idr == invoice.total_idr == 2 * PER_WORKER
        lines = await rows(service, InvoiceLine)
        never = [row.worker_id for row in lines if row.activated_at is None]
        assert len(lines) == 2 and not never, f"paid up, yet lines wait: {never}"
        activated = Counter(e.worker_id for e in await emitted(service, CoverageActivated))
        assert activated == {confirmed(1).worker_id: 1, confirmed(2).worker_id: 1}
    finally:
        await service.database.dispose()


def paid_for(workers: int) -> PaymentReceived:
    return PaymentReceived(
        invoice_id=INVOICE,
        amount_idr=workers * PER_WORKER,
        paid_at=datetime(2025, 10, 1, tzinfo=UTC),
        reference="SP2D-2025-0001",
    )
