"""Registration's HTTP API against a real broker: a registration over HTTP reaches the wire once,
spreadsheets (CSV in Indonesian or English, XLSX) are imported with a per-row report and an
errors.csv to fix and send again, a worker's timeline is projected from every service's events,
the programme summary counts per desa and kecamatan, a programme renewal is published once and
numbered when read back, and /readyz follows the broker.

The services run in-process (their FastStream apps started, as `running` does) and their HTTP
app is driven through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import Workbook

from lindung_billing.app import create_service as create_billing
from lindung_billing.settings import BillingSettings
from lindung_contracts import (
    ContributionInvoiced,
    DayStarted,
    PaymentReceived,
    ProgramRenewed,
    WorkerRegistered,
    topics,
)
from lindung_eligibility.app import create_service as create_eligibility
from lindung_eligibility.settings import EligibilitySettings
from lindung_registration.app import create_service as create_registration
from lindung_registration.auth import create_key
from lindung_registration.db import KnownTerm, Worker
from lindung_registration.domain import worker_id_for
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import Service
from lindung_runtime.embedded import EmbeddedKafka
from lindung_runtime.kafka import EventClient, Record
from tests.integration.conftest import (
    Wire,
    count_rows,
    eventually,
    on_broker,
    outbox_drained,
    running,
    wire,
)
from tests.programmes import publish_known
from tests.unit.handler_kit import PROGRAM, founding_program

pytestmark = pytest.mark.integration

HEADER_ID = "NIK,Nama Lengkap,Tanggal Lahir,Jenis Kelamin,Pekerjaan,Desa/Kelurahan,Kecamatan,No HP"
ROW_COLUMN = "Baris / Row"
REASON_COLUMN = "Alasan Ditolak / Rejection Reason"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
PAYMENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def nik(serial: int) -> str:
    """A valid NIK of Sumba Barat Daya (5318 01), born 01-01-90, a man."""
    return f"531801010190{serial:04d}"


def worker(serial: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "nik": nik(serial),
        "full_name": f"Pekerja {serial}",
        "birth_date": "01/01/1990",
        "gender": "L",
        "occupation": "Petani",
        "village": "Kalena Wanno",
        "district": "Kota Tambolaka",
        "phone": "0812-3456-7890",
    }
    body.update(overrides)
    return body


def registration(data_dir: Path, bootstrap: str, **overrides: Any) -> Service:
    # Small import chunks, so that a file of a few rows spans several transactions.
    settings = on_broker(data_dir, bootstrap, import_chunk_rows=2, **overrides)
    return create_registration(RegistrationSettings(**settings))


@asynccontextmanager
async def http(service: Service, admin: bool = False) -> AsyncIterator[httpx.AsyncClient]:
    """The public app (the API), or the admin app (/readyz, /metrics, the docs)."""
    if not admin:  # the API registers only for a published programme
        await publish_known(service, PROGRAM)
    transport = httpx.ASGITransport(app=service.admin_http if admin else service.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def operator_key(data_dir: Path) -> dict[str, str]:
    key = create_key(data_dir / "api-keys.yaml", "ops", "operator")
    return {"Authorization": f"Bearer {key}"}


async def upload(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    filename: str,
    content: bytes,
    content_type: str = "text/csv",
) -> str:
    response = await api.post(
        f"/programs/{PROGRAM}/imports",
        files={"file": (filename, content, content_type)},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["progress_url"] == f"/imports/{accepted['import_id']}"
    assert accepted["errors_url"] == f"/imports/{accepted['import_id']}/errors.csv"
    return str(accepted["import_id"])


async def finished(api: httpx.AsyncClient, headers: dict[str, str], import_id: str) -> Any:
    """The import's report once it is done (or failed)."""

    async def report() -> Any:
        response = await api.get(f"/imports/{import_id}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["status"] in ("done", "failed") else None

    return await eventually(report, what=f"import {import_id} to finish")


def outcomes(report: dict[str, Any]) -> list[tuple[int, str, list[str]]]:
    """(row, status, error codes) of each row of a report."""
    return [(r["row"], r["status"], [e["code"] for e in r["errors"]]) for r in report["rows"]]


def counts(report: dict[str, Any]) -> tuple[int, int, int, int]:
    return report["rows_done"], report["registered"], report["repeated"], report["rejected"]


async def all_registered(service: Service, out: Wire, expected: int) -> list[WorkerRegistered]:
    """Every WorkerRegistered on the wire once the service's outbox is drained: exactly
    `expected` of them (a duplicate would show up here)."""
    await out.wait_for(topics.WORKER_REGISTERED, expected)
    await eventually(lambda: outbox_drained(service), what="the outbox to drain")
    await asyncio.sleep(0.5)  # anything relayed late would be fetched by now
    await out.poll()
    records: list[Record] = out.on(topics.WORKER_REGISTERED)
    assert len(records) == expected, [r.key for r in records]
    return [WorkerRegistered.model_validate_json(r.value) for r in records]


# --- (a) one registration over HTTP ---------------------------------------------------------------


async def test_http_registration_is_announced_once_with_cloudevents_headers(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    service = registration(data_dir, kafka_bootstrap)
    headers = operator_key(data_dir)
    url = f"/programs/{PROGRAM}/workers"
    async with (
        running(service),
        http(service) as api,
        wire(kafka_bootstrap, [topics.WORKER_REGISTERED]) as out,
    ):
        first = await api.post(url, json=worker(1, phone="0812 3456 7890"), headers=headers)
        again = await api.post(url, json=worker(1, full_name="Nama Lain"), headers=headers)
        # Identical requests at the same moment, three per NIK, for four NIKs.
        racing = [serial for serial in (2, 3, 4, 5) for _ in range(3)]
        answers = await asyncio.gather(
            *(api.post(url, json=worker(serial), headers=headers) for serial in racing)
        )
        announced = await all_registered(service, out, 5)
        [record] = [r for r in out.on(topics.WORKER_REGISTERED) if r.key == nik(1)]

    assert (first.status_code, first.json()["status"]) == (201, "registered")
    assert (again.status_code, again.json()["status"]) == (200, "repeated")
    assert first.json()["worker_id"] == again.json()["worker_id"] == worker_id_for(PROGRAM, nik(1))
    for serial in (2, 3, 4, 5):
        mine = [a for s, a in zip(racing, answers, strict=True) if s == serial]
        assert sorted(a.status_code for a in mine) == [200, 200, 201], [a.text for a in mine]
        assert {a.json()["worker_id"] for a in mine} == {worker_id_for(PROGRAM, nik(serial))}

    assert sorted(e.nik for e in announced) == [nik(s) for s in (1, 2, 3, 4, 5)]
    event = WorkerRegistered.model_validate_json(record.value)
    assert (event.worker_id, event.full_name) == (first.json()["worker_id"], "Pekerja 1")
    assert (event.phone, event.gender, event.birth_date) == (
        "+6281234567890",
        "M",
        date(1990, 1, 1),
    )
    assert record.headers["ce_specversion"] == "1.0"
    assert record.headers["ce_type"] == WorkerRegistered.ce_type()
    assert record.headers["ce_source"] == "/lindung/registration"
    assert record.headers["ce_id"]
    assert datetime.fromisoformat(record.headers["ce_time"]).tzinfo is not None
    assert record.headers["content-type"] == "application/json"
    # The HTTP request's span starts the worker's trace.
    assert HEX32.match(record.headers["traceparent"].split("-")[1])
    assert await count_rows(service, Worker) == 5


# --- (b) spreadsheet imports ----------------------------------------------------------------------


INDONESIAN_CSV = "\n".join(
    [
        HEADER_ID,
        f"{nik(11)},Yohanes Bili,01/01/1990,L,Petani,Kalena Wanno,Kota Tambolaka,0812-3456-7890",
        "5318-0101,Maria Kaka,01/01/1990,P,Penenun,Kalena Wanno,Kota Tambolaka,",
        f"{nik(12)},Agustinus Lede,1990-01-01,L,Nelayan,Kalena Wanno,Kota Tambolaka,",
        ",,,,,,,",  # an empty row: skipped, but the rows below keep their numbers
        f"{nik(13)},Petrus Kaka,31/02/1990,X,Petani,Kalena Wanno,Kota Tambolaka,",
        "5318 0101 0190 0011,Yohanes Bili,01/01/1990,L,Petani,Kalena Wanno,Kota Tambolaka,",
        f"{nik(14)},Markus Ngongo,01/01/1990,laki-laki,Ojek,Weelonda,Kota Tambolaka,",
    ]
)


async def test_csv_import_reports_each_row_and_its_errors_csv_can_be_fixed_and_sent_again(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    service = registration(data_dir, kafka_bootstrap)
    headers = operator_key(data_dir)
    async with (
        running(service),
        http(service) as api,
        wire(kafka_bootstrap, [topics.WORKER_REGISTERED]) as out,
    ):
        first_id = await upload(api, headers, "peserta.csv", INDONESIAN_CSV.encode())
        first = await finished(api, headers, first_id)
        rejected_pages = [
            (
                await api.get(
                    f"/imports/{first_id}",
                    params={"status": "rejected", "offset": offset, "limit": 1},
                    headers=headers,
                )
            ).json()
            for offset in (0, 1, 2)
        ]
        errors_csv = await api.get(f"/imports/{first_id}/errors.csv", headers=headers)

        # Staff fix the two rejected rows in errors.csv, and (by mistake) add a row already in.
        fixed = list(csv.DictReader(io.StringIO(errors_csv.text)))
        by_row = {row[ROW_COLUMN]: row for row in fixed}
        by_row["3"]["NIK"] = nik(15)
        by_row["6"].update({"Tanggal Lahir": "01/01/1990", "Jenis Kelamin": "L"})
        fixed.append({**by_row["3"], "NIK": nik(11), ROW_COLUMN: "2", REASON_COLUMN: ""})
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(fixed[0]))
        writer.writeheader()
        writer.writerows(fixed)
        second_id = await upload(api, headers, "ditolak-diperbaiki.csv", text.getvalue().encode())
        second = await finished(api, headers, second_id)

        announced = await all_registered(service, out, 5)

    assert first["status"] == "done"
    assert first["error"] is None
    assert first["filename"] == "peserta.csv"
    assert first["finished_at"] is not None
    assert counts(first) == (6, 3, 1, 2)
    assert first["rows_matching"] == 6
    assert outcomes(first) == [
        (2, "registered", []),
        (3, "rejected", ["nik_invalid_length"]),
        (4, "registered", []),
        (6, "rejected", ["birth_date_invalid", "gender_invalid"]),
        (7, "repeated", []),
        (8, "registered", []),
    ]
    assert first["rows"][4]["worker_id"] == first["rows"][0]["worker_id"]  # row 7 is row 2
    assert all(" / " in e["message"] for r in first["rows"] for e in r["errors"])
    # Paging through the rejected rows only.
    assert [(p["rows_matching"], p["offset"]) for p in rejected_pages] == [(2, 0), (2, 1), (2, 2)]
    assert [[r["row"] for r in p["rows"]] for p in rejected_pages] == [[3], [6], []]

    # errors.csv: the template's columns, exactly the rejected rows, each with its reason.
    assert errors_csv.status_code == 200
    assert errors_csv.headers["content-type"].startswith("text/csv")
    header, *lines = list(csv.reader(io.StringIO(errors_csv.text)))
    assert header == [*HEADER_ID.split(","), ROW_COLUMN, REASON_COLUMN]
    assert [(line[0], line[1], line[-2]) for line in lines] == [
        ("5318-0101", "Maria Kaka", "3"),
        (nik(13), "Petrus Kaka", "6"),
    ]
    assert lines[0][-1].startswith("nik: ")
    assert "NIK harus 16 digit / NIK must be 16 digits" in lines[0][-1]
    assert "birth_date: " in lines[1][-1]
    assert "gender: " in lines[1][-1]

    # The fixed file (with the extra columns) registers the two, and the good row only once.
    assert second["status"] == "done", second
    assert counts(second) == (3, 2, 1, 0)
    assert [(r["row"], r["status"]) for r in second["rows"]] == [
        (2, "registered"),
        (3, "registered"),
        (4, "repeated"),
    ]
    assert sorted(e.nik for e in announced) == sorted(nik(s) for s in (11, 12, 13, 14, 15))
    assert await count_rows(service, Worker) == 5


def xlsx_file() -> bytes:
    """As staff fill it in Excel: NIK as text (a number would lose digits), the birth date as a
    real date cell, and a blank row in the middle."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER_ID.split(","))
    rows: list[list[Any]] = [
        [nik(31), "Yakobus Tena", date(1990, 1, 1), "L", "Petani", "Tema Tana", "Wewewa Timur"],
        [nik(32), "Lukas Bora", datetime(1990, 1, 1), "L", "", "Tema Tana", "Wewewa Timur"],
        [None] * 8,
        [nik(33), "Simon Umbu", date(1990, 1, 1), "Z", "Petani", "Tema Tana", "Wewewa Timur"],
    ]
    for values in rows:
        sheet.append(values)
    sheet["H2"] = "0813 3333 4444"
    for cell in sheet["A"]:
        cell.number_format = "@"  # Text
        assert cell.value is None or isinstance(cell.value, str)
    assert sheet["C2"].is_date
    output = io.BytesIO()
    book.save(output)
    return output.getvalue()


ENGLISH_CSV = "\ufeff" + "\n".join(  # as Excel saves "CSV UTF-8": a BOM first
    [
        "phone;District;Village;occupation;gender;birth_date;full_name;NIK",
        f"+62 812 1111 2222;Loura;Karuni;Petani;M;1990-01-01;Daniel Malo;{nik(21)}",
        f";Loura;Karuni;Petani;F;01/01/1990;Ester Malo;{nik(22)}",
        f"12345;Loura;Karuni;;M;1990-01-01;Paulus Malo;{nik(23)}",
    ]
)


async def test_english_csv_and_xlsx_imports(kafka_bootstrap: str, data_dir: Path) -> None:
    service = registration(data_dir, kafka_bootstrap)
    headers = operator_key(data_dir)
    xlsx_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    async with (
        running(service),
        http(service) as api,
        wire(kafka_bootstrap, [topics.WORKER_REGISTERED]) as out,
    ):
        english = await finished(
            api, headers, await upload(api, headers, "workers.csv", ENGLISH_CSV.encode())
        )
        excel = await finished(
            api, headers, await upload(api, headers, "peserta.xlsx", xlsx_file(), xlsx_type)
        )
        no_nik = await finished(
            api, headers, await upload(api, headers, "x.csv", b"Nama,Desa\nAna,Uji\n")
        )
        wrong_type = await api.post(
            f"/programs/{PROGRAM}/imports",
            files={"file": ("peserta.pdf", b"%PDF-1.4", "application/pdf")},
            headers=headers,
        )
        announced = {e.nik: e for e in await all_registered(service, out, 4)}

    assert english["status"] == "done", english
    assert counts(english) == (3, 2, 0, 1)
    assert outcomes(english) == [
        (2, "registered", []),
        (3, "registered", []),
        (4, "rejected", ["phone_invalid"]),
    ]
    assert announced[nik(21)].phone == "+6281211112222"
    assert (announced[nik(21)].village, announced[nik(21)].district) == ("Karuni", "Loura")

    assert excel["status"] == "done", excel
    assert counts(excel) == (3, 2, 0, 1)
    assert outcomes(excel) == [
        (2, "registered", []),
        (3, "registered", []),
        (5, "rejected", ["gender_invalid"]),
    ]
    assert announced[nik(31)].birth_date == announced[nik(32)].birth_date == date(1990, 1, 1)
    assert announced[nik(31)].phone == "+6281333334444"
    assert announced[nik(32)].phone is None

    assert no_nik["status"] == "failed"
    assert "NIK" in no_nik["error"] and " / " in no_nik["error"]
    assert counts(no_nik) == (0, 0, 0, 0)
    assert wrong_type.status_code == 415


# --- (c) a worker's timeline across services ------------------------------------------------------


async def timeline(api: httpx.AsyncClient, headers: dict[str, str], serial_nik: str) -> Any:
    response = await api.get(f"/workers/{serial_nik}", headers=headers)
    return response.json() if response.status_code == 200 else None


async def test_timeline_follows_a_worker_from_registration_to_expiry_alert(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    common = on_broker(data_dir, kafka_bootstrap)
    reg = registration(data_dir, kafka_bootstrap)
    services = (
        reg,
        create_eligibility(EligibilitySettings(**common)),
        create_billing(BillingSettings(**common)),
    )
    headers = operator_key(data_dir)
    url = f"/programs/{PROGRAM}/workers"
    # Born 1950 (75 years old) and a woman by her form but a man by her NIK: two reasons.
    too_old = worker(1, nik="5318010101500002", birth_date="01/01/1950", gender="P")

    async def kinds_of(serial_nik: str, count: int) -> Any:
        async def enough() -> Any:
            body = await timeline(api, headers, serial_nik)
            return body if body and len(body["entries"]) >= count else None

        return await eventually(enough, what=f"{count} timeline entries of {serial_nik}")

    async with (
        running(*services),
        http(reg) as api,
        EventClient(kafka_bootstrap) as client,
        wire(kafka_bootstrap, [topics.CONTRIBUTION_INVOICED, topics.COVERAGE_ACTIVATED]) as out,
    ):
        await client.publish(founding_program())
        await client.publish(DayStarted(date=date(2025, 9, 15)))
        confirmed = await api.post(url, json=worker(1), headers=headers)
        rejected = await api.post(url, json=too_old, headers=headers)
        assert (confirmed.status_code, rejected.status_code) == (201, 201)

        [invoiced] = await out.wait_for(topics.CONTRIBUTION_INVOICED, 1)
        line = ContributionInvoiced.model_validate_json(invoiced.value)
        await kinds_of(nik(1), 3)  # registered, confirmed, invoiced: then the sponsor pays
        payment = PaymentReceived(
            invoice_id=line.invoice_id,
            amount_idr=line.amount_idr,
            paid_at=datetime.now(UTC),
            reference="SP2D-0001",
        )
        payment_headers = client.headers_for(payment)
        payment_headers["traceparent"] = f"00-{PAYMENT_TRACE}-00f067aa0ba902b7-01"
        await client.publish_raw(
            payment.TOPIC, payment.model_dump_json().encode(), payment.key(), payment_headers
        )
        await out.wait_for(topics.COVERAGE_ACTIVATED, 1)
        await kinds_of(nik(1), 5)
        # 30 days before the programme's coverage ends (31 December): the first expiry alert.
        await client.publish(DayStarted(date=date(2025, 12, 1)))
        covered = await kinds_of(nik(1), 6)
        refused = await kinds_of("5318010101500002", 2)

    entries = covered["entries"]
    assert [e["kind"] for e in entries] == [
        "registered",
        "eligibility_confirmed",
        "invoiced",
        "payment_received",
        "coverage_activated",
        "coverage_expiring",
    ]
    assert [w["worker_id"] for w in covered["workers"]] == [confirmed.json()["worker_id"]]
    assert covered["nik"] == nik(1)
    assert all(e["event_id"] for e in entries)
    assert len({e["event_id"] for e in entries}) == 6
    assert all(HEX32.match(e["trace_id"] or "") for e in entries), entries
    times = [datetime.fromisoformat(e["occurred_at"]) for e in entries]
    assert times == sorted(times)
    # The HTTP request's trace runs through eligibility and billing; the payment (sent by the
    # bank's system with its own trace) carries on into the activation it causes.
    assert len({e["trace_id"] for e in entries[:3]}) == 1
    assert entries[0]["trace_id"] != PAYMENT_TRACE
    assert [e["trace_id"] for e in entries[3:5]] == [PAYMENT_TRACE, PAYMENT_TRACE]
    assert all(
        e["worker_id"] == confirmed.json()["worker_id"]
        for e in entries
        if e["kind"] != "payment_received"
    )
    details = {e["kind"]: e["details"] for e in entries}
    assert details["eligibility_confirmed"]["coverage_start"] == "2025-10-01"
    assert details["invoiced"]["invoice_id"] == line.invoice_id
    assert details["invoiced"]["amount_idr"] == line.amount_idr
    assert details["payment_received"]["reference"] == "SP2D-0001"
    assert details["coverage_activated"]["coverage_end"] == "2025-12-31"
    assert details["coverage_expiring"]["days_left"] == 30

    assert [e["kind"] for e in refused["entries"]] == ["registered", "eligibility_rejected"]
    reasons = refused["entries"][1]["details"]["reasons"]
    assert [r["code"] for r in reasons] == ["gender_mismatch", "age_above_maximum"]
    assert all(" / " in r["message"] for r in reasons)
    assert all(HEX32.match(e["trace_id"] or "") for e in refused["entries"])


# --- (d) the programme summary --------------------------------------------------------------------


SUMMARY_CSV = "\n".join(
    [
        HEADER_ID,
        f"{nik(41)},Ana Bili,01/01/1990,L,Petani,Kalena Wanno,Kota Tambolaka,",
        f"{nik(42)},Beni Bili,01/01/1990,L,Petani,Kalena Wanno,Kota Tambolaka,",
        "5318010101500043,Carlos Bili,01/01/1950,L,Petani,Kalena Wanno,Kota Tambolaka,",
        f"{nik(44)},Dedi Lede,01/01/1990,L,Petani,Weelonda,Kota Tambolaka,",
        f"{nik(45)},Edu Ngongo,01/01/1990,L,Petani,Kalembu Ndara Mane,Wewewa Barat,",
        "123,Fransiska Ngongo,01/01/1990,P,Petani,Kalembu Ndara Mane,Wewewa Barat,",
    ]
)


async def test_summary_counts_the_funnel_per_desa_and_kecamatan(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    common = on_broker(data_dir, kafka_bootstrap)
    reg = registration(data_dir, kafka_bootstrap)
    headers = operator_key(data_dir)
    village_key = create_key(
        data_dir / "api-keys.yaml",
        "desa",
        "village",
        village="Kalena Wanno",
        district="Kota Tambolaka",
    )
    summary_url = f"/programs/{PROGRAM}/summary"

    async with (
        running(reg, create_eligibility(EligibilitySettings(**common))),
        http(reg) as api,
        EventClient(kafka_bootstrap) as client,
    ):
        await client.publish(founding_program())
        report = await finished(
            api, headers, await upload(api, headers, "desa.csv", SUMMARY_CSV.encode())
        )

        async def settled() -> Any:
            body = (await api.get(summary_url, headers=headers)).json()
            totals = body["totals"]
            decided = totals["confirmed"] + totals["ineligible"]
            return body if decided == 5 and totals["requests_rejected"] == 1 else None

        summary = await eventually(settled, what="every decision in the summary")
        mine = (
            await api.get(summary_url, headers={"Authorization": f"Bearer {village_key}"})
        ).json()

    assert counts(report) == (6, 5, 0, 1)
    funnel = ("registered", "confirmed", "ineligible", "requests_rejected")

    def row(place: dict[str, Any]) -> tuple[int, ...]:
        return tuple(place[f] for f in funnel)

    assert row(summary["totals"]) == (5, 4, 1, 1)
    assert {(v["district"], v["village"]): row(v) for v in summary["by_village"]} == {
        ("Kota Tambolaka", "Kalena Wanno"): (3, 2, 1, 0),
        ("Kota Tambolaka", "Weelonda"): (1, 1, 0, 0),
        ("Wewewa Barat", "Kalembu Ndara Mane"): (1, 1, 0, 1),
    }
    assert {d["district"]: row(d) for d in summary["by_district"]} == {
        "Kota Tambolaka": (4, 3, 1, 0),
        "Wewewa Barat": (1, 1, 0, 1),
    }
    assert summary["ineligible_by_reason"] == {"age_above_maximum": 1}
    assert summary["totals"]["invoiced"] == summary["totals"]["activated"] == 0  # no billing here

    assert [(v["district"], v["village"]) for v in mine["by_village"]] == [
        ("Kota Tambolaka", "Kalena Wanno")
    ]
    assert row(mine["totals"]) == (3, 2, 1, 0)
    assert mine["ineligible_by_reason"] == {"age_above_maximum": 1}


# --- (e) programme renewals -----------------------------------------------------------------------


async def test_a_renewal_over_http_reaches_the_wire_once_and_registration_numbers_it(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    """Published by registration (a writer of `program.renewed`), read back by registration
    like by every other service: only then is the term known, and the same term again is 200."""
    service = registration(data_dir, kafka_bootstrap)
    headers = operator_key(data_dir)
    url = f"/programs/{PROGRAM}/renewals"
    body = {"term_start": "2026-01-01", "term_end": "2026-03-31", "quota": 6000}
    async with (
        running(service),
        http(service) as api,
        wire(kafka_bootstrap, [topics.PROGRAM_RENEWED]) as out,
    ):
        accepted = await api.post(url, json=body, headers=headers)
        [record] = await out.wait_for(topics.PROGRAM_RENEWED, 1)

        async def known() -> Any:
            answer = await api.post(url, json=body, headers=headers)
            return answer if answer.status_code == 200 else None

        repeated = await eventually(known, what="the renewal read back")
        overlapping = await api.post(
            url, json={"term_start": "2026-03-01", "term_end": "2026-06-30"}, headers=headers
        )
        await asyncio.sleep(0.5)  # anything published by the repeat would be fetched by now
        await out.poll()

    assert (accepted.status_code, accepted.json()["term"]) == (202, 2)
    assert (repeated.json()["term"], repeated.json()["status"]) == (2, "repeated")
    assert overlapping.status_code == 409
    assert overlapping.json()["errors"][0]["code"] == "term_overlaps"
    assert len(out.on(topics.PROGRAM_RENEWED)) == 1
    assert record.key == PROGRAM
    assert record.headers["ce_source"] == "/lindung/registration"
    assert record.headers["ce_type"] == ProgramRenewed.ce_type()
    renewed = ProgramRenewed.model_validate_json(record.value)
    assert (renewed.term_start, renewed.term_end, renewed.quota) == (
        date(2026, 1, 1),
        date(2026, 3, 31),
        6000,
    )
    assert await count_rows(service, KnownTerm) == 2


# --- (f) readiness --------------------------------------------------------------------------------


async def test_readyz_follows_the_broker(tmp_path: Path, data_dir: Path) -> None:
    """Ready while the broker answers, 503 (but still alive) while it is gone, ready again once
    it is back: the service's own broker here, as this test stops it."""
    broker = EmbeddedKafka(tmp_path / "own-broker.log")
    bootstrap = await broker.start()
    try:
        service = registration(data_dir, bootstrap)
        async with running(service), http(service, admin=True) as api:
            ready = await api.get("/readyz")
            broker.stop()
            not_ready = await api.get("/readyz")
            alive = await api.get("/healthz")

            broker = EmbeddedKafka(tmp_path / "own-broker.log", port=broker.port)
            await broker.start()

            async def ready_again() -> bool:
                return (await api.get("/readyz")).status_code == 200

            await eventually(ready_again, what="/readyz to answer 200 again")
    finally:
        broker.stop()

    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"database": True, "broker": True}}
    assert not_ready.status_code == 503, not_ready.text
    assert not_ready.json() == {
        "status": "not_ready",
        "checks": {"database": True, "broker": False},
    }
    assert alive.status_code == 200  # alive, only not ready: no restart wanted
