"""The reliable consumer believes an event only from a source its topic trusts, and what it says
about a failure (dead-letter headers, logs) never quotes a worker's NIK, name or SQL values."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.testing import build_message
from sqlalchemy import exc as sa_exc
from structlog.testing import capture_logs

from lindung_contracts import DayStarted, Event, PaymentReceived, cloudevent_headers, topics
from lindung_eligibility.app import create_service as create_eligibility
from lindung_eligibility.settings import EligibilitySettings
from lindung_registration.app import create_service
from lindung_registration.db import PaymentRecord
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import Service
from lindung_runtime.messages import Message, Outgoing
from lindung_runtime.pipeline import Route, describe
from lindung_runtime.settings import LindungSettings
from tests.sources import trusted_source
from tests.unit.handler_kit import QUICK_GIVE_UP, DeadLetters, rows, with_tables

NIK = "5318014101900002"
PAID = datetime(2025, 10, 15, 9, tzinfo=UTC)


def payment(n: int) -> PaymentReceived:
    return PaymentReceived(
        invoice_id=f"INV-{n}", amount_idr=50_400, paid_at=PAID, reference=f"SP2D-{n}"
    )


@pytest.fixture
async def service(data_dir: Path) -> AsyncIterator[Service]:
    settings = RegistrationSettings(LINDUNG_DATA_DIR=str(data_dir), **QUICK_GIVE_UP)
    async with with_tables(create_service(settings)) as svc:
        yield svc


async def deliver(
    service: Service,
    records: Sequence[tuple[Event, str | None]],
    ids: list[str] | None = None,
) -> None:
    """The events (of one topic) as ONE fetched batch, each from its given `ce_source` (None:
    no header), under the given CloudEvents ids (else new ones)."""
    topic = records[0][0].TOPIC
    subscriber = next(
        s
        for s in service.broker.subscribers
        if any(t.name == topic for t in s.topics)  # type: ignore[attr-defined]
    )
    messages = []
    for i, (event, source) in enumerate(records):
        headers = cloudevent_headers(event.ce_type(), source or "")
        if ids is not None:
            headers["ce_id"] = ids[i]
        if source is None:
            del headers["ce_source"]
        messages.append(
            await build_message(
                event.model_dump_json().encode(),
                topic=topic,
                headers=headers,
                serializer=None,
            )
        )
    await subscriber.process_message(messages)


async def test_a_forged_payment_is_dead_lettered_and_the_good_ones_around_it_are_processed(
    service: Service,
) -> None:
    dlq = DeadLetters(service, topics.PAYMENT_RECEIVED)
    async with TestKafkaBroker(service.broker):
        await deliver(
            service,
            [
                (payment(1), "/upstream/payment/bank-ntt"),
                (payment(2), "/upstream/village"),  # a village system may not announce payments
                (payment(3), None),
                (payment(4), "/upstream/payments"),  # not a continuation of /upstream/payment
                (payment(5), trusted_source(topics.PAYMENT_RECEIVED)),
            ],
        )

    assert sorted(r.invoice_id for r in await rows(service, PaymentRecord)) == ["INV-1", "INV-5"]
    assert [h["x-lindung-error-code"] for _, h in dlq.records] == ["untrusted_source"] * 3
    assert [h.get("ce_source") for _, h in dlq.records] == [
        "/upstream/village",
        None,
        "/upstream/payments",
    ]
    assert service.dead_lettered == 3


async def test_one_log_line_per_batch_plus_one_per_failure(data_dir: Path) -> None:
    """On a topic whose consumer keeps an inbox (eligibility's business days), so that the
    redelivered records are counted as duplicates."""
    trusted = trusted_source(topics.DAY_STARTED)
    days = [DayStarted(date=date(2025, 10, day)) for day in (1, 2, 3)]
    batch = [(days[0], trusted), (days[1], "/upstream/village"), (days[2], trusted)]
    ids = ["day-1", "day-2", "day-3"]
    settings = EligibilitySettings(LINDUNG_DATA_DIR=str(data_dir), **QUICK_GIVE_UP)
    async with (
        with_tables(create_eligibility(settings)) as service,
        TestKafkaBroker(service.broker),
    ):
        with capture_logs() as first:
            await deliver(service, batch, ids)
        with capture_logs() as again:  # the same records redelivered
            await deliver(service, batch, ids)

    def lines(logs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (e["event"], e.get("records"), e.get("duplicates"), e.get("dead_lettered"))
            for e in logs
            if e["log_level"] != "debug"
        ]

    assert lines(first) == [("event_dead_lettered", None, None, None), ("batch_processed", 3, 0, 1)]
    assert lines(again) == [("event_dead_lettered", None, None, None), ("batch_processed", 3, 2, 1)]


async def test_trusted_sources_setting_adds_an_operators_own_upstream(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "TRUSTED_SOURCES", json.dumps({topics.PAYMENT_RECEIVED: ["/upstream/bank-ntt"]})
    )
    settings = RegistrationSettings(LINDUNG_DATA_DIR=str(data_dir))
    assert settings.trusted_sources_for(topics.PAYMENT_RECEIVED) == (
        "/upstream/payment",
        "/lindung/cli",
        "/upstream/bank-ntt",
    )
    async with with_tables(create_service(settings)) as service:
        dlq = DeadLetters(service, topics.PAYMENT_RECEIVED)
        async with TestKafkaBroker(service.broker):
            await deliver(service, [(payment(1), "/upstream/bank-ntt/sp2d"), (payment(2), "/x")])
        assert [r.invoice_id for r in await rows(service, PaymentRecord)] == ["INV-1"]
        assert [h["x-lindung-error-code"] for _, h in dlq.records] == ["untrusted_source"]


def test_production_defaults_trust_only_the_contracts_sources() -> None:
    settings = LindungSettings()
    assert settings.trusted_sources_for(topics.WORKER_REGISTERED) == ("/lindung/registration",)
    assert settings.trusted_sources_for(topics.REGISTRATION_REQUESTED) == (
        "/upstream/village",
        "/upstream/labour-office",
        "/lindung/cli",
    )


async def test_dead_letter_headers_and_logs_never_quote_the_workers_values(
    service: Service,
) -> None:
    """A database error quotes its statement and parameters, a handler's message anything."""
    statement = "INSERT INTO payment_record (invoice_id, reference) VALUES (?, ?)"
    failures: list[Exception] = [
        sa_exc.IntegrityError(statement, (NIK, "Maria Kaka"), Exception("UNIQUE failed")),
        ValueError(f"no invoice for NIK {NIK} born 01/01/1990"),
    ]

    async def failing(batch: list[Message[PaymentReceived]], tx: Any) -> list[Outgoing]:
        raise failures.pop(0) if len(failures) > 1 else failures[0]

    route = service.routes[topics.PAYMENT_RECEIVED]
    service.routes[topics.PAYMENT_RECEIVED] = Route(failing, route.event_type)
    dlq = DeadLetters(service, topics.PAYMENT_RECEIVED)
    with capture_logs() as logs:
        async with TestKafkaBroker(service.broker):
            await deliver(service, [(payment(1), trusted_source(topics.PAYMENT_RECEIVED))])

    [(_, headers)] = dlq.records
    said = [headers["x-lindung-error"], *(str(line.get("error")) for line in logs)]
    assert headers["x-lindung-error-code"] == "handler_error"
    assert any("IntegrityError" in text for text in said)  # what went wrong is still said
    for text in said:
        assert NIK not in text and "Maria Kaka" not in text and "01/01/1990" not in text, text
        assert "INSERT" not in text, text


def test_a_database_error_is_described_by_its_class_codes_and_message_never_its_values() -> None:
    error = sa_exc.IntegrityError("UPDATE worker SET nik=?", (NIK,), KeyError("Maria Kaka"))
    assert describe(error) == "IntegrityError: KeyError (gkpj) '…'"
    dated = sa_exc.DataError(
        "INSERT", (NIK,), ValueError('invalid input syntax for type date: "31/02/1990"')
    )
    assert describe(dated) == "DataError: ValueError (9h9h) invalid input syntax for type date: '…'"
    # What the operator needs in the log and the database-locked scenario looks for:
    locked = sa_exc.OperationalError(
        "INSERT", (NIK,), sqlite3.OperationalError("database is locked")
    )
    assert describe(locked) == "OperationalError: OperationalError (e3q8) database is locked"
