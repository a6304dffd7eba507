"""Registration against a real broker: CloudEvents on the wire, dead letters, offsets committed
after processing, and no duplicate output when events are delivered again after a restart."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata

from lindung_contracts import RegistrationRejected, RegistrationRequested, WorkerRegistered, topics
from lindung_registration.app import create_service
from lindung_registration.db import Worker
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import Service
from lindung_runtime.kafka import EventClient
from tests.integration.conftest import (
    count_rows,
    eventually,
    group_of,
    lag,
    on_broker,
    outbox_drained,
    running,
    wait_until_consumed,
    wire,
)
from tests.unit.handler_kit import PROGRAM, founding_program

pytestmark = pytest.mark.integration

OUTPUTS = [topics.WORKER_REGISTERED, topics.REGISTRATION_REJECTED]


def registration(data_dir: Path, bootstrap: str) -> Service:
    return create_service(RegistrationSettings(**on_broker(data_dir, bootstrap)))


def request(serial: int, **overrides: Any) -> RegistrationRequested:
    fields: dict[str, Any] = {
        "program_id": PROGRAM,
        "nik": f"531801010190{serial:04d}",
        "full_name": f"Pekerja {serial}",
        "birth_date": "1990-01-01",
        "gender": "L",
        "village": "Kalembu Ndara Mane",
        "district": "Wewewa Barat",
        "phone": "0812 3456 7890",
    }
    fields.update(overrides)
    return RegistrationRequested(**fields)


async def rewind(bootstrap: str, group: str, topic: str) -> None:
    """Commit offset 0 on every partition for `group`, as a member of it (brokers refuse commits
    from outside a group they know)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await eventually(lambda: consumer.assignment(), what=f"an assignment in {group}")
        await consumer.commit({tp: OffsetAndMetadata(0, "") for tp in consumer.assignment()})
    finally:
        await consumer.stop()


def worker_ids(records: list[Any]) -> list[str]:
    return [json.loads(r.value)["worker_id"] for r in records]


@pytest.mark.integration
async def test_request_on_the_wire_becomes_worker_registered_with_cloudevents_headers(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    service = registration(data_dir, kafka_bootstrap)
    trace_id = uuid.uuid4().hex
    good, bad = request(1), request(2, nik="5318-01", gender="?")
    async with (
        running(service),
        EventClient(kafka_bootstrap) as client,
        wire(kafka_bootstrap, OUTPUTS) as out,
    ):
        await client.publish(founding_program())
        headers = client.headers_for(good)
        headers["traceparent"] = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
        await client.publish_raw(good.TOPIC, good.model_dump_json().encode(), good.key(), headers)
        bad_id = await client.publish(bad)

        [record] = await out.wait_for(topics.WORKER_REGISTERED, 1)
        [rejection] = await out.wait_for(topics.REGISTRATION_REJECTED, 1)
        # The relay sent these through its own aiokafka producer, not FastStream's slower
        # publish path (which it falls back to only without a broker address).
        assert service.outbox.producer is not None

    assert record.key == "5318010101900001"
    event = WorkerRegistered.model_validate_json(record.value)
    assert (event.nik, event.gender, event.phone) == ("5318010101900001", "M", "+6281234567890")
    assert record.headers["ce_type"] == WorkerRegistered.ce_type()
    assert record.headers["ce_source"] == "/lindung/registration"
    assert record.headers["ce_specversion"] == "1.0"
    assert record.headers["ce_id"] and record.headers["ce_id"] != headers["ce_id"]
    assert record.headers["content-type"] == "application/json"
    # The producer's trace continues through the handler and the outbox relay.
    assert record.headers["traceparent"].split("-")[1] == trace_id

    rejected = RegistrationRejected.model_validate_json(rejection.value)
    assert rejection.key == "5318-01"
    assert rejected.request_id == bad_id
    assert {e.field for e in rejected.errors} == {"nik", "gender"}
    assert rejection.headers["ce_type"] == RegistrationRejected.ce_type()


@pytest.mark.integration
async def test_malformed_json_between_two_good_requests_is_dead_lettered(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    service = registration(data_dir, kafka_bootstrap)
    broken = b'{"program_id": "sbd-pekerja-rentan-2025q4", "nik": "53180101'
    first, second = request(1), request(2)
    async with (
        running(service),
        EventClient(kafka_bootstrap) as client,
        wire(
            kafka_bootstrap, [*OUTPUTS, topics.dead_letter_topic(topics.REGISTRATION_REQUESTED)]
        ) as out,
    ):
        await client.publish(founding_program())
        key = "same-partition"  # all three in one partition, in this order
        await client.publish_raw(
            first.TOPIC, first.model_dump_json().encode(), key, client.headers_for(first)
        )
        bad_headers = client.headers_for(first)
        await client.publish_raw(topics.REGISTRATION_REQUESTED, broken, key, bad_headers)
        await client.publish_raw(
            second.TOPIC, second.model_dump_json().encode(), key, client.headers_for(second)
        )

        registered = await out.wait_for(topics.WORKER_REGISTERED, 2)
        [dead] = await out.wait_for(topics.dead_letter_topic(topics.REGISTRATION_REQUESTED), 1)
        await wait_until_consumed(kafka_bootstrap, service, topics.REGISTRATION_REQUESTED)

    assert sorted(WorkerRegistered.model_validate_json(r.value).nik for r in registered) == [
        "5318010101900001",
        "5318010101900002",
    ]
    assert dead.value == broken
    assert dead.key == key
    assert dead.headers["x-lindung-error-code"] == "invalid_json"
    assert dead.headers["x-lindung-service"] == "registration"
    assert dead.headers["x-lindung-original-topic"] == topics.REGISTRATION_REQUESTED
    assert dead.headers["x-lindung-error"].startswith("JSONDecodeError")
    assert dead.headers["ce_id"] == bad_headers["ce_id"]
    assert await count_rows(service, Worker) == 2


@pytest.mark.integration
async def test_offsets_are_committed_only_once_requests_are_processed(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    service = registration(data_dir, kafka_bootstrap)
    await service.prepare()  # the topics, with their partitions, before anything is published
    async with EventClient(kafka_bootstrap) as client:
        await client.publish(founding_program())
        for serial in range(1, 6):
            await client.publish(request(serial))
    assert await lag(kafka_bootstrap, service, topics.REGISTRATION_REQUESTED) == 5

    async with running(service), wire(kafka_bootstrap, OUTPUTS) as out:
        await out.wait_for(topics.WORKER_REGISTERED, 5)
        await wait_until_consumed(kafka_bootstrap, service, topics.REGISTRATION_REQUESTED)


@pytest.mark.integration
async def test_restarted_service_does_not_repeat_what_it_already_registered(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    """At-least-once in both ways it happens: the group re-reads records it had processed (offsets
    rewound, as after a crash before the commit), and upstream re-sends with the same ce_id."""
    requests = [request(n) for n in (1, 2, 3)]
    ids = [str(uuid.uuid4()) for _ in requests]

    first = registration(data_dir, kafka_bootstrap)
    async with running(first), EventClient(kafka_bootstrap) as client:
        await client.publish(founding_program())
        for req, ce_id in zip(requests, ids, strict=True):
            await client.publish(req, event_id=ce_id)
        async with wire(kafka_bootstrap, OUTPUTS) as out:
            await out.wait_for(topics.WORKER_REGISTERED, 3)
        await wait_until_consumed(kafka_bootstrap, first, topics.REGISTRATION_REQUESTED)
        assert await outbox_drained(first)

    # While no instance runs, rewind the group to the start: everything will be delivered again.
    await rewind(
        kafka_bootstrap,
        group_of(first, topics.REGISTRATION_REQUESTED),
        topics.REGISTRATION_REQUESTED,
    )
    assert await lag(kafka_bootstrap, first, topics.REGISTRATION_REQUESTED) == 3

    second = registration(data_dir, kafka_bootstrap)  # a new instance, the same database
    newcomer = request(4)
    async with running(second), EventClient(kafka_bootstrap) as client:
        for req, ce_id in zip(requests, ids, strict=True):
            await client.publish(req, event_id=ce_id)  # re-sent by upstream, same ids
        await client.publish(requests[0])  # re-sent under a new id: idempotent on programme + NIK
        await client.publish(newcomer)
        async with wire(kafka_bootstrap, OUTPUTS) as out:
            await out.wait_for(topics.WORKER_REGISTERED, 4)
            await wait_until_consumed(kafka_bootstrap, second, topics.REGISTRATION_REQUESTED)
            await eventually(lambda: outbox_drained(second), what="the outbox to drain")
            records = await out.poll()

    registered = [r for r in records if r.topic == topics.WORKER_REGISTERED]
    assert len(registered) == 4, [r.value for r in registered]
    assert len(set(worker_ids(registered))) == 4
    assert {r.key for r in registered} == {req.nik for req in [*requests, newcomer]}
    assert await count_rows(second, Worker) == 4
