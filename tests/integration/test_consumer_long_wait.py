"""A batch that waits longer than max_poll_interval_ms (for a fact that has not arrived, or for
the database) keeps its consumer in its group: no rebalance, the batch stays this consumer's and
is processed once, when the fact arrives."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import ConsumerRebalanceListener

from lindung_contracts import PaymentReceived, topics
from lindung_runtime import LindungSettings, NotReadyYet, Service
from lindung_runtime.messages import Message, Outgoing, Transaction
from tests.integration.conftest import eventually, on_broker, running, wait_until_consumed
from tests.sources import TrustedClient

MAX_POLL_INTERVAL_MS = 2000


class Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """Counts the group's assignments and revocations of this consumer's partitions."""

    def __init__(self) -> None:
        self.assigned = 0
        self.revoked = 0

    async def on_partitions_revoked(self, revoked: set[object]) -> None:
        if revoked:  # the first join "revokes" nothing
            self.revoked += 1

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.assigned += 1


async def test_a_wait_longer_than_the_poll_interval_keeps_the_consumer_in_its_group(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    settings = LindungSettings(**on_broker(data_dir, kafka_bootstrap, KAFKA_PARTITIONS=1))
    service = Service("waiter", settings, tables=[])
    rebalances = Rebalances()
    invoice_known = asyncio.Event()
    attempts: list[str] = []
    handled: list[str] = []

    async def on_payment(batch: list[Message[PaymentReceived]], tx: Transaction) -> list[Outgoing]:
        attempts.extend(m.event.invoice_id for m in batch)
        if not invoice_known.is_set():
            raise NotReadyYet(f"invoice {batch[0].event.invoice_id} not known yet")
        handled.extend(m.event.invoice_id for m in batch)
        return []

    service.consumer(
        topics.PAYMENT_RECEIVED,
        max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        listener=rebalances,
    )(on_payment)
    payment = PaymentReceived(
        invoice_id="INV-late",
        amount_idr=50_400,
        paid_at=datetime(2025, 10, 15, tzinfo=UTC),
        reference="SP2D-1",
    )
    async with running(service), TrustedClient(kafka_bootstrap) as client:
        await eventually(lambda: rebalances.assigned, what="the partitions to be assigned")
        await client.publish(payment)
        await eventually(lambda: attempts, what="the first attempt")
        # Waiting for the invoice, well past the poll interval (aiokafka leaves the group once no
        # poll has run for that long).
        await asyncio.sleep(3 * MAX_POLL_INTERVAL_MS / 1000)
        invoice_known.set()
        await eventually(lambda: handled, what="the payment to be processed")
        await wait_until_consumed(kafka_bootstrap, service, topics.PAYMENT_RECEIVED)
        assert (rebalances.assigned, rebalances.revoked) == (1, 0)  # never left, never rejoined
        assert len(attempts) > 2  # it did wait (retried with backoff) all along
    assert handled == ["INV-late"]
    assert service.dead_lettered == 0
