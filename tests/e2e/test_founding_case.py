"""The founding case end to end: `lindung up` (four service processes) on a real broker and a real
SMTP server, driven only through Kafka, as upstream systems would."""

from __future__ import annotations

import asyncio
import csv
import email
import email.policy
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from lindung_cli.demo import publish_requests, run_founding_case, wait_for
from lindung_cli.founding_case import MALFORMED_MESSAGES, founding_program, generate_rows
from lindung_cli.funnel import Funnel, FunnelWatcher
from lindung_cli.intake import ImportClient, read_requests
from lindung_contracts import (
    DayStarted,
    PaymentReceived,
    ProgramPublished,
    ProgramRenewed,
    RegistrationRequested,
    topics,
)
from lindung_registration.auth import create_key
from lindung_runtime.embedded import free_port
from lindung_runtime.kafka import EventClient, TopicReader

pytestmark = pytest.mark.e2e


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):
        mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), mail))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, inbox
    finally:
        controller.stop()


@pytest.fixture
def lindung_up(
    kafka_bootstrap: str, smtp_server: tuple[int, Inbox], data_dir: Path
) -> Iterator[Path]:
    """`lindung up` with KAFKA_BOOTSTRAP_SERVERS and SMTP_* set: it must use them, not its own."""
    env = dict(os.environ)
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_server[0]),
            "SMTP_SECURITY": "none",  # the local test server speaks plain SMTP
            "LINDUNG_DATA_DIR": str(data_dir),
            "DIGEST_QUIET_SECONDS": "30",
            "REGISTRATION_HTTP_PORT": str(free_port()),
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "lindung_cli", "up"],
        env=env,
        stdout=(data_dir / "up.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not (data_dir / "stack.json").exists():  # written once topics and services are up
            assert process.poll() is None, (data_dir / "up.out").read_text()
            assert time.monotonic() < deadline, "lindung up did not become ready"
            time.sleep(0.2)
        yield data_dir
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


async def _drained(client: EventClient, groups: dict[str, list[str]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lags = [await client.lag(group, topic_names) for group, topic_names in groups.items()]
        if sum(lags) == 0:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"consumer groups not drained: {groups}")


PIPELINE_GROUPS = {
    "lindung-registration.registration.requested": [topics.REGISTRATION_REQUESTED],
    "lindung-eligibility.worker.registered": [topics.WORKER_REGISTERED],
    "lindung-billing.eligibility.confirmed": [topics.ELIGIBILITY_CONFIRMED],
}


def unrenewed_program() -> tuple[ProgramPublished, list[RegistrationRequested]]:
    """A second regency's programme over the same term, never renewed, and its workers."""
    program = founding_program().model_copy(
        update={
            "program_id": "stm-pekerja-rentan-2025q4",
            "name": "Perlindungan Pekerja Rentan Kab. Sumba Timur 2025",
            "sponsor": "Pemerintah Kabupaten Sumba Timur (APBD)",
            "region_code": "5311",
            "alert_days_before_end": [],
        }
    )
    rows, _ = generate_rows(program, seed=20251002)
    return program, [
        RegistrationRequested(program_id=program.program_id, **row)
        for row in rows
        if len(row["nik"].strip()) == 16 and row["nik"].isdigit()
    ]


async def test_founding_case_end_to_end(
    kafka_bootstrap: str, smtp_server: tuple[int, Inbox], lindung_up: Path
) -> None:
    _, inbox = smtp_server
    program = founding_program()
    stack = json.loads((lindung_up / "stack.json").read_text())
    api = ImportClient(
        stack["registration_url"], create_key(lindung_up / "api-keys.yaml", "e2e", "operator")
    )
    other, other_requests = unrenewed_program()
    async with EventClient(kafka_bootstrap) as client:
        await client.publish(other)
        await publish_requests(client, other_requests)
        funnel, expected, report = await run_founding_case(client, api, lindung_up, timeout=240)
        async with FunnelWatcher(kafka_bootstrap) as watcher:
            other_funnel = await wait_for(
                watcher,
                other.program_id,
                lambda f: len(f.invoice_lines) == 5_600,
                "the second programme's invoice",
                240,
            )
            await client.publish(
                PaymentReceived(
                    invoice_id=f"INV-{other.program_id}",
                    amount_idr=other_funnel.invoiced_idr,
                    paid_at=datetime(2025, 11, 3, 9, 0, tzinfo=UTC),
                    reference="SP2D-STM-2025-0001",
                )
            )

        # The spreadsheet went in through the HTTP import, row by row accounted for.
        assert report["status"] == "done"
        assert (report["registered"], report["repeated"], report["rejected"]) == (5_622, 5, 20)
        assert report["rows_done"] == report["rows_total"] == expected.requests == 5_647

        # The exact funnel of the founding case.
        assert len(funnel.registered) == expected.registered == 5_622
        assert len(funnel.registration_rejected) == expected.registration_rejected == 20
        assert len(funnel.confirmed) == expected.confirmed == 5_600
        assert len(funnel.eligibility_rejected) == expected.eligibility_rejected == 22
        assert funnel.reason_counts(funnel.eligibility_rejected)["quota_exhausted"] == 5
        reasons = funnel.reason_counts(funnel.registration_rejected) + funnel.reason_counts(
            funnel.eligibility_rejected
        )
        assert dict(reasons) == expected.reasons
        assert funnel.invoiced_idr == 282_240_000
        assert funnel.invoices() == {f"INV-{program.program_id}": 282_240_000}
        assert len(funnel.activated) == 5_600
        (digest,) = funnel.digests.values()
        assert digest["worker_count"] == 5_600 and digest["days_left"] == 30

        # One digest mail, to the programme's staff, in Bahasa Indonesia, NIKs masked.
        deadline = time.monotonic() + 30
        while not inbox.messages and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert len(inbox.messages) == 1
        recipients, mail = inbox.messages[0]
        assert sorted(recipients) == sorted(program.staff_emails)
        assert "5.600 peserta" in mail["Subject"] and "31 Desember 2025" in mail["Subject"]
        body, attachment = (part for part in mail.walk() if not part.is_multipart())
        assert "perpanjangan" in body.get_content()
        rows = list(csv.DictReader(io.StringIO(attachment.get_content())))
        assert len(rows) == 5_600
        assert all(re.fullmatch(r"5318\*{8}\d{4}", row["nik"]) for row in rows)
        assert not re.search(rb"(?<!\d)5318\d{12}(?!\d)", mail.as_bytes())

        # Malformed JSON went to the dead-letter topic, with its bytes and the reason.
        async with TopicReader(
            kafka_bootstrap, [topics.dead_letter_topic(topics.REGISTRATION_REQUESTED)]
        ) as dlq:
            dead = await dlq.read_new()
        assert sorted(r.value for r in dead) == sorted(MALFORMED_MESSAGES)
        assert {r.headers["x-lindung-error-code"] for r in dead} == {"invalid_json"}
        assert {r.headers["x-lindung-service"] for r in dead} == {"registration"}

        # The registration API answers from its projection of every service's events.
        summary = await _eventually_json(
            api,
            f"/programs/{program.program_id}/summary",
            lambda body: body["totals"]["expiry_alerted"] == 5_600,
        )
        assert summary["totals"] == {
            "requests_rejected": 20,
            "registered": 5_622,
            "confirmed": 5_600,
            "ineligible": 22,
            "invoiced": 5_600,
            "invoiced_idr": 282_240_000,
            "paid": 5_600,
            "activated": 5_600,
            "expiry_alerted": 5_600,
            "awaiting_payment": 0,
            "active": 5_600,
            "carried": 0,
            "not_carried": 0,
            "ended": 0,
        }
        assert summary["ineligible_by_reason"]["quota_exhausted"] == 5
        assert sum(d["registered"] for d in summary["by_district"]) == 5_622
        assert len(summary["by_district"]) >= 11  # every kecamatan of the regency
        async with TopicReader(kafka_bootstrap, [topics.ELIGIBILITY_CONFIRMED]) as confirmed:
            confirmed_nik = next(
                r.json()["nik"]
                for r in await confirmed.read_new()
                if r.json()["program_id"] == program.program_id
            )
        timeline = await _eventually_json(
            api, f"/workers/{confirmed_nik}", lambda body: len(body["entries"]) >= 6
        )
        assert [e["kind"] for e in timeline["entries"]] == [
            "registered",
            "eligibility_confirmed",
            "invoiced",
            "payment_received",
            "coverage_activated",
            "coverage_expiring",
        ]
        assert all(
            e["event_id"] and re.fullmatch(r"[0-9a-f]{32}", e["trace_id"] or "")
            for e in timeline["entries"]
        )

        # Sending the same workers again changes nothing: over Kafka under new ids, the same
        # records byte-identical (same ce_id), and the same spreadsheet through the API.
        async with TopicReader(kafka_bootstrap, [topics.WORKER_REGISTERED]) as registered_topic:
            registered_before = len(await registered_topic.read_new())
        csv_path = lindung_up / "pekerja-rentan-sumba-barat-daya.csv"
        await client.publish_many(list(read_requests(csv_path, program.program_id)))
        async with TopicReader(kafka_bootstrap, [topics.REGISTRATION_REQUESTED]) as requests_topic:
            sent = [
                r
                for r in await requests_topic.read_new()
                if r.value not in MALFORMED_MESSAGES
                and r.json()["program_id"] == program.program_id
            ]
        assert len(sent) == expected.requests
        for record in sent[:500]:
            await client.publish_raw(record.topic, record.value, record.key, record.headers)
        again = await api.wait(await api.upload(csv_path, program.program_id))
        assert (again["registered"], again["repeated"], again["rejected"]) == (0, 5_627, 20)
        await _drained(client, PIPELINE_GROUPS)
        async with FunnelWatcher(kafka_bootstrap) as watcher:
            after = (await watcher.refresh())[program.program_id]
        async with TopicReader(kafka_bootstrap, [topics.WORKER_REGISTERED]) as registered_topic:
            assert len(await registered_topic.read_new()) == registered_before
        assert len(after.registered) == 5_622
        assert len(after.confirmed) == 5_600
        assert after.invoiced_idr == 282_240_000
        assert len(after.invoice_lines) == 5_600
        assert len(inbox.messages) == 1

        await _renewal_and_the_end_of_cover(client, kafka_bootstrap, inbox, program, other)

    # It ran on the broker and mail server it was given, not on embedded ones.
    assert not (lindung_up / "logs" / "broker.log").exists()
    assert not (lindung_up / "mail").exists()


async def _renewal_and_the_end_of_cover(
    client: EventClient,
    kafka_bootstrap: str,
    inbox: Inbox,
    program: ProgramPublished,
    other: ProgramPublished,
) -> None:
    """Term 1 (1 Oct - 31 Dec 2025) is paid; the founding programme is renewed on 15 Dec for
    1 Jan - 31 Mar 2026 without a new upload, the other programme is not. On 1 Jan the carried
    workers go on, the cover of those not carried ends, and so does every worker's of the other
    programme, with one mail to its staff."""
    async with TopicReader(kafka_bootstrap, [topics.WORKER_REGISTERED]) as registered_topic:
        registered_before = len(await registered_topic.read_new())
    async with FunnelWatcher(kafka_bootstrap) as watcher:
        await wait_for(
            watcher, other.program_id, lambda f: len(f.activated) == 5_600, "activation", 120
        )
        for day in range(2, 16):
            await client.publish(DayStarted(date=date(2025, 12, day)))
        renewal = ProgramRenewed(
            program_id=program.program_id,
            term_start=date(2026, 1, 1),
            term_end=date(2026, 3, 31),
            renewed_at=datetime(2025, 12, 15, 10, 0, tzinfo=UTC),
        )
        await client.publish(renewal)
        await client.publish(renewal)  # sent twice: one renewal

        def carried(f: Funnel) -> bool:
            decided = len(f.carried.get(2, ())) + len(f.not_carried.get(2, {}))
            return decided == 5_600 and len(f.invoice_lines) == 5_600 + len(f.carried[2])

        funnel = await wait_for(watcher, program.program_id, carried, "the renewal", 240)
        day = date(2025, 12, 15)
        while day < date(2026, 1, 1):  # the daily cron, into the new year
            day += timedelta(days=1)
            await client.publish(DayStarted(date=day))
        invoices = funnel.invoices()
        term_2 = f"INV-{program.program_id}-T2"
        assert sorted(invoices) == [f"INV-{program.program_id}", term_2]  # two invoices
        await client.publish(
            PaymentReceived(
                invoice_id=term_2,
                amount_idr=invoices[term_2],
                paid_at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
                reference="SP2D-SBD-2026-0001",
            )
        )
        funnel = await wait_for(
            watcher,
            program.program_id,
            lambda f: len(f.activated_in.get(2, ())) == len(f.carried[2]),
            "term 2's activation",
            240,
        )
        ended = await wait_for(
            watcher, other.program_id, lambda f: len(f.ended) == 5_600, "the end of cover", 240
        )
        funnel = await wait_for(
            watcher,
            program.program_id,
            lambda f: len(f.ended) == len(f.not_carried[2]),
            "the end of the not carried workers' cover",
            120,
        )

    # Every carried worker is active in term 2; those older than the maximum age before
    # 31 Mar 2026 are not carried, each with its reason; together they are the 5,600.
    carried_ids, not_carried = funnel.carried[2], funnel.not_carried[2]
    assert len(carried_ids) + len(not_carried) == 5_600 and not_carried
    assert {tuple(codes) for codes in not_carried.values()} == {("age_above_maximum_in_term",)}
    assert funnel.coverage_counts() == {
        "active (term 2)": len(carried_ids),
        "not_carried (term 2)": len(not_carried),
    }
    # Their cover ends with term 1: a CoverageEnded each, with the same reason.
    assert funnel.ended == {w: "age_above_maximum_in_term" for w in not_carried}
    assert set(ended.ended.values()) == {"term_ended_not_renewed"}
    # Nobody was uploaded twice.
    async with TopicReader(kafka_bootstrap, [topics.WORKER_REGISTERED]) as registered_topic:
        assert len(await registered_topic.read_new()) == registered_before
    # One "Kepesertaan berakhir" mail for the programme nobody renewed.
    deadline = time.monotonic() + 60
    subjects: list[str] = []
    while time.monotonic() < deadline:
        subjects = [mail["Subject"] for _, mail in inbox.messages]
        if any("Sumba Timur" in s for s in subjects):
            break
        await asyncio.sleep(0.5)
    [ending] = [s for s in subjects if "Sumba Timur" in s]
    assert "5.600 peserta" in ending and "Kepesertaan berakhir" in ending


async def _eventually_json(api: ImportClient, path: str, done, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    """GET `path` until `done(body)`: the projection follows the events, a little behind."""
    deadline = time.monotonic() + timeout
    async with api._client() as http:
        while True:
            response = await http.get(path)
            if response.status_code == 200 and done(response.json()):
                return response.json()
            assert time.monotonic() < deadline, (
                f"{path}: {response.status_code} {response.text[:500]}"
            )
            await asyncio.sleep(0.5)
