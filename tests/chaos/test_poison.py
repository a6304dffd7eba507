"""Scenario 3, poison and hostile input: 10,000 generated malformed messages (seeded) on every
consumed topic, sent while the pipeline processes real work on the same topics. Every bad one
reaches a dead-letter topic (from every service that consumes the topic, with the reason) or, if
it has the shape of a request but wrong values, a RegistrationRejected naming the field; every
good one is processed, and no consumer stalls (every group's lag returns to 0).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from lindung_contracts import cloudevent_headers, topics
from lindung_runtime.consumer import TRUNCATED_HEADER
from lindung_runtime.kafka import TopicReader
from tests.chaos.hostile import CONSUMED, Hostile, generate
from tests.chaos.kit import (
    Census,
    System,
    Workload,
    consumers_of,
    drive_lifecycle_after_invoices,
    judge,
    publish,
    raw_producer,
    say,
    settle,
    wait_for_decisions,
)

pytestmark = pytest.mark.chaos

SEED = 20251003
HOSTILE = 10_000
GOOD = 3_000


async def send_hostile(bootstrap: str, messages: list[Hostile], rounds: int, pause: float) -> None:
    """In `rounds` bursts, `pause` seconds apart: interleaved with the real traffic."""
    producer = await raw_producer(bootstrap, linger_ms=5)
    try:
        size = -(-len(messages) // rounds)
        for start in range(0, len(messages), size):
            pending = [
                await producer.send(
                    m.topic,
                    m.value,
                    key=m.key,
                    headers=[(k, v.encode()) for k, v in m.headers.items()],
                )
                for m in messages[start : start + size]
            ]
            await asyncio.gather(*pending)
            await asyncio.sleep(pause)
    finally:
        await producer.stop()


async def send_good_requests(bootstrap: str, workload: Workload, rounds: int, pause: float) -> None:
    """The real registrations, every third with fields the contract does not know (tolerant
    readers ignore them: these must be processed like the others)."""
    producer = await raw_producer(bootstrap, linger_ms=5)
    try:
        size = -(-len(workload.requests) // rounds)
        for start in range(0, len(workload.requests), size):
            pending = []
            for n, request in enumerate(workload.requests[start : start + size], start):
                body = request.event.model_dump(mode="json")
                if n % 3 == 0:
                    body.update({"sumber": "SIAK", "catatan": {"x": [1, 2]}, "versi": 7})
                headers = cloudevent_headers(
                    request.event.ce_type(), "/upstream/village/chaos", event_id=request.event_id
                )
                pending.append(
                    await producer.send(
                        topics.REGISTRATION_REQUESTED,
                        json.dumps(body).encode(),
                        key=request.event.nik.encode(),
                        headers=[(k, v.encode()) for k, v in headers.items()],
                    )
                )
            await asyncio.gather(*pending)
            await asyncio.sleep(pause)
    finally:
        await producer.stop()


@pytest.mark.timeout(480)
async def test_hostile_input_is_dead_lettered_or_rejected_and_good_input_flows(
    work: Path, show: Callable[[str], None]
) -> None:
    """3,000 real registrations (2,850 valid) through the whole lifecycle, among 10,000 hostile
    messages: truncated JSON, random bytes, invalid UTF-8, empty bodies, tombstones, JSON that is
    not an object, wrong types, missing fields, strings of 5-100 KB, unknown fields, wrong or
    mis-versioned ce_type headers, invalid NIKs, no headers at all, and 8 bodies of ~1 MB (just
    under the largest record a default producer may send)."""
    workload = Workload.generate(GOOD, SEED)
    hostile = generate(HOSTILE, SEED)
    started = time.monotonic()
    async with System(work) as system, Census(system.bootstrap) as census:
        await publish(system.bootstrap, workload.setup())
        bad = asyncio.create_task(send_hostile(system.bootstrap, hostile, rounds=20, pause=2.0))
        await send_good_requests(system.bootstrap, workload, rounds=10, pause=2.0)
        await wait_for_decisions(census, workload, timeout=300)
        await drive_lifecycle_after_invoices(system, census, workload, timeout=240)
        await bad
        await settle(system, timeout=300)  # no consumer stalled: every group's lag is 0
        await census.refresh()
        outcome = judge(census, workload, system, through="digest")
        dead, rejected, unexpected = await read_outcomes(system.bootstrap, hostile)

    missing: list[str] = []
    wrong: list[str] = []
    repeated = 0
    for message in hostile:
        what, code = message.expect
        if what == "rejected":
            fields = rejected.get(message.chaos_id)
            if fields is None:
                missing.append(f"{message.chaos_id} ({message.kind} on {message.topic})")
            elif code not in fields:
                wrong.append(f"{message.chaos_id}: rejected on {fields}, expected {code}")
            continue
        letters = dead.get(message.chaos_id, [])
        for service in consumers_of(message.topic):
            mine = [letter for letter in letters if letter[0] == service]
            if not mine:
                missing.append(f"{message.chaos_id} ({message.kind} on {message.topic}, {service})")
                continue
            repeated += len(mine) - 1
            if {(letter[1], letter[2]) for letter in mine} != {
                (topics.dead_letter_topic(message.topic), code)
            }:
                wrong.append(f"{message.chaos_id} ({message.kind}): {mine}, expected {code}")
    dead_letters = sum(len(v) for v in dead.values())
    seconds = time.monotonic() - started
    show(
        outcome.line(
            "poison",
            seconds,
            f"hostile messages {HOSTILE:,} on {len(CONSUMED)} topics: {dead_letters:,} dead "
            f"letters, {len(rejected):,} rejections, {len(missing)} unaccounted, "
            f"{len(wrong)} with the wrong reason, {repeated} dead-lettered twice; good input "
            f"dead-lettered {len(unexpected)}; lag 0",
        )
    )
    assert outcome.problems() == {}
    assert (outcome.duplicates, outcome.lost) == (0, 0)
    assert missing == [], missing[:20]
    assert wrong == [], wrong[:20]
    assert unexpected == [], unexpected[:20]
    say(f"dead letters by code: {Counter(code for v in dead.values() for _, _, code in v)}")
    truncated = sum(1 for m in hostile if m.kind == "oversize" and m.expect[0] == "dlq")
    assert truncated > 0  # the largest records were dead-lettered too (their body cut to 64 KiB)


async def read_outcomes(
    bootstrap: str, hostile: list[Hostile]
) -> tuple[dict[str, list[tuple[str, str, str]]], dict[str, set[str]], list[str]]:
    """(chaos id -> [(service, dead-letter topic, code)], chaos id -> fields of its rejection,
    dead letters of messages that were not hostile). A dead letter keeps the original body and
    headers, or, for a record too large to carry the error headers too, the body's first 64 KiB
    and its size (`x-lindung-truncated-from-bytes`); one that does not is reported as a wrong
    reason (code "altered")."""
    originals = {m.chaos_id: m for m in hostile}
    dead: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    unexpected: list[str] = []
    async with TopicReader(bootstrap, [topics.dead_letter_topic(t) for t in CONSUMED]) as reader:
        for record in await reader.read_new():
            chaos_id = record.headers.get("x-chaos-id")
            service = record.headers.get("x-lindung-service", "")
            code = record.headers.get("x-lindung-error-code", "")
            if chaos_id is None:
                unexpected.append(f"{record.topic} {service} {code} {record.value[:100]!r}")
                continue
            original = originals[chaos_id]
            body = original.value or b""
            truncated = record.headers.get(TRUNCATED_HEADER)
            kept = (
                record.value == body[: len(record.value)] and truncated == str(len(body))
                if truncated
                else record.value == body
            )
            headers_kept = all(record.headers.get(k) == v for k, v in original.headers.items())
            dead[chaos_id].append(
                (service, record.topic, code if kept and headers_kept else "altered")
            )
    rejected: dict[str, set[str]] = {}
    async with TopicReader(bootstrap, [topics.REGISTRATION_REJECTED]) as reader:
        for record in await reader.read_new():
            if "x-chaos-id" in record.headers:
                continue  # hostile input sent to this topic, not registration's answer
            body = record.json()
            if (body.get("request_id") or "").startswith("hostile-"):
                rejected[body["request_id"]] = {e["field"] for e in body["errors"]}
    return dead, rejected, unexpected
