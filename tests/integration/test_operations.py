"""The operator's tools against a real broker and running services, through the `lindung` command
as an operator types it: `dlq list` and `dlq replay` (each dead letter re-driven once), and
`outbox replay --since` (what was emitted since then is published again; consumers skip it)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lindung_contracts import DayStarted, RegistrationRequested, cloudevent_headers, topics
from lindung_eligibility.app import create_service as create_eligibility
from lindung_eligibility.settings import EligibilitySettings
from lindung_registration.app import create_service as create_registration
from lindung_registration.settings import RegistrationSettings
from lindung_runtime.kafka import EventClient, Record
from lindung_runtime.operations import REPLAYED_FROM_HEADER
from tests.conftest import run_lindung
from tests.integration.conftest import (
    eventually,
    on_broker,
    running,
    wait_until_consumed,
    wire,
)
from tests.unit.handler_kit import PROGRAM, founding_program

pytestmark = pytest.mark.integration

DLQ = topics.dead_letter_topic(topics.REGISTRATION_REQUESTED)


def request(serial: int) -> RegistrationRequested:
    return RegistrationRequested(
        program_id=PROGRAM,
        nik=f"531801010190{serial:04d}",
        full_name=f"Pekerja {serial}",
        birth_date="1990-01-01",
        gender="L",
        village="Kalembu Ndara Mane",
        district="Wewewa Barat",
    )


async def lindung(bootstrap: str, data_dir: Path, *args: str) -> str:
    """`lindung ARGS` against this broker and data directory; its output (it must succeed)."""
    code, text = await run_lindung(
        *args, env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "LINDUNG_DATA_DIR": str(data_dir)}
    )
    assert code == 0, f"lindung {' '.join(args)}:\n{text}"
    return text


def ce_ids(records: list[Record]) -> list[str]:
    return [r.headers.get("ce_id", "") for r in records]


def niks(records: list[Record]) -> list[str]:
    return sorted(json.loads(r.value)["nik"] for r in records)


async def test_dlq_list_shows_each_code_and_replay_redrives_each_dead_letter_once(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    service = create_registration(RegistrationSettings(**on_broker(data_dir, kafka_bootstrap)))
    outputs = [topics.WORKER_REGISTERED, topics.REGISTRATION_REQUESTED, DLQ]
    async with (
        running(service),
        EventClient(kafka_bootstrap) as client,
        wire(kafka_bootstrap, outputs) as out,
    ):
        await client.publish(founding_program())
        # Real dead letters: what a broken upstream system sends, dead-lettered by registration.
        good = request(1)
        headers = client.headers_for(good)
        await client.publish_raw(topics.REGISTRATION_REQUESTED, b'{"nik": "5318', "k", headers)
        await client.publish_raw(topics.REGISTRATION_REQUESTED, b"\xff\xfe", "k", {})
        await client.publish_raw(
            topics.REGISTRATION_REQUESTED, b'{"program_id": [], "nik": {}}', "k", {}
        )
        wrong_type = client.headers_for(good)
        wrong_type["ce_type"] = "id.lindung.RegistrationRequested.v2"
        await client.publish_raw(
            topics.REGISTRATION_REQUESTED, good.model_dump_json().encode(), good.nik, wrong_type
        )
        await out.wait_for(DLQ, 4)
        await wait_until_consumed(kafka_bootstrap, service, topics.REGISTRATION_REQUESTED)

        # Two valid requests that failed for a reason since fixed (as NotReadyYet leaves them),
        # and one whose event was processed meanwhile (its id is in registration's inbox).
        fixed = [request(2), request(3)]
        processed = request(4)
        processed_id = await client.publish(processed)
        await out.wait_for(topics.WORKER_REGISTERED, 1)
        fixed_ids = [await dead_letter(client, event, "program_not_published") for event in fixed]
        await dead_letter(client, processed, "handler_error", event_id=processed_id)

        listing = await lindung(kafka_bootstrap, data_dir, "dlq", "list", DLQ)
        assert f"{DLQ}: 7 dead letter(s)" in listing
        by_code = re.search(r"By code: (.*)", listing)
        assert by_code is not None, listing
        assert dict(
            (code, int(count))
            for code, count in (part.rsplit(" ", 1) for part in by_code.group(1).split(", "))
        ) == {
            "invalid_json": 2,
            "schema_violation": 1,
            "unexpected_event_type": 1,
            "program_not_published": 2,
            "handler_error": 1,
        }
        assert "registration" in listing

        # Replay only what was fixed: the others are skipped (and marked done).
        replay = await lindung(
            kafka_bootstrap, data_dir, "dlq", "replay", topics.REGISTRATION_REQUESTED,
            "--code", "program_not_published",
        )  # fmt: skip
        assert "Replayed 2 dead letter(s), skipped 5" in replay
        registered = await out.wait_for(topics.WORKER_REGISTERED, 3)
        assert niks(registered) == sorted([processed.nik, *(e.nik for e in fixed)])
        replayed = [
            r for r in out.on(topics.REGISTRATION_REQUESTED) if REPLAYED_FROM_HEADER in r.headers
        ]
        assert sorted(ce_ids(replayed)) == sorted(fixed_ids)  # the events' own ids, kept
        assert all(not k.startswith("x-lindung-error") for r in replayed for k in r.headers)

        # Progress is the replay group's committed offset: a second run replays nothing.
        again = await lindung(kafka_bootstrap, data_dir, "dlq", "replay", DLQ)
        assert "Replayed 0 dead letter(s)" in again

        # A new dead letter is replayed on the next run, alone; an event already processed is
        # skipped by the inbox, so re-driving it changes nothing.
        await dead_letter(client, processed, "handler_error", event_id=processed_id)
        later = request(5)
        later_id = await dead_letter(client, later, "program_not_published")
        third = await lindung(kafka_bootstrap, data_dir, "dlq", "replay", DLQ)
        assert "Replayed 2 dead letter(s)" in third
        registered = await out.wait_for(topics.WORKER_REGISTERED, 4)
        await wait_until_consumed(kafka_bootstrap, service, topics.REGISTRATION_REQUESTED)
        await out.poll()
        registered = out.on(topics.WORKER_REGISTERED)
        assert niks(registered) == sorted([processed.nik, later.nik, *(e.nik for e in fixed)])
        assert later_id in ce_ids(out.on(topics.REGISTRATION_REQUESTED))
        assert len(out.on(DLQ)) == 9  # nothing failed again


async def dead_letter(
    client: EventClient, event: RegistrationRequested, code: str, event_id: str | None = None
) -> str:
    """Put `event` on the dead-letter topic as the runtime does (original headers + error)."""
    headers = cloudevent_headers(event.ce_type(), "/upstream/village", event_id=event_id)
    headers.update(
        {
            "x-lindung-error-code": code,
            "x-lindung-error": f"{code}: failed before the fix",
            "x-lindung-service": "registration",
            "x-lindung-original-topic": topics.REGISTRATION_REQUESTED,
            "x-lindung-original-partition": "0",
            "x-lindung-original-offset": "0",
            "x-lindung-failed-at": datetime.now(UTC).isoformat(),
        }
    )
    await client.publish_raw(DLQ, event.model_dump_json().encode(), event.key(), headers)
    return headers["ce_id"]


async def test_outbox_replay_since_republishes_what_was_emitted_and_consumers_skip_it(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    settings: dict[str, Any] = on_broker(data_dir, kafka_bootstrap)
    registration = create_registration(RegistrationSettings(**settings))
    eligibility = create_eligibility(EligibilitySettings(**settings))
    outputs = [topics.WORKER_REGISTERED, topics.ELIGIBILITY_CONFIRMED, topics.ELIGIBILITY_REJECTED]
    async with (
        running(registration, eligibility),
        EventClient(kafka_bootstrap) as client,
        wire(kafka_bootstrap, outputs) as out,
    ):
        await client.publish(founding_program())
        await client.publish(DayStarted(date=date(2025, 10, 1)))
        for serial in (1, 2):
            await client.publish(request(serial))
        before = await out.wait_for(topics.WORKER_REGISTERED, 2)
        await out.wait_for(topics.ELIGIBILITY_CONFIRMED, 2)
        since = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        await asyncio.sleep((since - datetime.now(UTC)).total_seconds() + 0.1)
        for serial in (3, 4, 5):
            await client.publish(request(serial))
        after = [r for r in await out.wait_for(topics.WORKER_REGISTERED, 5) if r not in before]
        await out.wait_for(topics.ELIGIBILITY_CONFIRMED, 5)
        decisions_before = len(out.on(topics.ELIGIBILITY_CONFIRMED))

        moment = since.strftime("%Y-%m-%d %H:%M:%S")
        replay = await lindung(
            kafka_bootstrap, data_dir, "outbox", "replay", "--since", moment,
            "--service", "registration", "--service", "eligibility",
        )  # fmt: skip
        # Exactly what was written since then: 3 registrations, 3 decisions.
        assert "registration: 3 event(s) queued for publishing again" in replay
        assert "eligibility: 3 event(s) queued for publishing again" in replay

        registered = await out.wait_for(topics.WORKER_REGISTERED, 8)
        confirmed = await out.wait_for(topics.ELIGIBILITY_CONFIRMED, 8)
        again = registered[5:]
        assert sorted(ce_ids(again)) == sorted(ce_ids(after))  # the same events, same ids
        assert [r.value for r in sorted(again, key=lambda r: r.headers["ce_id"])] == [
            r.value for r in sorted(after, key=lambda r: r.headers["ce_id"])
        ]

        # Eligibility recognised the re-published registrations and decided nothing again: the
        # only new decision records are its own 3 re-published ones (same ids).
        await wait_until_consumed(kafka_bootstrap, eligibility, topics.WORKER_REGISTERED)
        await asyncio.sleep(1.0)
        await out.poll()
        confirmed = out.on(topics.ELIGIBILITY_CONFIRMED)
        assert len(confirmed) == decisions_before + 3
        assert len(set(ce_ids(confirmed))) == decisions_before == 5
        assert out.on(topics.ELIGIBILITY_REJECTED) == []

        # And once more, now that it has all been published: the count is the same, no more.
        replay = await lindung(
            kafka_bootstrap, data_dir, "outbox", "replay", "--since", moment,
            "--service", "registration",
        )  # fmt: skip
        assert "registration: 3 event(s) queued for publishing again" in replay
        await eventually(
            lambda: _count(out, topics.WORKER_REGISTERED, 11), what="the second re-publication"
        )
        await wait_until_consumed(kafka_bootstrap, eligibility, topics.WORKER_REGISTERED)
        await asyncio.sleep(1.0)
        await out.poll()
        assert len(set(ce_ids(out.on(topics.WORKER_REGISTERED)))) == 5
        assert len(set(ce_ids(out.on(topics.ELIGIBILITY_CONFIRMED)))) == 5


async def _count(out: Any, topic: str, count: int) -> bool:
    await out.poll()
    return len(out.on(topic)) >= count
