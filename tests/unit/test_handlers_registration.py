"""Registration's handler run in memory (FastStream's TestKafkaBroker) through the real runtime
middleware: inbox, transactional outbox and dead letters, against a SQLite file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker

from lindung_contracts import (
    ContributionInvoiced,
    CoverageExpiring,
    EligibilityConfirmed,
    ProgramPublished,
    RegistrationRejected,
    RegistrationRequested,
    WorkerRegistered,
    cloudevent_headers,
    topics,
)
from lindung_registration.app import create_service
from lindung_registration.db import RejectedRequest, TimelineEntry, Worker, WorkerStatus
from lindung_registration.domain import worker_id_for
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import FixedClock, Service
from lindung_runtime.outbox import InboxMessage
from tests.unit.handler_kit import (
    PROGRAM,
    QUICK_GIVE_UP,
    DeadLetters,
    deliver_batch,
    emitted,
    founding_program,
    handle_now,
    outbox,
    publish,
    rows,
    with_tables,
)

NOW = datetime(2025, 10, 1, 8, 30, tzinfo=UTC)
NIK_WOMAN = "5318014101900002"  # Sumba Barat Daya, born 1 Jan 1990, woman (day + 40)


# --- helpers --------------------------------------------------------------------------------------


def request(**overrides: Any) -> RegistrationRequested:
    fields: dict[str, Any] = {
        "program_id": PROGRAM,
        "nik": "5318 0141 0190 0002",
        "full_name": "  Maria   Kaka  ",
        "birth_date": "01/01/1990",
        "gender": "perempuan",
        "occupation": "petani",
        "village": "Kalembu Ndara Mane",
        "district": "Wewewa Barat",
        "phone": "0812-3456-7890",
    }
    fields.update(overrides)
    return RegistrationRequested(**fields)


def publisher(service: Service, topic: str) -> Any:
    return next(p for p in service.broker.publishers if p.topic == topic)


async def know_program(service: Service, program: ProgramPublished | None = None) -> None:
    """The programme published, as registration records it from `program.published`."""
    await handle_now(service, [program or founding_program()])


async def requests_seen(service: Service) -> list[InboxMessage]:
    """The inbox marks of registration requests (programmes published have their own)."""
    return [
        row
        for row in await rows(service, InboxMessage)
        if row.topic == topics.REGISTRATION_REQUESTED
    ]


@pytest.fixture
async def service(data_dir: Path) -> AsyncIterator[Service]:
    """Registration, with the founding case's programme already published."""
    settings = RegistrationSettings(LINDUNG_DATA_DIR=str(data_dir))
    async with with_tables(create_service(settings, clock=FixedClock(NOW))) as svc:
        await know_program(svc)
        yield svc


# --- tests --------------------------------------------------------------------------------------


async def test_valid_request_registers_one_normalised_worker_and_emits_worker_registered(
    service: Service,
) -> None:
    async with TestKafkaBroker(service.broker) as br:
        ce_id = await publish(br, request())

        [worker] = await rows(service, Worker)
        assert worker.nik == NIK_WOMAN  # spaces stripped
        assert worker.gender == "F"  # "perempuan"
        assert worker.phone == "+6281234567890"  # E.164
        assert worker.full_name == "Maria Kaka"
        assert worker.birth_date.isoformat() == "1990-01-01"
        assert worker.worker_id == worker_id_for(PROGRAM, NIK_WOMAN)

        [row] = await outbox(service)
        assert row.topic == topics.WORKER_REGISTERED
        assert row.key == NIK_WOMAN
        assert row.event_type == WorkerRegistered.ce_type()
        assert row.published_at is None
        event = WorkerRegistered.model_validate_json(row.payload)
        assert (event.nik, event.gender, event.phone) == (NIK_WOMAN, "F", "+6281234567890")
        assert event.worker_id == worker.worker_id
        assert event.registered_at == NOW
        headers = json.loads(row.headers)
        assert headers["ce_id"] == row.event_id != ce_id
        assert headers["ce_type"] == WorkerRegistered.ce_type()
        assert headers["ce_source"] == "/lindung/registration"
        assert "traceparent" in headers

        [seen] = await requests_seen(service)
        assert (seen.topic, seen.event_id) == (topics.REGISTRATION_REQUESTED, ce_id)

        # Registration's own event is in the worker timeline from the transaction that emitted
        # it, before any relay (it does not consume it back).
        [entry] = await rows(service, TimelineEntry)
        assert (entry.event_id, entry.kind, entry.nik) == (row.event_id, "registered", NIK_WOMAN)
        assert entry.worker_id == worker.worker_id
        assert entry.occurred_at.replace(tzinfo=NOW.tzinfo) == NOW  # SQLite keeps no zone
        [status] = await rows(service, WorkerStatus)
        assert (status.worker_id, status.registered, status.village) == (
            worker.worker_id,
            True,
            worker.village,
        )

        # The committed row was handed to the relay leased: no poll takes it, the relay sends
        # it to the broker and marks it published.
        assert await service.outbox.relay_once() == 0
        assert await service.outbox.relay_all() == 1
        assert (await outbox(service))[0].published_at is not None
        assert len(await rows(service, TimelineEntry)) == 1  # not projected a second time
        assert await service.outbox.relay_all() == 0


async def test_redelivered_request_with_the_same_ce_id_changes_nothing(service: Service) -> None:
    async with TestKafkaBroker(service.broker) as br:
        ce_id = await publish(br, request())
        await publish(br, request(), ce_id=ce_id)
        # The same id again, even with other content: not even looked at.
        await publish(br, request(full_name="Someone Else"), ce_id=ce_id)

    assert len(await rows(service, Worker)) == 1
    assert len(await outbox(service)) == 1
    assert len(await requests_seen(service)) == 1


async def test_same_worker_under_a_new_ce_id_is_not_registered_twice(service: Service) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, request())
        # Same programme + NIK, written differently, sent again as a new event.
        await publish(br, request(nik=NIK_WOMAN, phone="+62 812 3456 7890", full_name="MARIA KAKA"))

    [worker] = await rows(service, Worker)
    assert worker.full_name == "Maria Kaka"  # the first registration stands
    assert len(await outbox(service, topics.WORKER_REGISTERED)) == 1
    assert len(await requests_seen(service)) == 2  # both events were processed


async def test_same_worker_twice_in_one_batch_is_registered_once(service: Service) -> None:
    async with TestKafkaBroker(service.broker):
        await deliver_batch(service, [request(), request(nik=NIK_WOMAN)])

    assert len(await rows(service, Worker)) == 1
    assert len(await outbox(service, topics.WORKER_REGISTERED)) == 1


async def test_same_nik_in_another_programme_is_another_worker(service: Service) -> None:
    await know_program(service, founding_program(program_id="sbd-desa-2026"))
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, request())
        await publish(br, request(program_id="sbd-desa-2026"))

    workers = await rows(service, Worker)
    assert sorted(w.program_id for w in workers) == sorted([PROGRAM, "sbd-desa-2026"])
    assert len({w.worker_id for w in workers}) == 2
    assert len(await outbox(service, topics.WORKER_REGISTERED)) == 2


async def test_invalid_request_is_rejected_with_every_field_error(service: Service) -> None:
    bad = request(
        nik="12345",
        full_name="   ",
        birth_date="31/02/1990",
        gender="X",
        village="",
        district="",
        phone="123",
        occupation="x" * 101,
    )
    async with TestKafkaBroker(service.broker) as br:
        ce_id = await publish(br, bad)

    assert await rows(service, Worker) == []
    [row] = await outbox(service)
    assert row.topic == topics.REGISTRATION_REJECTED
    rejected = RegistrationRejected.model_validate_json(row.payload)
    assert rejected.nik == "12345"  # as given
    assert rejected.program_id == PROGRAM
    assert rejected.request_id == ce_id
    assert {e.field: e.code for e in rejected.errors} == {
        "nik": "nik_invalid_length",
        "full_name": "name_required",
        "birth_date": "birth_date_invalid",
        "gender": "gender_invalid",
        "village": "village_required",
        "district": "district_required",
        "phone": "phone_invalid",
        "occupation": "occupation_too_long",
    }
    assert all(e.message for e in rejected.errors)
    # In the timeline and the summary's refusals from the same transaction, keyed by its id.
    [entry] = await rows(service, TimelineEntry)
    assert (entry.event_id, entry.kind, entry.nik) == (
        row.event_id,
        "registration_rejected",
        "12345",
    )
    [refused] = await rows(service, RejectedRequest)
    assert (refused.event_id, refused.program_id) == (row.event_id, PROGRAM)


@pytest.mark.parametrize(
    ("nik", "code"),
    [
        ("", "nik_required"),
        ("53180141019000AB", "nik_invalid_format"),
        ("531801410190002", "nik_invalid_length"),
        ("9918014101900002", "nik_invalid_component"),  # no such province
        ("5318013213900002", "nik_invalid_component"),  # no 13th month
    ],
)
async def test_bad_nik_is_rejected_with_its_own_code(service: Service, nik: str, code: str) -> None:
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, request(nik=nik))

    [row] = await outbox(service)
    rejected = RegistrationRejected.model_validate_json(row.payload)
    assert [(e.field, e.code) for e in rejected.errors] == [("nik", code)]
    assert await rows(service, Worker) == []


async def test_malformed_json_is_dead_lettered_and_the_next_request_is_still_registered(
    service: Service,
) -> None:
    dlq = DeadLetters(service, topics.REGISTRATION_REQUESTED)
    broken = b'{"program_id": "sbd-pekerja-rentan-2025q4", "nik": '
    async with TestKafkaBroker(service.broker) as br:
        headers = cloudevent_headers(RegistrationRequested.ce_type(), "/test")
        await br.publish(broken, topic=topics.REGISTRATION_REQUESTED, headers=headers)

        assert service.dead_lettered == 1
        assert await outbox(service) == []
        assert await requests_seen(service) == []  # never recorded as seen

        await publish(br, request())

    assert service.dead_lettered == 1
    assert len(await rows(service, Worker)) == 1
    assert len(await outbox(service, topics.WORKER_REGISTERED)) == 1
    [(body, dead_headers)] = dlq.records
    assert body == broken
    assert dead_headers["x-lindung-error-code"] == "invalid_json"
    assert dead_headers["x-lindung-service"] == "registration"
    assert dead_headers["x-lindung-original-topic"] == topics.REGISTRATION_REQUESTED
    assert dead_headers["x-lindung-error"]
    assert dead_headers["ce_id"] == headers["ce_id"]  # the original headers travel along


@pytest.mark.parametrize(
    ("body", "ce_type", "code"),
    [
        (b'{"nik": "5318014101900002"}', RegistrationRequested.ce_type(), "schema_violation"),
        (b"[1, 2, 3]", RegistrationRequested.ce_type(), "schema_violation"),
        (b"\xff\xfe\x00", RegistrationRequested.ce_type(), "invalid_json"),
        (request().model_dump_json().encode(), WorkerRegistered.ce_type(), "unexpected_event_type"),
    ],
)
async def test_bad_input_is_dead_lettered_with_its_error_code(
    service: Service, body: bytes, ce_type: str, code: str
) -> None:
    dlq = DeadLetters(service, topics.REGISTRATION_REQUESTED)
    async with TestKafkaBroker(service.broker) as br:
        await br.publish(
            body, topic=topics.REGISTRATION_REQUESTED, headers=cloudevent_headers(ce_type, "/test")
        )

    assert service.dead_lettered == 1
    assert [h["x-lindung-error-code"] for _, h in dlq.records] == [code]
    assert [b for b, _ in dlq.records] == [body]
    assert await outbox(service) == []
    assert await rows(service, Worker) == []


async def test_a_request_for_a_programme_never_published_is_rejected_once_the_wait_runs_out(
    data_dir: Path,
) -> None:
    settings = RegistrationSettings(LINDUNG_DATA_DIR=str(data_dir), **QUICK_GIVE_UP)
    async with with_tables(create_service(settings, clock=FixedClock(NOW))) as service:
        await know_program(service)
        dlq = DeadLetters(service, topics.REGISTRATION_REQUESTED)
        async with TestKafkaBroker(service.broker) as br:
            await publish(br, request(program_id="sbd-typo-2025q4", gender="X"))
            await publish(br, request())

        [rejected] = await emitted(service, RegistrationRejected)
        assert rejected.program_id == "sbd-typo-2025q4"
        assert [(e.field, e.code) for e in rejected.errors] == [
            ("program_id", "program_unknown"),
            ("gender", "gender_invalid"),
        ]
        assert "Program tidak dikenal" in rejected.errors[0].message
        assert len(await emitted(service, WorkerRegistered)) == 1
        assert [r.program_id for r in await rows(service, Worker)] == [PROGRAM]
        assert dlq.records == []  # answered, not dead-lettered


async def test_a_request_arriving_just_before_its_programme_waits_for_it(data_dir: Path) -> None:
    """Published at the same moment, the two topics race: the request waits, then registers."""
    settings = RegistrationSettings(
        LINDUNG_DATA_DIR=str(data_dir), consumer_retry_base_seconds=0.01
    )
    other = founding_program(program_id="sbd-desa-2026")
    async with with_tables(create_service(settings, clock=FixedClock(NOW))) as service:
        async with TestKafkaBroker(service.broker) as br:
            waiting = asyncio.create_task(publish(br, request(program_id=other.program_id)))
            await asyncio.sleep(0.05)  # the request is being retried meanwhile
            assert not waiting.done()
            await publish(br, other)
            await waiting

        [registered] = await emitted(service, WorkerRegistered)
        assert registered.program_id == other.program_id
        assert await emitted(service, RegistrationRejected) == []


async def test_projected_batches_fill_the_funnel_and_each_event_is_one_timeline_entry(
    service: Service,
) -> None:
    """Topics projected independently each change their own columns of the funnel row: the
    place only while empty, alerts by counting; the timeline gets one entry per event."""
    worker_id = worker_id_for(PROGRAM, NIK_WOMAN)
    about = {"worker_id": worker_id, "program_id": PROGRAM, "nik": NIK_WOMAN}
    alert = {"coverage_end": date(2025, 12, 31), "days_left": 30, **about}
    async with TestKafkaBroker(service.broker) as br:
        await deliver_batch(
            service,
            [CoverageExpiring(**alert), CoverageExpiring(**alert, village="Desa A", district="B")],
        )
        await publish(br, request())  # registered: its own place
        confirmed = EligibilityConfirmed(
            coverage_start=date(2025, 10, 1),
            coverage_end=date(2025, 12, 31),
            decided_at=NOW,
            village="Elsewhere",
            district="Elsewhere",
            **about,
        )
        ce_id = await publish(br, confirmed)
        await publish(br, confirmed, ce_id=ce_id)  # redelivered: nothing more
        await deliver_batch(
            service,
            [
                ContributionInvoiced(
                    invoice_id=f"INV-{PROGRAM}",
                    periods=["2025-10", "2025-11", "2025-12"],
                    monthly_amount_idr=16_800,
                    amount_idr=50_400,
                    components={"JKK": 10_000, "JKM": 6_800},
                    **about,
                )
            ],
        )

    [status] = await rows(service, WorkerStatus)
    assert (status.registered, status.eligibility, status.expiry_alerts) == (True, "confirmed", 2)
    assert (status.village, status.district) == ("Kalembu Ndara Mane", "Wewewa Barat")
    assert (status.invoice_id, status.invoiced_idr) == (f"INV-{PROGRAM}", 50_400)
    entries = await rows(service, TimelineEntry)
    assert sorted(e.kind for e in entries) == [
        "coverage_expiring",
        "coverage_expiring",
        "eligibility_confirmed",
        "invoiced",
        "registered",
    ]
    [eligible] = [e for e in entries if e.kind == "eligibility_confirmed"]
    assert eligible.event_id == ce_id
    assert eligible.occurred_at.replace(tzinfo=UTC) == NOW
    assert all(e.trace_id for e in entries)


async def test_a_redelivered_alert_is_counted_once_without_an_inbox(service: Service) -> None:
    """The projections keep no inbox (`inbox=False`): the timeline entry, keyed by the event's
    id, is the mark. A redelivery finds it, and changes the funnel row no more."""
    alert = CoverageExpiring(
        worker_id=worker_id_for(PROGRAM, NIK_WOMAN),
        program_id=PROGRAM,
        nik=NIK_WOMAN,
        coverage_end=date(2025, 12, 31),
        days_left=30,
    )
    async with TestKafkaBroker(service.broker) as br:
        ce_id = await publish(br, alert)
        await publish(br, alert, ce_id=ce_id)  # redelivered
        await publish(br, alert)  # the same alert announced again: a new event
    [status] = await rows(service, WorkerStatus)
    assert status.expiry_alerts == 2
    assert len(await rows(service, TimelineEntry)) == 2
    assert [r for r in await rows(service, InboxMessage) if r.topic == alert.TOPIC] == []
