"""No full NIK, phone number or worker name leaves a service through its logs, its spans or the
headers of its dead letters: registration and eligibility as `lindung up` runs them (separate
processes, spans exported to the console, i.e. into the captured logs), fed valid registrations
with distinctive names, and hostile input that quotes personal data back in error messages
(schema violations, broken JSON, requests for an unknown programme), and paths with a NIK written
with separators (`GET /workers/5318-01-01-...`)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from lindung_cli.stack import Stack, StackSettings
from lindung_contracts import (
    ProgramPublished,
    RegistrationRequested,
    WorkerRegistered,
    cloudevent_headers,
    topics,
)
from lindung_contracts.access import CLI_SOURCE
from lindung_registration.auth import create_key
from lindung_runtime.kafka import EventClient, Record, TopicReader

pytestmark = pytest.mark.e2e

PROGRAM = "privacy-2025q4"
SERVICES = ("registration", "eligibility")


def nik(serial: int) -> str:
    """A valid NIK of Sumba Barat Daya, born 01-01-1990."""
    return f"531801010190{serial:04d}"


#: (NIK, full name, phone, birth date): names no log line or span could contain by chance.
WORKERS = [
    (nik(101), "Yohanes Kaleka Privasitest", "081298765401", "01/01/1990"),
    (nik(102), "Maria Wunda Privasitest", "+6281298765402", "01/01/1990"),
    (nik(103), "Agustinus Bili Privasitest", "0812-9876-5403", "01/01/1990"),
    (nik(104), "Fransiska Lende Privasitest", "62 812 9876 5404", "01/01/1990"),
]
#: Sent in hostile records only.
HOSTILE_NIK, HOSTILE_NAME, HOSTILE_PHONE = nik(199), "Kornelius Dapa Rahasiatest", "081377771199"


def program() -> ProgramPublished:
    return ProgramPublished(
        program_id=PROGRAM,
        name="Privasi",
        sponsor="Pemkab",
        region_code="5318",
        quota=100,
        coverage_start=date(2025, 10, 1),
        coverage_end=date(2025, 12, 31),
    )


def request(worker: tuple[str, str, str, str]) -> dict[str, Any]:
    number, name, phone, born = worker
    return {
        "program_id": PROGRAM,
        "nik": number,
        "full_name": name,
        "birth_date": born,
        "gender": "L",
        "occupation": "Petani",
        "village": "Kalena Wanno",
        "district": "Kota Tambolaka",
        "phone": phone,
    }


def hostile_records() -> list[tuple[str, bytes]]:
    """(topic, body): each dead-lettered, its error text quoting the personal data it holds."""
    body = request((HOSTILE_NIK, HOSTILE_NAME, HOSTILE_PHONE, "01/01/1990"))
    missing = {k: v for k, v in body.items() if k != "program_id"}
    wrong_type = {**body, "program_id": {"nested": [HOSTILE_NAME]}}
    registered = {
        "worker_id": "w-1",
        "program_id": PROGRAM,
        "nik": HOSTILE_NIK,
        "full_name": HOSTILE_NAME,
        "phone": HOSTILE_PHONE,
        "birth_date": {"not": "a date"},
    }
    return [
        (topics.REGISTRATION_REQUESTED, json.dumps(missing).encode()),
        (topics.REGISTRATION_REQUESTED, json.dumps(wrong_type).encode()),
        (topics.REGISTRATION_REQUESTED, json.dumps(body).encode()[:-20]),  # truncated JSON
        (topics.WORKER_REGISTERED, json.dumps(registered).encode()),
        (topics.WORKER_REGISTERED, json.dumps(missing).encode()),
    ]


def digits_pattern(number: str) -> re.Pattern[str]:
    """The number's digits in order, whatever (up to three characters, or a URL escape) is
    between them; a masked one has stars instead of some digits and never matches."""
    between = r"(?:[^0-9A-Za-z*]|%[0-9A-Fa-f]{2}){0,3}"
    digits = [d for d in number if d.isdigit()]
    return re.compile(between.join(digits))


def leaks(text: str) -> list[str]:
    found = []
    numbers = [w[0] for w in WORKERS] + [HOSTILE_NIK]
    phones = [w[2] for w in WORKERS] + [HOSTILE_PHONE]
    for number in numbers:
        if match := digits_pattern(number).search(text):
            found.append(f"NIK {match.group(0)!r}")
    for phone in phones:
        national = re.sub(r"^(\+62|62|0)", "", re.sub(r"[^0-9+]", "", phone))
        if match := digits_pattern(national).search(text):
            found.append(f"phone {match.group(0)!r}")
    for name in [w[1] for w in WORKERS] + [HOSTILE_NAME]:
        for part in name.split()[:2]:  # given name and family name, each on its own
            if re.search(rf"\b{part}\b", text, re.IGNORECASE):
                found.append(f"name {part!r}")
    return sorted(set(found))


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout:.0f} s")
        await asyncio.sleep(0.3)


@pytest.mark.timeout(300)
async def test_logs_spans_and_dead_letters_carry_no_full_nik_phone_or_name(
    kafka_bootstrap: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "OUTBOX_POLL_SECONDS": "0.2",
        "CONSUMER_MAX_ATTEMPTS": "2",
        "CONSUMER_RETRY_BASE_SECONDS": "0.05",
        "CONSUMER_NOT_READY_MAX_WAIT_SECONDS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    key = create_key(data_dir / "api-keys.yaml", "ops", "operator")
    auth = {"Authorization": f"Bearer {key}"}
    stack = Stack(
        StackSettings(
            LINDUNG_DATA_DIR=str(data_dir),
            kafka_bootstrap_servers=kafka_bootstrap,
            registration_http_port=0,
        ),
        services=SERVICES,
    )
    dead_letter_topics = [topics.dead_letter_topic(t) for t in topics.ALL]
    hostile = hostile_records()
    dead_letters: list[Record] = []
    try:
        await stack.start()
        await stack.wait_ready()
        assert stack.registration_url is not None
        async with (
            EventClient(kafka_bootstrap) as client,
            httpx.AsyncClient(base_url=stack.registration_url, timeout=30) as api,
        ):
            await client.publish(program())
            # Unknown programme: waits for it (a handler's error, retried), then is answered.
            await client.publish(
                RegistrationRequested(**{**request(WORKERS[0]), "program_id": "no-such-programme"})
            )
            for record in hostile:
                headers = (
                    cloudevent_headers(RegistrationRequested.ce_type(), CLI_SOURCE)
                    if record[0] == topics.REGISTRATION_REQUESTED
                    else cloudevent_headers(WorkerRegistered.ce_type(), "/lindung/registration")
                )
                await client.publish_raw(record[0], record[1], None, headers)
            for worker in WORKERS[:3]:
                await client.publish(RegistrationRequested(**request(worker)))

            async def registered_over_http() -> bool:
                response = await api.post(
                    f"/programs/{PROGRAM}/workers", json=request(WORKERS[3]), headers=auth
                )
                return response.status_code in (200, 201)

            await until(registered_over_http, "registration over HTTP (the programme known)")
            # Invalid over HTTP: the answer names the fields, the log must not quote them.
            await api.post(
                f"/programs/{PROGRAM}/workers",
                json={**request(WORKERS[3]), "birth_date": "31/02/1990"},
                headers=auth,
            )

            async with TopicReader(kafka_bootstrap, [topics.WORKER_REGISTERED]) as reader:
                seen: list[Any] = []

                async def all_registered() -> bool:
                    seen.extend(await reader.read_new())
                    return len({r.headers.get("ce_id") for r in seen}) >= len(WORKERS) + 2

                await until(all_registered, "registered workers")
            for number in (WORKERS[0][0], WORKERS[1][0]):
                spaced = f"{number[:4]}-{number[4:6]}-{number[6:8]}-{number[8:12]}-{number[12:]}"
                for path in (f"/workers/{spaced}", f"/workers/{number[:8]}%20{number[8:]}"):
                    answer = await api.get(path, headers=auth)
                    assert answer.status_code in (200, 404, 422), answer.text

            async with TopicReader(kafka_bootstrap, dead_letter_topics) as reader:

                async def all_dead_lettered() -> bool:
                    dead_letters.extend(await reader.read_new())
                    return len(dead_letters) >= len(hostile)

                await until(all_dead_lettered, "dead letters")
        await asyncio.sleep(1.0)  # the last spans' export (every 0.2 s)
    finally:
        await stack.stop()

    logs = {path.name: path.read_text(errors="replace") for path in stack.logs.glob("*.log")}
    everything = "\n".join(logs.values())
    # The channels under test were used: spans were exported, paths and errors logged.
    assert '"trace_id": "0x' in everything, "no span was exported"
    assert '"name": "exception"' in everything, "no exception event was exported"
    assert "http_request" in everything and "/workers/5318-" in everything
    found = {name: leaks(text) for name, text in logs.items()}
    for letter in dead_letters:
        found[f"{letter.topic} headers"] = leaks(json.dumps(letter.headers, ensure_ascii=False))
    assert {where: what for where, what in found.items() if what} == {}
