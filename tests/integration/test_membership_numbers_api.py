"""The handover to BPJS Ketenagakerjaan over HTTP, and the membership numbers (nomor KPJ) it gives
back: `GET /programs/{id}/terms/{term}/handover.csv|.xlsx` (the workers confirmed for the term, in
the documented layout, safe against formula injection, operator keys only) and
`POST /programs/{id}/membership-numbers` (NIK → NOMOR_KPJ, applied at once, per-row errors); the
numbers in the worker's timeline and status.

Most tests drive the API in-process without a broker, as test_api_auth does (what an upload
publishes is read from the outbox and handed back to the service's own consumer); the last one
runs registration on a real broker: the upload's numbers reach the wire and come back as repeats,
and an upstream number for an unknown NIK is dead-lettered with its code.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import Workbook, load_workbook

from lindung_contracts import (
    EligibilityConfirmed,
    MembershipNumberAssigned,
    ProgramRenewed,
    topics,
)
from lindung_registration.app import create_service
from lindung_registration.db import MembershipNumber, TimelineEntry
from lindung_registration.domain import worker_id_for
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import FixedClock, Service
from tests.integration.conftest import (
    count_rows,
    eventually,
    on_broker,
    running,
    wait_until_consumed,
    wire,
)
from tests.programmes import publish_known
from tests.sources import TrustedClient
from tests.unit.handler_kit import PROGRAM, emitted, handle_now, outbox, rows, with_tables
from tests.unit.test_api_auth import (
    HOME_DISTRICT,
    HOME_VILLAGE,
    OTHER_DISTRICT,
    OTHER_PROGRAM,
    OTHER_VILLAGE,
    Keys,
    api,
    bearer,
    keys,
    nik,
    worker,
)

pytestmark = pytest.mark.integration

__all__ = ["api", "keys"]  # the fixtures, shared with test_api_auth

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
KPJ_1, KPJ_2, KPJ_3 = "13012345671", "13012345672", "13012345673"
INJECTED = '=HYPERLINK("http://evil.example/x","klik")'
#: The handover's layout, as docs/api.md documents it.
COLUMNS = [
    "NIK",
    "NAMA_LENGKAP",
    "TANGGAL_LAHIR",
    "JENIS_KELAMIN",
    "PEKERJAAN",
    "DESA_KELURAHAN",
    "KECAMATAN",
    "NO_HP",
    "AWAL_KEPESERTAAN",
    "AKHIR_KEPESERTAAN",
    "PROGRAM",
    "NOMOR_KPJ",
]


@pytest.fixture
async def service(data_dir: Path) -> AsyncIterator[Service]:
    """Registration without a broker, its clock standing still, two programmes published."""
    settings = RegistrationSettings(LINDUNG_DATA_DIR=str(data_dir), kafka_bootstrap_servers=None)
    async with with_tables(create_service(settings, clock=FixedClock(NOW))) as svc:
        await publish_known(svc, PROGRAM, OTHER_PROGRAM)
        yield svc


def confirmed(serial: int, term: int = 1, **fields: Any) -> EligibilityConfirmed:
    start, end = (date(2025, 10, 1), date(2025, 12, 31))
    if term == 2:
        start, end = (date(2026, 1, 1), date(2026, 3, 31))
    return EligibilityConfirmed(
        worker_id=worker_id_for(PROGRAM, nik(serial)),
        program_id=PROGRAM,
        nik=nik(serial),
        coverage_start=start,
        coverage_end=end,
        decided_at=NOW,
        term=term,
        **fields,
    )


def assigned(serial: int, kpj: str) -> MembershipNumberAssigned:
    return MembershipNumberAssigned(
        program_id=PROGRAM, nik=nik(serial), kpj=kpj, assigned_on=date(2026, 1, 3)
    )


@pytest.fixture
async def workers(api: httpx.AsyncClient, keys: Keys, service: Service) -> None:
    """Workers 1, 2 (a name that is a formula, a woman) and 4 (another desa) confirmed for
    term 1; worker 3 registered, never confirmed. Worker 1 has number KPJ_1."""
    places = {4: {"village": OTHER_VILLAGE, "district": OTHER_DISTRICT}}
    overrides: dict[int, dict[str, Any]] = {
        2: {"full_name": INJECTED, "gender": "P", "occupation": "@SUM(1+1)", "phone": None}
    }
    for serial in (1, 2, 3, 4):
        body = worker(serial, **places.get(serial, {}), **overrides.get(serial, {}))
        answer = await api.post(f"/programs/{PROGRAM}/workers", json=body, headers=ops(keys))
        assert answer.status_code == 201, answer.text
    await handle_now(service, [confirmed(1), confirmed(2), confirmed(4)])
    await handle_now(service, [assigned(1, KPJ_1)])


def ops(keys: Keys) -> dict[str, str]:
    return bearer(keys.operator)


def handover_url(term: int = 1, extension: str = "csv", program_id: str = PROGRAM) -> str:
    return f"/programs/{program_id}/terms/{term}/handover.{extension}"


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def xlsx_rows(content: bytes) -> tuple[list[list[Any]], set[str]]:
    """The first sheet's values, and the data types of its cells."""
    sheet = load_workbook(io.BytesIO(content)).worksheets[0]
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    types = {cell.data_type for row in sheet.iter_rows() for cell in row if cell.value is not None}
    return values, types


# --- the handover -------------------------------------------------------------------------------


def expected_rows() -> list[list[str]]:
    """Term 1's workers, by kecamatan, desa and name (`=HYPERLINK` sorts before `Pekerja` by
    code point and by any locale's collation, which skips punctuation); the formula
    neutralised."""
    return [
        [
            nik(2),
            "'" + INJECTED,
            "1990-01-01",
            "P",
            "'@SUM(1+1)",
            HOME_VILLAGE,
            HOME_DISTRICT,
            "",
            "2025-10-01",
            "2025-12-31",
            "JKK+JKM",
            "",
        ],
        [
            nik(1),
            "Pekerja 1",
            "1990-01-01",
            "L",
            "Petani",
            HOME_VILLAGE,
            HOME_DISTRICT,
            "081234567890",
            "2025-10-01",
            "2025-12-31",
            "JKK+JKM",
            KPJ_1,
        ],
        [
            nik(4),
            "Pekerja 4",
            "1990-01-01",
            "L",
            "Petani",
            OTHER_VILLAGE,
            OTHER_DISTRICT,
            "081234567890",
            "2025-10-01",
            "2025-12-31",
            "JKK+JKM",
            "",
        ],
    ]


async def test_the_csv_handover_lists_the_terms_confirmed_workers_in_the_layout(
    api: httpx.AsyncClient, keys: Keys, workers: None
) -> None:
    answer = await api.get(handover_url(), headers=ops(keys))

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert f"serah-terima-{PROGRAM}-T1.csv" in answer.headers["content-disposition"]
    header, *body = csv_rows(answer.text)
    assert header == COLUMNS
    # Kota Tambolaka before Wewewa Barat; worker 3, never confirmed, is not there.
    assert body == expected_rows()


async def test_the_xlsx_handover_has_the_same_rows_every_cell_a_string(
    api: httpx.AsyncClient, keys: Keys, workers: None
) -> None:
    answer = await api.get(handover_url(extension="xlsx"), headers=ops(keys))

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    values, types = xlsx_rows(answer.content)
    assert values[0] == COLUMNS
    # Empty cells are empty strings; openpyxl reads an empty string cell back as None.
    assert [[v or "" for v in row] for row in values[1:]] == expected_rows()
    assert types == {"s"}  # no formula, no number, no error value
    assert values[1][1] == "'" + INJECTED


async def test_each_term_lists_its_own_workers_and_the_numbers_stay_with_the_worker(
    api: httpx.AsyncClient, keys: Keys, service: Service, workers: None
) -> None:
    renewal = ProgramRenewed(
        program_id=PROGRAM,
        term_start=date(2026, 1, 1),
        term_end=date(2026, 3, 31),
        renewed_at=NOW,
    )
    await handle_now(service, [renewal])
    await handle_now(service, [confirmed(1, 2, carried=True)])

    term_2 = await api.get(handover_url(2), headers=ops(keys))
    term_3 = await api.get(handover_url(3), headers=ops(keys))
    unknown = await api.get(handover_url(program_id="sbd-never-2030"), headers=ops(keys))
    other = await api.get(handover_url(program_id=OTHER_PROGRAM), headers=ops(keys))

    assert term_2.status_code == 200, term_2.text
    [header, only] = csv_rows(term_2.text)
    assert header == COLUMNS
    assert (only[0], only[8], only[9], only[11]) == (nik(1), "2026-01-01", "2026-03-31", KPJ_1)
    assert term_3.status_code == 404 and " / " in term_3.json()["detail"]
    assert unknown.status_code == 404
    assert csv_rows(other.text) == [COLUMNS]  # published, nobody confirmed


@pytest.mark.parametrize("route", ["csv", "xlsx", "upload"])
async def test_only_an_operator_key_hands_over_or_uploads_numbers(
    api: httpx.AsyncClient, keys: Keys, service: Service, workers: None, route: str
) -> None:
    async def call(headers: dict[str, str]) -> httpx.Response:
        if route == "upload":
            return await upload_numbers(api, headers, f"NIK,NOMOR_KPJ\n{nik(2)},{KPJ_2}\n")
        return await api.get(handover_url(extension=route), headers=headers)

    village = await call(bearer(keys.village))
    anonymous = await call({})

    assert village.status_code == 403, village.text
    assert " / " in village.json()["detail"]
    assert anonymous.status_code == 401
    assert [n.kpj for n in await rows(service, MembershipNumber)] == [KPJ_1]


# --- the numbers uploaded -----------------------------------------------------------------------


async def upload_numbers(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    text: str | bytes,
    filename: str = "kpj.csv",
    program_id: str = PROGRAM,
) -> httpx.Response:
    content = text.encode() if isinstance(text, str) else text
    return await api.post(
        f"/programs/{program_id}/membership-numbers",
        files={"file": (filename, content, "application/octet-stream")},
        headers=headers,
    )


UPLOAD = "\n".join(
    [
        "NIK,NOMOR_KPJ",
        f"{nik(1)},{KPJ_1}",  # 2: the number worker 1 has: repeated
        f"{nik(2)},130 1234 5672",  # 3: assigned
        f"{nik(99)},{KPJ_3}",  # 4: nobody with this NIK
        f"{nik(3)},{KPJ_1}",  # 5: worker 1's number
        f"{nik(4)},12345",  # 6: not 11 digits
        f"5318013201900001,{KPJ_3}",  # 7: no NIK (a 32nd day)
        f"{nik(4)},",  # 8: no number yet: left alone
        f"{nik(1)},{KPJ_3}",  # 9: worker 1 has another
    ]
)


async def test_an_upload_stores_and_publishes_the_new_numbers_and_reports_each_refused_row(
    api: httpx.AsyncClient, keys: Keys, service: Service, workers: None
) -> None:
    answer = await upload_numbers(api, ops(keys), UPLOAD)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    counts = {k: body[k] for k in ("rows", "assigned", "repeated", "without_kpj", "rejected")}
    assert counts == {"rows": 8, "assigned": 1, "repeated": 1, "without_kpj": 1, "rejected": 5}
    assert body["error"] is None
    assert [(e["row"], e["nik"], e["code"]) for e in body["errors"]] == [
        (4, "5318********0099", "unknown_nik"),
        (5, "5318********0003", "kpj_conflict"),
        (6, "5318********0004", "kpj_invalid"),
        (7, "5318********0001", "nik_invalid_component"),
        (9, "5318********0001", "kpj_conflict"),
    ]
    assert all(" / " in e["message"] for e in body["errors"])
    assert nik(99) not in answer.text

    # Stored, and published through the outbox (registration's source, keyed by NIK).
    numbers = {(n.nik, n.kpj) for n in await rows(service, MembershipNumber)}
    assert numbers == {(nik(1), KPJ_1), (nik(2), KPJ_2)}
    [row] = await outbox(service, topics.MEMBERSHIP_NUMBER_ASSIGNED)
    assert row.key == nik(2)
    assert '"ce_source": "/lindung/registration"' in row.headers
    [published] = await emitted(service, MembershipNumberAssigned)
    assert (published.program_id, published.nik, published.kpj) == (PROGRAM, nik(2), KPJ_2)
    assert published.assigned_on == NOW.date()
    assert published.reference.startswith("upload ops: kpj.csv")

    # Read back from the topic, as registration reads it: a repeat, nothing new.
    await handle_now(service, [published])
    entries = [
        e for e in await rows(service, TimelineEntry) if e.kind == "membership_number_assigned"
    ]
    assert sorted(e.nik for e in entries) == [nik(1), nik(2)]
    assert next(e for e in entries if e.nik == nik(2)).event_id == row.event_id

    # The same file again changes nothing.
    again = (await upload_numbers(api, ops(keys), UPLOAD)).json()
    assert (again["assigned"], again["repeated"], again["rejected"]) == (0, 2, 5)
    assert len(await outbox(service, topics.MEMBERSHIP_NUMBER_ASSIGNED)) == 1


async def test_the_number_shows_in_the_timeline_and_the_workers_status(
    api: httpx.AsyncClient, keys: Keys, workers: None
) -> None:
    await upload_numbers(api, ops(keys), f"NIK,NOMOR_KPJ\n{nik(2)},{KPJ_2}\n")
    worker_id = worker_id_for(PROGRAM, nik(2))

    timeline = (await api.get(f"/workers/{nik(2)}", headers=bearer(keys.village))).json()
    status = await api.get(f"/programs/{PROGRAM}/workers/{worker_id}", headers=ops(keys))
    without = await api.get(
        f"/programs/{PROGRAM}/workers/{worker_id_for(PROGRAM, nik(3))}", headers=ops(keys)
    )

    [ref] = timeline["workers"]
    assert ref["kpj"] == KPJ_2
    [entry] = [e for e in timeline["entries"] if e["kind"] == "membership_number_assigned"]
    assert entry["details"]["kpj"] == KPJ_2
    assert entry["worker_id"] == worker_id
    assert "term" not in entry["details"]
    assert status.json()["kpj"] == KPJ_2
    assert without.json()["kpj"] is None


async def test_the_handover_filled_in_is_an_upload(
    api: httpx.AsyncClient, keys: Keys, workers: None
) -> None:
    """The branch fills NOMOR_KPJ in the XLSX it was handed, and it is uploaded as it is: other
    columns are ignored, rows still without a number left alone."""
    handed = await api.get(handover_url(extension="xlsx"), headers=ops(keys))
    book = load_workbook(io.BytesIO(handed.content))
    sheet = book.worksheets[0]
    for row in sheet.iter_rows(min_row=2):
        if row[0].value == nik(2):
            row[11].value = KPJ_2
    filled = io.BytesIO()
    book.save(filled)

    answer = await upload_numbers(api, ops(keys), filled.getvalue(), "serah-terima.xlsx")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["rows"], body["assigned"], body["repeated"], body["without_kpj"]) == (3, 1, 1, 1)
    assert body["errors"] == []
    after = csv_rows((await api.get(handover_url(), headers=ops(keys))).text)
    assert [(r[0], r[11]) for r in after[1:]] == [(nik(2), KPJ_2), (nik(1), KPJ_1), (nik(4), "")]


async def test_a_file_that_is_not_the_layout_is_refused_whole(
    api: httpx.AsyncClient, keys: Keys, service: Service, workers: None
) -> None:
    no_number = await upload_numbers(api, ops(keys), f"NIK,KPJ_BARU\n{nik(2)},{KPJ_2}\n")
    no_nik = await upload_numbers(api, ops(keys), f"NOMOR_KPJ\n{KPJ_2}\n")
    not_a_spreadsheet = await upload_numbers(api, ops(keys), b"%PDF-1.7", "kpj.pdf")
    unknown = await upload_numbers(api, ops(keys), UPLOAD, program_id="sbd-never-2030")
    book = Workbook()
    book.active.append(["NIK", "NOMOR_KPJ"])  # type: ignore[union-attr]
    book.active.append([nik(2), int(KPJ_2)])  # type: ignore[union-attr]  # a number cell
    as_number = io.BytesIO()
    book.save(as_number)
    number_cell = await upload_numbers(api, ops(keys), as_number.getvalue(), "kpj.xlsx")

    assert no_number.status_code == 422, no_number.text
    assert "NOMOR_KPJ" in no_number.json()["detail"]
    assert no_nik.status_code == 422 and "NIK" in no_nik.json()["detail"]
    assert not_a_spreadsheet.status_code == 415
    assert unknown.status_code == 404
    assert number_cell.json()["assigned"] == 1  # read back as its digits


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        pytest.param(b"\xed\xa0\x80.csv", b"NIK,NOMOR_KPJ\n", id="surrogate-name"),
        pytest.param(
            b"a\x00b.csv", b"NIK,NOMOR_KPJ\n5318010101900002,13012345672\n", id="nul-name"
        ),
        pytest.param(
            b"k.csv", b"NIK,NOMOR_KPJ\n\x00,\xed\xa0\x80\n5318010101900002,\x1b\n", id="nul-cells"
        ),
        pytest.param(b"k.csv", b"NIK,NOMOR_KPJ\n" + b"9" * 900 + b",1\n", id="long-nik"),
        pytest.param(b"k.xlsx", b"PK\x03\x04 not a zip", id="broken-xlsx"),
    ],
)
async def test_hostile_uploads_get_an_answer_never_a_server_error(
    api: httpx.AsyncClient, keys: Keys, workers: None, filename: bytes, content: bytes
) -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--B--\r\n"
    )
    answer = await api.post(
        f"/programs/{PROGRAM}/membership-numbers",
        content=body,
        headers={**ops(keys), "content-type": "multipart/form-data; boundary=B"},
    )

    assert answer.status_code in (200, 422), answer.text
    assert "9" * 100 not in answer.text  # a long value is masked, not echoed


# --- on a real broker ---------------------------------------------------------------------------


async def test_uploaded_numbers_reach_the_wire_and_upstream_refusals_are_dead_lettered(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    """Registration writes `membership.number-assigned` for an upload and reads it back (a
    repeat: one timeline entry); BPJS's own number for an unknown NIK, sent from its source,
    lands on the topic's dead letters with `unknown_nik`."""
    from lindung_registration.auth import create_key

    service = create_service(RegistrationSettings(**on_broker(data_dir, kafka_bootstrap)))
    key = create_key(data_dir / "api-keys.yaml", "ops", "operator")
    headers = bearer(key)
    stray = MembershipNumberAssigned(
        program_id=PROGRAM, nik=nik(99), kpj=KPJ_3, assigned_on=date(2026, 1, 3)
    )
    watched = [topics.MEMBERSHIP_NUMBER_ASSIGNED, topics.dead_letter_topic(stray.TOPIC)]
    async with (
        running(service),
        wire(kafka_bootstrap, watched) as out,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=service.http), base_url="http://test"
        ) as api,
    ):
        await publish_known(service, PROGRAM)
        registered = await api.post(f"/programs/{PROGRAM}/workers", json=worker(1), headers=headers)
        assert registered.status_code == 201, registered.text
        answer = await upload_numbers(api, headers, f"NIK,NOMOR_KPJ\n{nik(1)},{KPJ_1}\n")
        assert answer.json()["assigned"] == 1, answer.text
        async with TrustedClient(kafka_bootstrap, tag="kc-tambolaka") as bpjs:
            await bpjs.publish(stray)
        published = await out.wait_for(topics.MEMBERSHIP_NUMBER_ASSIGNED, 2)
        [record] = [r for r in published if r.key == nik(1)]  # partitions: in no set order
        [dead] = await out.wait_for(topics.dead_letter_topic(stray.TOPIC), 1)
        await wait_until_consumed(kafka_bootstrap, service, topics.MEMBERSHIP_NUMBER_ASSIGNED)
        await asyncio.sleep(0.2)

    assert record.key == nik(1)
    assert record.headers["ce_source"] == "/lindung/registration"
    assert record.headers["ce_type"] == MembershipNumberAssigned.ce_type()
    assert MembershipNumberAssigned.model_validate_json(record.value).kpj == KPJ_1
    assert dead.headers["x-lindung-error-code"] == "unknown_nik"
    assert dead.headers["ce_source"] == "/upstream/bpjs/kc-tambolaka"
    assert await count_rows(service, MembershipNumber) == 1
    entries = await eventually(
        lambda: count_rows(
            service, TimelineEntry, TimelineEntry.kind == "membership_number_assigned"
        ),
        what="the number on the timeline",
    )
    assert entries == 1
