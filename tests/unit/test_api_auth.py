"""Registration's HTTP API without a broker: who may call what (API keys and their roles), key
rotation and revocation while the service runs, and how `POST /programs/{id}/workers` judges and
stores what it is sent.

The service is created with a data directory and no Kafka bootstrap; its tables are created and
its FastAPI app is driven in-process. Nothing is relayed from the outbox (no broker), so what a
registration emitted is read from the outbox table.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from lindung_contracts import WorkerRegistered, topics
from lindung_registration.app import create_service
from lindung_registration.auth import ApiKey, create_key, hash_key, read_keys, revoke_key
from lindung_registration.db import (
    ImportJob,
    PaymentRecord,
    RejectedRequest,
    TimelineEntry,
    Worker,
    WorkerStatus,
)
from lindung_registration.domain import worker_id_for
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import Service
from tests.programmes import publish_known
from tests.unit.handler_kit import PROGRAM, outbox, rows

OTHER_PROGRAM = "sbd-pekerja-rentan-2026q1"
HOME_VILLAGE, HOME_DISTRICT = "Kalena Wanno", "Kota Tambolaka"
OTHER_VILLAGE, OTHER_DISTRICT = "Kalembu Ndara Mane", "Wewewa Barat"


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
        "village": HOME_VILLAGE,
        "district": HOME_DISTRICT,
        "phone": "0812-3456-7890",
    }
    body.update(overrides)
    return body


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


CSV_UPLOAD = (
    "NIK,Nama Lengkap,Tanggal Lahir,Jenis Kelamin,Pekerjaan,Desa/Kelurahan,Kecamatan,No HP\n"
    f"{nik(901)},Ana,01/01/1990,L,Petani,{HOME_VILLAGE},{HOME_DISTRICT},081234567890\n"
)


class Keys:
    """The API keys of these tests, written to the file the service reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.operator = create_key(path, "ops", "operator")
        # Two desa keys, each naming its desa and kecamatan.
        self.village = create_key(
            path, "desa-kalena-wanno", "village", village=HOME_VILLAGE, district=HOME_DISTRICT
        )
        self.other_village = create_key(
            path, "desa-kalembu", "village", village=OTHER_VILLAGE, district=OTHER_DISTRICT
        )


@pytest.fixture
async def service(data_dir: Path) -> AsyncIterator[Service]:
    settings = RegistrationSettings(LINDUNG_DATA_DIR=str(data_dir), kafka_bootstrap_servers=None)
    service = create_service(settings)
    await service.database.create_tables(service.tables)
    await publish_known(service, PROGRAM, OTHER_PROGRAM)
    try:
        yield service
    finally:
        await service.database.dispose()


@pytest.fixture
def keys(service: Service) -> Keys:
    path = service.settings.api_keys_path  # type: ignore[attr-defined]
    return Keys(path)


@pytest.fixture
async def api(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=service.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def start_import(api: httpx.AsyncClient, key: str, text: str = CSV_UPLOAD) -> str:
    response = await api.post(
        f"/programs/{PROGRAM}/imports",
        files={"file": ("peserta.csv", text.encode(), "text/csv")},
        headers=bearer(key),
    )
    assert response.status_code == 202, response.text
    return str(response.json()["import_id"])


async def call(
    api: httpx.AsyncClient, route: str, headers: dict[str, str], import_id: str = "0" * 32
) -> httpx.Response:
    """Each route of the API, by a short name, with a valid request."""
    if route == "register":
        return await api.post(f"/programs/{PROGRAM}/workers", json=worker(1), headers=headers)
    if route == "import":
        files = {"file": ("peserta.csv", CSV_UPLOAD.encode(), "text/csv")}
        return await api.post(f"/programs/{PROGRAM}/imports", files=files, headers=headers)
    paths = {
        "template": "/imports/template.csv",
        "import_report": f"/imports/{import_id}",
        "import_errors": f"/imports/{import_id}/errors.csv",
        "timeline": f"/workers/{nik(1)}",
        "summary": f"/programs/{PROGRAM}/summary",
    }
    return await api.get(paths[route], headers=headers)


ROUTES = ["register", "import", "template", "import_report", "import_errors", "timeline", "summary"]


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param(bearer("lnd_not-a-key-anyone-was-given"), id="unknown-key"),
        pytest.param({"Authorization": "Bearer"}, id="bearer-without-key"),
        pytest.param({"Authorization": "Basic b3BzOnNlY3JldA=="}, id="basic-scheme"),
        pytest.param({"Authorization": "lnd_no-scheme"}, id="no-scheme"),
        pytest.param({"X-Api-Key": "lnd_wrong-header"}, id="other-header"),
    ],
)
async def test_every_route_refuses_a_caller_without_a_known_key(
    api: httpx.AsyncClient, keys: Keys, service: Service, route: str, headers: dict[str, str]
) -> None:
    response = await call(api, route, headers)

    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert " / " in response.json()["detail"]  # Bahasa Indonesia / English
    # Nothing happened on the caller's behalf.
    assert await rows(service, Worker) == []
    assert await rows(service, ImportJob) == []


@pytest.mark.parametrize("route", ROUTES)
async def test_a_valid_key_under_the_wrong_scheme_is_refused(
    api: httpx.AsyncClient, keys: Keys, route: str
) -> None:
    response = await call(api, route, {"Authorization": f"Basic {keys.operator}"})

    assert response.status_code == 401


async def test_health_needs_no_key(api: httpx.AsyncClient, keys: Keys) -> None:
    response = await api.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "registration"}


async def test_operator_may_call_every_route(
    api: httpx.AsyncClient, keys: Keys, service: Service
) -> None:
    headers = bearer(keys.operator)
    registered = await call(api, "register", headers)
    assert registered.status_code == 201, registered.text
    import_id = await start_import(api, keys.operator)

    answers = {route: await call(api, route, headers, import_id) for route in ROUTES[2:]}

    assert {route: r.status_code for route, r in answers.items()} == dict.fromkeys(ROUTES[2:], 200)
    assert answers["template"].text.startswith("NIK,Nama Lengkap,Tanggal Lahir")
    assert answers["import_report"].json()["status"] == "queued"  # no importer runs here
    assert answers["import_errors"].text.startswith("NIK,")
    assert answers["timeline"].json()["workers"][0]["worker_id"] == registered.json()["worker_id"]
    assert answers["summary"].json()["program_id"] == PROGRAM
    assert [w.nik for w in await rows(service, Worker)] == [nik(1)]


# --- the village role -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("village", "district"),
    [
        (HOME_VILLAGE, HOME_DISTRICT),
        ("  kalena   WANNO ", "KOTA  tambolaka"),
        ("KALENA WANNO", "kota tambolaka "),
    ],
)
async def test_village_key_registers_a_worker_of_its_own_desa_however_it_is_written(
    api: httpx.AsyncClient, keys: Keys, service: Service, village: str, district: str
) -> None:
    response = await api.post(
        f"/programs/{PROGRAM}/workers",
        json=worker(1, village=village, district=district),
        headers=bearer(keys.village),
    )

    assert response.status_code == 201, response.text
    [stored] = await rows(service, Worker)
    assert stored.worker_id == response.json()["worker_id"]
    assert " ".join(village.split()) == stored.village  # stored as written, spacing normalised


@pytest.mark.parametrize(
    ("village", "district"),
    [
        pytest.param(OTHER_VILLAGE, HOME_DISTRICT, id="another-desa"),
        pytest.param(HOME_VILLAGE, "Loura", id="same-desa-name-another-kecamatan"),
        pytest.param("Kalena Wanno Baru", HOME_DISTRICT, id="longer-name"),
        pytest.param("", HOME_DISTRICT, id="no-desa"),
    ],
)
async def test_village_key_may_not_register_outside_its_desa_and_kecamatan(
    api: httpx.AsyncClient, keys: Keys, service: Service, village: str, district: str
) -> None:
    response = await api.post(
        f"/programs/{PROGRAM}/workers",
        json=worker(1, village=village, district=district),
        headers=bearer(keys.village),
    )

    assert response.status_code == 403, response.text
    assert " / " in response.json()["detail"]
    assert await rows(service, Worker) == []
    assert await outbox(service) == []


async def test_village_key_matches_its_desa_in_its_own_kecamatan_only(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    """Desa names repeat across kecamatan: the same name elsewhere is another desa."""
    url = f"/programs/{PROGRAM}/workers"
    same_name_elsewhere = await api.post(
        url,
        json=worker(1, village=OTHER_VILLAGE.upper(), district="Wewewa Timur"),
        headers=bearer(keys.other_village),
    )
    own = await api.post(
        url,
        json=worker(2, village=OTHER_VILLAGE.upper(), district=f" {OTHER_DISTRICT.lower()} "),
        headers=bearer(keys.other_village),
    )

    assert same_name_elsewhere.status_code == 403, same_name_elsewhere.text
    assert own.status_code == 201, own.text


def test_a_village_key_needs_its_kecamatan(tmp_path: Path) -> None:
    path = tmp_path / "api-keys.yaml"
    with pytest.raises(ValueError, match="district"):
        create_key(path, "desa", "village", village=HOME_VILLAGE)
    with pytest.raises(ValueError, match="district"):
        create_key(path, "desa", "village", village=HOME_VILLAGE, district="  ")
    assert not path.exists()


async def test_a_key_file_with_a_village_key_without_kecamatan_is_refused_at_load(
    api: httpx.AsyncClient, service: Service, tmp_path: Path
) -> None:
    """Written by hand or by an older version: refused with a clear error, no key of it works
    (the file must be fixed), and the broad key never matches a desa of its name."""
    path = service.settings.api_keys_path  # type: ignore[attr-defined]
    old_key = "lnd_" + "x" * 43
    path.write_text(
        yaml.safe_dump(
            {
                "keys": [
                    {
                        "name": "desa-lama",
                        "role": "village",
                        "sha256": hash_key(old_key),
                        "village": OTHER_VILLAGE,
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="kecamatan"):
        read_keys(path)

    response = await api.post(
        f"/programs/{PROGRAM}/workers",
        json=worker(1, village=OTHER_VILLAGE, district="Wewewa Timur"),
        headers=bearer(old_key),
    )
    assert response.status_code == 401, response.text
    assert not ApiKey("k", "village", "x", village=OTHER_VILLAGE).covers(
        OTHER_VILLAGE, "Wewewa Timur"
    )


async def test_village_key_may_register_its_own_but_an_invalid_row_is_still_422(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    response = await api.post(
        f"/programs/{PROGRAM}/workers",
        json=worker(1, nik="123"),
        headers=bearer(keys.village),
    )

    assert response.status_code == 422
    assert [e["code"] for e in response.json()["errors"]] == ["nik_invalid_length"]


async def test_village_key_reads_the_timeline_of_its_own_workers_only(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    ops = bearer(keys.operator)
    for serial, village, district in (
        (1, HOME_VILLAGE, HOME_DISTRICT),
        (2, OTHER_VILLAGE, OTHER_DISTRICT),
    ):
        body = worker(serial, village=village, district=district)
        response = await api.post(f"/programs/{PROGRAM}/workers", json=body, headers=ops)
        assert response.status_code == 201

    own = await api.get(f"/workers/{nik(1)}", headers=bearer(keys.village))
    foreign = await api.get(f"/workers/{nik(2)}", headers=bearer(keys.village))
    theirs = await api.get(f"/workers/{nik(2)}", headers=bearer(keys.other_village))
    unknown = await api.get(f"/workers/{nik(3)}", headers=bearer(keys.village))

    assert own.status_code == 200, own.text
    assert [w["village"] for w in own.json()["workers"]] == [HOME_VILLAGE]
    # Out of the key's scope, the answer is the one for a NIK never registered: a village key
    # does not learn that the NIK exists elsewhere.
    assert (foreign.status_code, foreign.json()) == (unknown.status_code, unknown.json())
    assert unknown.status_code == 404
    assert " / " in foreign.json()["detail"]
    assert theirs.status_code == 200


async def test_timeline_shows_a_village_key_only_its_own_desa_of_a_nik_in_two_programmes(
    api: httpx.AsyncClient, keys: Keys, service: Service
) -> None:
    """The same person registered in two programmes, once in each desa (they moved): each desa
    key sees its own registration, entries and payments, never the other desa's."""
    home_id, away_id = worker_id_for(PROGRAM, nik(1)), worker_id_for(OTHER_PROGRAM, nik(1))
    for program, village, district in (
        (PROGRAM, HOME_VILLAGE, HOME_DISTRICT),
        (OTHER_PROGRAM, OTHER_VILLAGE, OTHER_DISTRICT),
    ):
        body = worker(1, village=village, district=district)
        response = await api.post(
            f"/programs/{program}/workers", json=body, headers=bearer(keys.operator)
        )
        assert response.status_code == 201
    moment = datetime(2025, 10, 1, 8, tzinfo=UTC)
    async with service.database.session() as session:
        for worker_id, program, invoice in (
            (home_id, PROGRAM, "inv-home"),
            (away_id, OTHER_PROGRAM, "inv-away"),
        ):
            session.add(
                TimelineEntry(
                    event_id=f"invoiced-{worker_id}",
                    kind="invoiced",
                    nik=nik(1),
                    program_id=program,
                    worker_id=worker_id,
                    invoice_id=invoice,
                    occurred_at=moment,
                    trace_id="0" * 32,
                    details=json.dumps({"invoice_id": invoice}),
                )
            )
            session.add(
                PaymentRecord(
                    event_id=f"paid-{invoice}",
                    invoice_id=invoice,
                    amount_idr=16_800,
                    paid_at=moment,
                    announced_at=moment,
                    reference=f"ref-{invoice}",
                )
            )
        await session.commit()

    home = (await api.get(f"/workers/{nik(1)}", headers=bearer(keys.village))).json()
    away = (await api.get(f"/workers/{nik(1)}", headers=bearer(keys.other_village))).json()
    everything = (await api.get(f"/workers/{nik(1)}", headers=bearer(keys.operator))).json()

    def shown(entries: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
        return sorted((e["kind"], e["details"].get("invoice_id")) for e in entries)

    # Registering wrote each desa's "registered" entry at once (in the registering transaction).
    assert [w["worker_id"] for w in home["workers"]] == [home_id]
    assert shown(home["entries"]) == [
        ("invoiced", "inv-home"),
        ("payment_received", "inv-home"),
        ("registered", None),
    ]
    assert [w["worker_id"] for w in away["workers"]] == [away_id]
    assert shown(away["entries"]) == [
        ("invoiced", "inv-away"),
        ("payment_received", "inv-away"),
        ("registered", None),
    ]
    assert len(everything["workers"]) == 2
    assert len(everything["entries"]) == 6


async def test_summary_shows_a_village_key_only_its_own_desa(
    api: httpx.AsyncClient, keys: Keys, service: Service
) -> None:
    statuses = [
        # (serial, village, district, eligibility, reasons)
        (1, HOME_VILLAGE, HOME_DISTRICT, "confirmed", ""),
        (2, "kalena wanno", HOME_DISTRICT, "rejected", "age_above_maximum"),
        (3, OTHER_VILLAGE, OTHER_DISTRICT, "rejected", "region_mismatch,gender_mismatch"),
        (4, HOME_VILLAGE, "Loura", "confirmed", ""),  # the same desa name in another kecamatan
    ]
    async with service.database.session() as session:
        for serial, village, district, eligibility, reasons in statuses:
            session.add(
                WorkerStatus(
                    worker_id=worker_id_for(PROGRAM, nik(serial)),
                    program_id=PROGRAM,
                    nik=nik(serial),
                    village=village,
                    district=district,
                    registered=True,
                    eligibility=eligibility,
                    ineligible_reasons=reasons,
                )
            )
        for n, (village, district) in enumerate(
            [(HOME_VILLAGE, HOME_DISTRICT), (OTHER_VILLAGE, OTHER_DISTRICT)]
        ):
            session.add(
                RejectedRequest(
                    event_id=f"rejected-{n}", program_id=PROGRAM, village=village, district=district
                )
            )
        await session.commit()

    mine = (await api.get(f"/programs/{PROGRAM}/summary", headers=bearer(keys.village))).json()
    everyone = (await api.get(f"/programs/{PROGRAM}/summary", headers=bearer(keys.operator))).json()

    assert {(v["district"], v["village"]) for v in mine["by_village"]} == {
        (HOME_DISTRICT, HOME_VILLAGE),
        (HOME_DISTRICT, "kalena wanno"),
    }
    assert [d["district"] for d in mine["by_district"]] == [HOME_DISTRICT]
    assert (mine["totals"]["registered"], mine["totals"]["confirmed"]) == (2, 1)
    assert (mine["totals"]["ineligible"], mine["totals"]["requests_rejected"]) == (1, 1)
    assert mine["ineligible_by_reason"] == {"age_above_maximum": 1}

    assert everyone["totals"]["registered"] == 4
    assert everyone["totals"]["requests_rejected"] == 2
    assert everyone["ineligible_by_reason"] == {
        "age_above_maximum": 1,
        "gender_mismatch": 1,
        "region_mismatch": 1,
    }
    assert {d["district"] for d in everyone["by_district"]} == {
        HOME_DISTRICT,
        OTHER_DISTRICT,
        "Loura",
    }


async def test_an_import_is_readable_by_its_own_key_and_operators_only(
    api: httpx.AsyncClient, keys: Keys, service: Service
) -> None:
    import_id = await start_import(api, keys.village)

    for key, expected in (
        (keys.village, 200),
        (keys.operator, 200),
        (keys.other_village, 403),
    ):
        report = await api.get(f"/imports/{import_id}", headers=bearer(key))
        errors = await api.get(f"/imports/{import_id}/errors.csv", headers=bearer(key))
        assert (report.status_code, errors.status_code) == (expected, expected), key
    forbidden = await api.get(f"/imports/{import_id}", headers=bearer(keys.other_village))
    assert " / " in forbidden.json()["detail"]
    [job] = await rows(service, ImportJob)
    assert (job.submitted_by, job.village_scope, job.district_scope) == (
        "desa-kalena-wanno",
        HOME_VILLAGE,
        HOME_DISTRICT,
    )
    # An operator's import is not readable by a desa key either.
    operators = await start_import(api, keys.operator)
    response = await api.get(f"/imports/{operators}", headers=bearer(keys.village))
    assert response.status_code == 403
    missing = await api.get(f"/imports/{'f' * 32}", headers=bearer(keys.operator))
    assert missing.status_code == 404


async def test_village_key_may_download_the_template(api: httpx.AsyncClient, keys: Keys) -> None:
    response = await api.get("/imports/template.csv", headers=bearer(keys.village))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.strip().split(",")[0] == "NIK"


# --- the key file: rotation and revocation while the service runs ---------------------------------


async def test_creating_a_key_again_under_its_name_rotates_it_without_a_restart(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    old = keys.village
    assert (await call(api, "summary", bearer(old))).status_code == 200

    new = create_key(
        keys.path, "desa-kalena-wanno", "village", village=HOME_VILLAGE, district=HOME_DISTRICT
    )

    assert (await call(api, "summary", bearer(old))).status_code == 401
    assert (await call(api, "summary", bearer(new))).status_code == 200
    assert (await call(api, "summary", bearer(keys.operator))).status_code == 200  # untouched


async def test_rotation_is_seen_even_when_the_file_keeps_its_size_and_mtime(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    """On a file system with coarse timestamps (1-2 s on some), a rotation soon after the last read
    leaves the file with the same size (same name, same-length hash and time stamp) and the same
    mtime: the service must still notice that the file was replaced."""
    assert (await call(api, "summary", bearer(keys.village))).status_code == 200
    before = keys.path.stat()

    new = create_key(
        keys.path, "desa-kalena-wanno", "village", village=HOME_VILLAGE, district=HOME_DISTRICT
    )
    os.utime(keys.path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert keys.path.stat().st_size == before.st_size  # the premise of this test

    assert (await call(api, "summary", bearer(keys.village))).status_code == 401
    assert (await call(api, "summary", bearer(new))).status_code == 200


async def test_a_revoked_key_is_refused_at_once_and_the_others_still_work(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    assert (await call(api, "summary", bearer(keys.other_village))).status_code == 200

    assert revoke_key(keys.path, "desa-kalembu") is True
    assert revoke_key(keys.path, "desa-kalembu") is False  # already gone

    assert (await call(api, "summary", bearer(keys.other_village))).status_code == 401
    assert (await call(api, "summary", bearer(keys.village))).status_code == 200
    assert (await call(api, "summary", bearer(keys.operator))).status_code == 200


async def test_a_broken_key_file_keeps_the_keys_already_loaded(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    """A half-written or mistyped file must not lock everyone out."""
    assert (await call(api, "summary", bearer(keys.operator))).status_code == 200

    keys.path.write_text("keys: [ {name: broken, role: emperor, sha256: x} ]\n", encoding="utf-8")

    assert (await call(api, "summary", bearer(keys.operator))).status_code == 200


def test_the_key_file_holds_hashes_only_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "api-keys.yaml"
    operator = create_key(path, "ops", "operator")
    village = create_key(
        path, "desa", "village", village=f" {HOME_VILLAGE} ", district=f"{HOME_DISTRICT} "
    )

    text = path.read_text(encoding="utf-8")
    entries = yaml.safe_load(text)["keys"]

    for key in (operator, village):
        assert key.startswith("lnd_") and len(key) > 40
        assert key not in text
        assert key.removeprefix("lnd_") not in text
    assert [(e["name"], e["role"], e["sha256"]) for e in entries] == [
        ("ops", "operator", hash_key(operator)),
        ("desa", "village", hash_key(village)),
    ]
    assert (entries[1]["village"], entries[1]["district"]) == (HOME_VILLAGE, HOME_DISTRICT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["api-keys.yaml"]  # no temporary file left


def test_a_village_key_needs_its_village(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="village"):
        create_key(tmp_path / "api-keys.yaml", "desa", "village", village="  ")
    assert not (tmp_path / "api-keys.yaml").exists()


# --- POST /programs/{id}/workers: what is accepted and how it is stored ---------------------------


async def test_new_worker_is_201_and_the_same_worker_again_is_200_with_the_same_id(
    api: httpx.AsyncClient, keys: Keys, service: Service
) -> None:
    url, headers = f"/programs/{PROGRAM}/workers", bearer(keys.operator)

    first = await api.post(url, json=worker(1), headers=headers)
    again = await api.post(url, json=worker(1, nik=f"5318 0101 0190 {1:04d}"), headers=headers)

    assert (first.status_code, first.json()["status"]) == (201, "registered")
    assert (again.status_code, again.json()["status"]) == (200, "repeated")
    assert first.json()["worker_id"] == again.json()["worker_id"] == worker_id_for(PROGRAM, nik(1))
    assert len(await rows(service, Worker)) == 1
    assert len(await outbox(service, topics.WORKER_REGISTERED)) == 1


@pytest.mark.parametrize(
    ("birth_date", "expected"),
    [
        ("01/01/1990", date(1990, 1, 1)),
        ("1990-01-01", date(1990, 1, 1)),
        ("17/08/1990", date(1990, 8, 17)),
        ("1990-08-17", date(1990, 8, 17)),
        ("1990-08-17T00:00:00", date(1990, 8, 17)),
        ("5-3-1990", date(1990, 3, 5)),
    ],
)
async def test_birth_dates_in_indonesian_and_iso_form_are_accepted(
    api: httpx.AsyncClient, keys: Keys, service: Service, birth_date: str, expected: date
) -> None:
    response = await api.post(
        f"/programs/{PROGRAM}/workers",
        json=worker(1, birth_date=birth_date),
        headers=bearer(keys.operator),
    )

    assert response.status_code == 201, response.text
    [stored] = await rows(service, Worker)
    assert stored.birth_date == expected


@pytest.mark.parametrize(
    "phone", ["0812-3456-7890", "081234567890", "+62 812 3456 7890", "62812-3456-7890"]
)
async def test_phone_is_stored_and_announced_in_e164(
    api: httpx.AsyncClient, keys: Keys, service: Service, phone: str
) -> None:
    response = await api.post(
        f"/programs/{PROGRAM}/workers", json=worker(1, phone=phone), headers=bearer(keys.operator)
    )

    assert response.status_code == 201, response.text
    [stored] = await rows(service, Worker)
    [message] = await outbox(service, topics.WORKER_REGISTERED)
    announced = WorkerRegistered.model_validate_json(message.payload)
    assert stored.phone == announced.phone == "+6281234567890"
    assert (announced.gender, announced.nik) == ("M", nik(1))


async def test_numbers_sent_as_json_numbers_are_read_as_text(
    api: httpx.AsyncClient, keys: Keys, service: Service
) -> None:
    """Upstream systems (and spreadsheets turned into JSON) send NIK and phone as numbers."""
    body = worker(1, nik=int(nik(1)), phone=6281234567890)

    response = await api.post(
        f"/programs/{PROGRAM}/workers", json=body, headers=bearer(keys.operator)
    )

    assert response.status_code == 201, response.text
    [stored] = await rows(service, Worker)
    assert (stored.nik, stored.phone) == (nik(1), "+6281234567890")


async def test_invalid_worker_is_422_with_every_field_error_in_both_languages(
    api: httpx.AsyncClient, keys: Keys, service: Service
) -> None:
    body = worker(
        1,
        nik="5318-01",
        full_name="  ",
        birth_date="31/02/1990",
        gender="X",
        district="",
        phone="0812-CALL-ME",
    )

    response = await api.post(
        f"/programs/{PROGRAM}/workers", json=body, headers=bearer(keys.operator)
    )

    assert response.status_code == 422
    answer = response.json()
    assert " / " in answer["detail"]
    assert {e["field"]: e["code"] for e in answer["errors"]} == {
        "nik": "nik_invalid_length",
        "full_name": "name_required",
        "birth_date": "birth_date_invalid",
        "gender": "gender_invalid",
        "district": "district_required",
        "phone": "phone_invalid",
    }
    for error in answer["errors"]:
        indonesian, english = error["message"].split(" / ", 1)
        assert indonesian.strip() and english.strip(), error
    assert await rows(service, Worker) == []
    # The refusal is announced, as for the other intakes (it feeds the summary).
    assert len(await outbox(service, topics.REGISTRATION_REJECTED)) == 1


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        pytest.param(json.dumps({"full_name": "Tanpa NIK"}), {}, id="nik-missing"),
        pytest.param("{not json", {}, id="not-json"),
        pytest.param(json.dumps([worker(1)]), {}, id="a-list"),
        pytest.param(json.dumps(worker(1, village="x" * 1001)), {}, id="field-over-1000-chars"),
    ],
)
async def test_unreadable_body_is_422_in_the_same_bilingual_shape(
    api: httpx.AsyncClient, keys: Keys, service: Service, content: str, headers: dict[str, str]
) -> None:
    response = await api.post(
        f"/programs/{PROGRAM}/workers",
        content=content,
        headers={**bearer(keys.operator), "Content-Type": "application/json", **headers},
    )

    assert response.status_code == 422, response.text
    answer = response.json()
    assert " / " in answer["detail"]
    assert answer["errors"], answer
    assert all(" / " in e["message"] and e["field"] and e["code"] for e in answer["errors"])
    assert await rows(service, Worker) == []


async def test_malformed_programme_id_is_422(api: httpx.AsyncClient, keys: Keys) -> None:
    response = await api.post(
        "/programs/-bad id!/workers", json=worker(1), headers=bearer(keys.operator)
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "program_id"


async def test_timeline_of_a_malformed_nik_is_422_with_its_code(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    response = await api.get("/workers/12345", headers=bearer(keys.operator))

    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "nik_invalid_length"
    assert " / " in response.json()["detail"]
