"""The staff pages in-process (no broker, no browser): the login into a session cookie, CSRF,
sessions that end, what a village key sees page by page, and bad input answered with a page in
Bahasa Indonesia. The browser test (tests/e2e/test_staff_pages.py) drives the same pages in
Chromium on a running stack."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from lindung_contracts import (
    ContributionInvoiced,
    CoverageActivated,
    EligibilityConfirmed,
    EligibilityRejected,
    PaymentReceived,
    ProgramRenewed,
)
from lindung_contracts.events import Reason
from lindung_registration.app import create_service
from lindung_registration.auth import create_key, revoke_key
from lindung_registration.db import WebSession
from lindung_registration.domain import worker_id_for
from lindung_registration.imports import Importer
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import Service
from tests.programmes import publish_known
from tests.unit.handler_kit import PROGRAM, emitted, handle_now, outbox, rows
from tests.unit.test_api_auth import (
    CSV_UPLOAD,
    HOME_DISTRICT,
    HOME_VILLAGE,
    OTHER_DISTRICT,
    OTHER_VILLAGE,
    bearer,
    nik,
    worker,
)

START = datetime(2025, 10, 29, 8, 0, tzinfo=UTC)


class MovableClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(START)


@pytest.fixture
async def service(data_dir: Path, clock: MovableClock) -> AsyncIterator[Service]:
    settings = RegistrationSettings(LINDUNG_DATA_DIR=str(data_dir), kafka_bootstrap_servers=None)
    service = create_service(settings, clock=clock)
    await service.database.create_tables(service.tables)
    await publish_known(service, PROGRAM)
    try:
        yield service
    finally:
        await service.database.dispose()


class Keys:
    def __init__(self, path: Path) -> None:
        self.operator = create_key(path, "ops", "operator")
        self.village = create_key(
            path, "desa-kalena-wanno", "village", village=HOME_VILLAGE, district=HOME_DISTRICT
        )
        self.path = path


@pytest.fixture
def keys(service: Service) -> Keys:
    return Keys(service.settings.api_keys_path)  # type: ignore[attr-defined]


def client(service: Service) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=service.http)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden {name} on the page"
    return found.group(1)


async def login(browser: httpx.AsyncClient, key: str, next_page: str = "") -> str:
    """Log in through the form; the session's CSRF token (from the page it lands on)."""
    form = await browser.get("/ui/login", params={"next": next_page} if next_page else None)
    assert form.status_code == 200
    answer = await browser.post(
        "/ui/login",
        data={
            "api_key": key,
            "next": hidden(form.text, "next"),
            "login_token": hidden(form.text, "login_token"),
        },
    )
    assert answer.status_code == 303, answer.text
    landed = await browser.get(answer.headers["location"])
    assert landed.status_code == 200, landed.text
    return hidden(landed.text, "csrf_token")


def main_text(page: str) -> str:
    found = re.search(r"<main[^>]*>(.*)</main>", page, re.S)
    assert found
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


async def enrol(service: Service, keys: Keys) -> dict[str, str]:
    """Two workers in the key's desa and one in another; the first two invoiced, paid and
    active, the third found ineligible."""
    async with client(service) as api:
        for serial, village, district in (
            (1, HOME_VILLAGE, HOME_DISTRICT),
            (2, HOME_VILLAGE, HOME_DISTRICT),
            (3, OTHER_VILLAGE, OTHER_DISTRICT),
        ):
            body = worker(serial, village=village, district=district, full_name=f"Warga {serial}")
            answer = await api.post(
                f"/programs/{PROGRAM}/workers", json=body, headers=bearer(keys.operator)
            )
            assert answer.status_code == 201, answer.text
    ids = {str(s): worker_id_for(PROGRAM, nik(s)) for s in (1, 2, 3)}
    common = {"program_id": PROGRAM}
    await handle_now(
        service,
        [
            EligibilityConfirmed(
                worker_id=ids[s],
                nik=nik(int(s)),
                coverage_start=date(2025, 10, 1),
                coverage_end=date(2025, 12, 31),
                decided_at=START,
                **common,
            )
            for s in ("1", "2")
        ],
    )
    await handle_now(
        service,
        [
            EligibilityRejected(
                worker_id=ids["3"],
                nik=nik(3),
                reasons=[Reason(code="age_above_maximum", message="Usia di atas batas / Too old")],
                decided_at=START,
                **common,
            )
        ],
    )
    await handle_now(
        service,
        [
            ContributionInvoiced(
                worker_id=ids[s],
                nik=nik(int(s)),
                invoice_id=f"INV-{PROGRAM}",
                periods=["2025-10", "2025-11", "2025-12"],
                monthly_amount_idr=16_800,
                amount_idr=50_400,
                components={"JKK": 10_000, "JKM": 6_800},
                **common,
            )
            for s in ("1", "2")
        ],
    )
    await handle_now(
        service,
        [
            PaymentReceived(
                invoice_id=f"INV-{PROGRAM}",
                amount_idr=100_800,
                paid_at=START + timedelta(days=1),
                reference="SP2D-1",
            )
        ],
    )
    await handle_now(
        service,
        [
            CoverageActivated(
                worker_id=ids[s],
                nik=nik(int(s)),
                coverage_start=date(2025, 10, 1),
                coverage_end=date(2025, 12, 31),
                invoice_id=f"INV-{PROGRAM}",
                **common,
            )
            for s in ("1", "2")
        ],
    )
    return ids


async def test_a_page_without_a_session_goes_to_the_login_and_comes_back(
    service: Service, keys: Keys
) -> None:
    async with client(service) as browser:
        first = await browser.get(f"/ui/programs/{PROGRAM}?masa=2")
        assert first.status_code == 303
        assert first.headers["location"] == f"/ui/login?next=/ui/programs/{PROGRAM}%3Fmasa%3D2"
        form = await browser.get(first.headers["location"])
        assert hidden(form.text, "next") == f"/ui/programs/{PROGRAM}?masa=2"
        await login(browser, keys.operator, f"/ui/programs/{PROGRAM}")
        cookie = next(c for c in browser.cookies.jar if c.name == "lindung_sesi")
        assert cookie.path == "/ui"
        assert cookie.has_nonstandard_attr("HttpOnly")
        page = await browser.get(f"/ui/programs/{PROGRAM}")
        assert page.status_code == 200
        assert "Sumba Barat Daya" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_the_login_refuses_an_unknown_key_and_a_foreign_next(
    service: Service, keys: Keys
) -> None:
    async with client(service) as browser:
        form = await browser.get("/ui/login", params={"next": "//evil.example/ui/"})
        assert hidden(form.text, "next") == "/ui/"
        wrong = await browser.post(
            "/ui/login",
            data={"api_key": "lnd_nope", "login_token": hidden(form.text, "login_token")},
        )
        assert wrong.status_code == 401
        assert "Kunci API tidak dikenal" in wrong.text
        # The login form's own token: a form posted from elsewhere carries none.
        browser.cookies.clear()
        forged = await browser.post("/ui/login", data={"api_key": keys.operator})
        assert forged.status_code == 401
        assert not any(c.name == "lindung_sesi" for c in browser.cookies.jar)


async def test_a_form_without_its_csrf_token_is_refused(service: Service, keys: Keys) -> None:
    async with client(service) as browser:
        csrf = await login(browser, keys.operator)
        refused = await browser.post("/ui/logout", data={})
        assert refused.status_code == 403
        assert "Formulir ini kedaluwarsa" in refused.text
        wrong = await browser.post("/ui/logout", data={"csrf_token": "x" + csrf})
        assert wrong.status_code == 403
        upload = await browser.post(
            f"/ui/programs/{PROGRAM}/imports",
            files={"file": ("peserta.csv", b"NIK\n", "text/csv")},
        )
        assert upload.status_code == 403
        renewal = await browser.post(
            f"/ui/programs/{PROGRAM}/renewals",
            data={"term_start": "2026-01-01", "term_end": "2026-03-31"},
        )
        assert renewal.status_code == 403
        still = await browser.get("/ui/")
        assert still.status_code == 200  # nothing of the above logged out


async def test_logout_ends_the_session_on_the_server(service: Service, keys: Keys) -> None:
    async with client(service) as browser:
        csrf = await login(browser, keys.operator)
        token = next(c.value for c in browser.cookies.jar if c.name == "lindung_sesi")
        out = await browser.post("/ui/logout", data={"csrf_token": csrf})
        assert out.status_code == 303
        assert out.headers["location"] == "/ui/login?keluar=1"
        assert await rows(service, WebSession) == []
        # The old cookie, replayed, opens nothing.
        browser.cookies.set("lindung_sesi", token, path="/ui")
        again = await browser.get("/ui/")
        assert again.status_code == 303
        assert again.headers["location"].startswith("/ui/login")


async def test_a_session_ends_when_idle_too_long_or_its_key_is_revoked(
    service: Service, keys: Keys, clock: MovableClock
) -> None:
    async with client(service) as browser:
        await login(browser, keys.operator)
        clock.at += timedelta(minutes=29)
        assert (await browser.get("/ui/")).status_code == 200
        clock.at += timedelta(minutes=29)  # used 29 minutes ago: still alive
        assert (await browser.get("/ui/")).status_code == 200
        clock.at += timedelta(minutes=31)
        ended = await browser.get(f"/ui/programs/{PROGRAM}")
        assert ended.status_code == 303
        assert ended.headers["location"] == f"/ui/login?next=/ui/programs/{PROGRAM}&berakhir=1"
        notice = await browser.get(ended.headers["location"])
        assert "Sesi Anda telah berakhir" in notice.text
        assert hidden(notice.text, "next") == f"/ui/programs/{PROGRAM}"

        await login(browser, keys.operator)
        clock.at += timedelta(hours=13)  # past the session's lifetime, however busy
        assert (await browser.get("/ui/")).status_code == 303

        await login(browser, keys.village)
        revoke_key(keys.path, "desa-kalena-wanno")
        assert (await browser.get("/ui/")).status_code == 303


async def test_the_programme_page_shows_the_funnel_invoice_and_rejections(
    service: Service, keys: Keys
) -> None:
    await enrol(service, keys)
    async with client(service) as browser:
        await login(browser, keys.operator)
        page = (await browser.get(f"/ui/programs/{PROGRAM}")).text
        template = await browser.get("/ui/imports/template.csv")
    assert template.status_code == 200 and template.text.startswith("NIK")
    counts = dict(re.findall(r'data-funnel="(\w+)">([\d.]+)<', page))
    assert counts == {
        "registered": "3",
        "confirmed": "2",
        "invoiced": "2",
        "paid": "2",
        "active": "2",
        "rejected": "1",
        "ended": "0",
    }
    assert f"INV-{PROGRAM}" in page
    assert "Rp 100.800" in page
    assert "Lunas" in page
    assert "age_above_maximum" in page and "Usia di atas batas" in page
    assert "Too old" not in page  # Indonesian only
    assert nik(3) in page  # an operator sees the full NIK of the refusal
    assert page.count('data-download="village-list"') == 2
    assert "Terbitkan perpanjangan" in page
    assert 'role="img"' in page  # the charts


async def test_a_village_key_sees_its_own_desa_on_every_page(service: Service, keys: Keys) -> None:
    ids = await enrol(service, keys)
    async with client(service) as browser:
        await login(browser, keys.village)
        programmes = (await browser.get("/ui/")).text
        page = (await browser.get(f"/ui/programs/{PROGRAM}")).text
        own = await browser.get(f"/ui/programs/{PROGRAM}/workers/{ids['1']}")
        other = await browser.get(f"/ui/programs/{PROGRAM}/workers/{ids['3']}")
        unknown = await browser.get(
            f"/ui/programs/{PROGRAM}/workers/{'0' * 8}-0000-0000-0000-{'0' * 12}"
        )
        by_nik_other = await browser.get("/ui/workers", params={"q": nik(3)})
        by_nik_unknown = await browser.get("/ui/workers", params={"q": nik(999)})
        by_nik_own = await browser.get("/ui/workers", params={"q": nik(1)})
        by_name = (await browser.get("/ui/workers", params={"q": "warga"})).text
        own_list = await browser.get(
            f"/ui/programs/{PROGRAM}/villages/workers.csv",
            params={"district": HOME_DISTRICT, "village": HOME_VILLAGE},
        )
        other_list = await browser.get(
            f"/ui/programs/{PROGRAM}/villages/workers.csv",
            params={"district": OTHER_DISTRICT, "village": OTHER_VILLAGE},
        )
        handover = await browser.get(f"/ui/programs/{PROGRAM}/terms/1/handover.csv")

    assert 'data-funnel="registered">2<' in programmes
    assert 'data-funnel="registered">2<' in page
    assert 'data-funnel="rejected">0<' in page
    assert OTHER_VILLAGE not in page and HOME_VILLAGE in page
    assert nik(3) not in page and "Perpanjangan program" not in page
    assert "Rp 100.800" in page  # its desa's part of the invoice (both workers are its own)

    assert own.status_code == 200
    assert nik(1) not in own.text and "5318********0001" in own.text
    for hidden_worker in (other, unknown, by_nik_other, by_nik_unknown):
        assert hidden_worker.status_code == 404
    assert main_text(other.text) == main_text(unknown.text) == main_text(by_nik_unknown.text)
    assert main_text(by_nik_other.text) == main_text(by_nik_unknown.text)
    assert by_nik_own.status_code == 303
    assert by_nik_own.headers["location"].endswith(ids["1"])
    assert "Warga 1" in by_name and "Warga 2" in by_name and "Warga 3" not in by_name

    assert own_list.status_code == 200
    lines = own_list.text.strip().splitlines()
    assert lines[0].startswith("NIK,NAMA_LENGKAP")
    assert len(lines) == 3 and all("5318********000" in line for line in lines[1:])
    assert other_list.status_code == 404
    assert handover.status_code == 403


async def test_an_operator_finds_a_worker_and_reads_their_terms(
    service: Service, keys: Keys
) -> None:
    ids = await enrol(service, keys)
    async with client(service) as browser:
        await login(browser, keys.operator)
        found = await browser.get("/ui/workers", params={"q": nik(1)})
        assert found.status_code == 303
        page = (await browser.get(found.headers["location"])).text
        csv = await browser.get(
            f"/ui/programs/{PROGRAM}/villages/workers.csv",
            params={"district": HOME_DISTRICT, "village": HOME_VILLAGE},
        )
    assert "Warga 1" in page and nik(1) in page
    assert 'id="timeline"' in page
    for step in ("Terdaftar", "Dinyatakan layak", "Ditagihkan", "Pembayaran diterima"):
        assert step in page
    assert "Layak → Ditagih → Aktif" in page
    assert re.search(r'class="mono trace">[0-9a-f]{32}<', page), "each step's trace id"
    assert ids["1"] in found.headers["location"]
    assert nik(1) in csv.text and "Aktif (masa 1)" in csv.text


async def test_bad_uploads_get_a_page_that_says_what_is_wrong(service: Service, keys: Keys) -> None:
    async with client(service) as browser:
        csrf = await login(browser, keys.operator)
        wrong_type = await browser.post(
            f"/ui/programs/{PROGRAM}/imports",
            data={"csrf_token": csrf},
            files={"file": ("peserta.pdf", b"%PDF-1.4", "application/pdf")},
        )
        assert wrong_type.status_code == 415
        assert "text/html" in wrong_type.headers["content-type"]
        assert "Berkas harus CSV atau XLSX" in wrong_type.text
        limit = service.settings.import_max_bytes  # type: ignore[attr-defined]
        too_large = await browser.post(
            f"/ui/programs/{PROGRAM}/imports",
            content=b"x" * 16,
            headers={
                "content-type": "multipart/form-data; boundary=b",
                "content-length": str(limit + 10**6),
            },
        )
        assert too_large.status_code == 413
        assert "text/html" in too_large.headers["content-type"]
        assert "Berkas terlalu besar" in too_large.text
        not_a_form = await browser.post(
            f"/ui/programs/{PROGRAM}/imports",
            content=b"NIK\n",
            headers={"content-type": "text/csv"},
        )
        assert not_a_form.status_code == 422
        assert "multipart/form-data" in not_a_form.text and "<main" in not_a_form.text
        too_long = await browser.get("/ui/workers", params={"q": "x" * 500})
        assert too_long.status_code == 422 and "Isian tidak valid" in too_long.text
        api_invalid = await browser.get(f"/programs/{PROGRAM}/summary?x=1")  # JSON stays JSON
        assert api_invalid.headers["content-type"].startswith("application/json")
        broken = (
            CSV_UPLOAD.splitlines()[0] + "\n"
            f"{nik(11)},Ana,01/01/1990,L,Petani,{HOME_VILLAGE},{HOME_DISTRICT},081234567890\n"
            f"123,Budi,31/02/1990,X,Petani,{HOME_VILLAGE},{HOME_DISTRICT},\n"
        )
        accepted = await browser.post(
            f"/ui/programs/{PROGRAM}/imports",
            data={"csrf_token": csrf},
            files={"file": ("peserta.csv", broken.encode(), "text/csv")},
        )
        assert accepted.status_code == 303
        report_url = accepted.headers["location"]
        # No background importer runs here: claim and process the import as one would.
        importer = Importer(service, service.settings)  # type: ignore[arg-type]
        job = await importer._next_job()
        assert job is not None and report_url.endswith(job.import_id)
        await importer.process(job)
        progress = (await browser.get(f"{report_url}/progress")).json()
        report = await browser.get(report_url)
    assert progress["status"] == "done"
    assert (progress["rows_total"], progress["rows_done"]) == (2, 2)
    assert (progress["registered"], progress["rejected"]) == (1, 1)
    assert report.status_code == 200
    assert 'data-status="done"' in report.text
    assert 'data-import="rejected">1<' in report.text
    assert "NIK harus 16 angka" in report.text or "16" in main_text(report.text)
    assert "/ English" not in report.text


async def test_the_renewal_form_publishes_or_says_why_not(service: Service, keys: Keys) -> None:
    async with client(service) as browser:
        csrf = await login(browser, keys.operator)
        overlapping = await browser.post(
            f"/ui/programs/{PROGRAM}/renewals",
            data={"csrf_token": csrf, "term_start": "2025-12-01", "term_end": "2026-02-28"},
        )
        assert overlapping.status_code == 422
        assert "bertumpang tindih" in overlapping.text
        assert 'value="2025-12-01"' in overlapping.text  # what was typed stays in the form
        backwards = await browser.post(
            f"/ui/programs/{PROGRAM}/renewals",
            data={"csrf_token": csrf, "term_start": "2026-03-31", "term_end": "2026-01-01"},
        )
        assert backwards.status_code == 422 and "Perpanjangan belum diterbitkan" in backwards.text
        not_a_number = await browser.post(
            f"/ui/programs/{PROGRAM}/renewals",
            data={
                "csrf_token": csrf,
                "term_start": "2026-01-01",
                "term_end": "2026-03-31",
                "quota": "enam ribu",
            },
        )
        assert not_a_number.status_code == 422 and "angka bulat" in not_a_number.text
        assert [m.topic for m in await outbox(service) if "renewed" in m.topic] == []

        accepted = await browser.post(
            f"/ui/programs/{PROGRAM}/renewals",
            data={
                "csrf_token": csrf,
                "term_start": "2026-01-01",
                "term_end": "2026-03-31",
                "quota": "6.000",
            },
        )
        assert accepted.status_code == 303
        shown = await browser.get(accepted.headers["location"])
        assert "Perpanjangan masa ke-2 diterbitkan" in shown.text
        [renewal] = await emitted(service, ProgramRenewed)
        assert (renewal.term_start, renewal.term_end, renewal.quota) == (
            date(2026, 1, 1),
            date(2026, 3, 31),
            6000,
        )

    async with client(service) as village:
        csrf = await login(village, keys.village)
        refused = await village.post(
            f"/ui/programs/{PROGRAM}/renewals",
            data={"csrf_token": csrf, "term_start": "2026-04-01", "term_end": "2026-06-30"},
        )
        assert refused.status_code == 403
        assert "Hanya operator" in refused.text
