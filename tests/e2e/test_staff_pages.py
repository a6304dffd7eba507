"""The staff pages (`/ui/`, registration's server-rendered pages in Bahasa Indonesia) in a real
browser, on the founding case: an operator logs in, uploads Sumba Barat Daya's spreadsheet through
the upload form and watches it import, sees the programme's 5.600 workers active once the sponsor
pays, and downloads one desa's list; that desa's village key then sees its own desa only, another
desa's worker exactly as a worker never registered, and NIKs masked. Forms without their CSRF
token are refused. Every page visited passes axe-core's WCAG 2.1 A/AA check (no serious or
critical violation), and the main pages are photographed at a phone's and a desk's width
(LINDUNG_SCREENSHOTS: where, for docs/screens).

Needs Chromium and axe-core (tests/e2e/browser_kit.py): skipped without them, unless
LINDUNG_BROWSER_REQUIRED=1 (CI), where their absence fails.
"""

from __future__ import annotations

import re
import time
import warnings
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from lindung_cli.demo import SIGNED_DAY_AFTER, wait_for, wait_for_api
from lindung_cli.founding_case import Expected, founding_program, generate_rows
from lindung_cli.funnel import Funnel, FunnelWatcher
from lindung_cli.intake import ImportClient
from lindung_contracts import DayStarted, PaymentReceived
from lindung_registration.auth import create_key
from lindung_registration.spreadsheet import write_template_csv
from lindung_runtime.kafka import EventClient
from tests.e2e.browser_kit import (
    DESK,
    PHONE,
    AxeAudit,
    Screens,
    column,
    digits,
    founding_stack,
    launch_chromium,
    new_page,
    place,
    read_table,
    require_browser,
)

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page, Response

pytestmark = pytest.mark.e2e

NOT_FOUND = "Peserta tidak ditemukan"
#: A well-formed NIK of the regency (born 1 Jan 1960) that the founding data never uses.
UNKNOWN_NIK = "5318010101609999"
FUNNEL = ("registered", "confirmed", "invoiced", "paid", "active", "rejected", "ended")


@pytest.mark.timeout(300)
async def test_staff_pages_in_a_browser(data_dir: Path, tmp_path: Path) -> None:
    require_browser()  # before anything starts: a skip costs nothing
    program = founding_program()
    pid = program.program_id
    rows, expected = generate_rows(program)
    csv_path = data_dir / "pekerja-rentan-sumba-barat-daya.csv"
    write_template_csv(csv_path, rows)
    assert UNKNOWN_NIK not in {row["nik"] for row in rows}
    # The village key's desa: the one with the most rows (names repeat across kecamatan: both).
    (district, village), _ = Counter(
        (row["district"], row["village"]) for row in rows if row["district"] and row["village"]
    ).most_common(1)[0]
    keys = data_dir / "api-keys.yaml"
    operator_key = create_key(keys, "staf-dinas", "operator")
    village_key = create_key(keys, "staf-desa", "village", village=village, district=district)
    audit = AxeAudit()
    screens = Screens.from_env(tmp_path / "screens")

    async with (
        founding_stack(data_dir) as stack,
        launch_chromium() as browser,
        EventClient(stack.bootstrap_servers) as client,
        FunnelWatcher(stack.bootstrap_servers) as watcher,
    ):
        base_url = stack.registration_url
        assert base_url is not None
        api = ImportClient(base_url, operator_key)
        await client.publish(program)
        await client.publish(DayStarted(date=SIGNED_DAY_AFTER))
        await wait_for_api(api)
        await api.wait_for_program(pid)
        page = await new_page(browser, base_url)

        # c. Not logged in: to the login page, which comes back here; a wrong key is refused.
        response = await page.goto("/ui/")
        assert response is not None and response.status != 404, (
            f"GET /ui/ answered {response and response.status}: the staff pages are not served"
        )
        assert urlsplit(page.url).path == "/ui/login", page.url
        assert parse_qs(urlsplit(page.url).query).get("next") == ["/ui/"], page.url
        assert await page.input_value('form[action="/ui/login"] input[type=hidden][name=next]') == (
            "/ui/"
        )
        await looked_at(page, "login", audit)
        await screens.shoot(page, "login", PHONE)
        refused = await log_in(page, "lnd_bukan-kunci-yang-benar")
        assert refused.status == 401, refused.status
        assert await page.locator("[role=alert]").count() >= 1
        await looked_at(page, "login, wrong key", audit)
        await log_in(page, operator_key)
        await page.wait_for_url(re.compile(r"/ui/$"))
        await looked_at(page, "programmes", audit)
        await expect_header(page)
        assert (await page.locator("h1").inner_text()).strip() == "Program"

        # d. The programme, its upload form, the import watched to the end without a reload.
        await page.locator(
            f'article[data-program="{pid}"] a[href="/ui/programs/{pid}"]'
        ).first.click()
        await page.wait_for_url(f"**/ui/programs/{pid}")
        assert (await page.locator("h1").inner_text()).strip() == program.name
        await looked_at(page, "programme", audit)
        form = page.locator("form#upload-form")
        assert (await form.get_attribute("enctype") or "").lower() == "multipart/form-data"
        await page.set_input_files("input#upload-file[name=file]", csv_path)
        await form.get_by_role("button", name="Unggah").click()
        await page.wait_for_url(re.compile(r"/ui/imports/[^/?#]+$"))
        report = await watch_import(page, timeout=90)
        print(f"import: intermediate progress seen: {report['intermediate']}")
        assert (report["value"], report["max"]) == (expected.requests, expected.requests)
        counts = {
            name: digits(await page.locator(f'[data-import="{name}"]').first.inner_text())
            for name in ("registered", "repeated", "rejected")
        }
        assert counts == {
            "registered": expected.registered,
            "repeated": expected.repeated,
            "rejected": expected.registration_rejected,
        }
        await looked_at(page, "import report", audit)
        errors = await download(page, page.locator('a[data-download="errors"]').first)
        assert len(errors) == expected.registration_rejected
        await page.reload()  # a reload shows the same, finished state
        assert await page.get_attribute("#import-status", "data-status") == "done"

        # e. The sponsor pays the invoice (over Kafka); the programme page shows 5.600 active.
        funnel = await wait_for(watcher, pid, invoiced(expected), "invoices", 120)
        for invoice_id, amount in funnel.invoices().items():
            await client.publish(
                PaymentReceived(
                    invoice_id=invoice_id,
                    amount_idr=amount,
                    paid_at=datetime(2025, 10, 30, 9, 0, tzinfo=UTC),
                    reference=f"SP2D-{invoice_id}",
                )
            )
        await page.goto(f"/ui/programs/{pid}")
        shown = await funnel_until(
            page,
            {
                "registered": expected.registered,
                "confirmed": expected.confirmed,
                "invoiced": expected.confirmed,
                "paid": expected.confirmed,
                "active": expected.confirmed,
                # requests refused for their data, and workers found ineligible
                "rejected": expected.registration_rejected + expected.eligibility_rejected,
                "ended": 0,
            },
            timeout=90,
        )
        assert shown["active"] == 5_600

        # f. One desa's list, as the operator downloads it: that desa's workers, all of them.
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {operator_key}"}, timeout=30
        ) as operator_api:
            summary = (await operator_api.get(f"/programs/{pid}/summary")).raise_for_status()
            by_village = {
                (place(v["district"]), place(v["village"])): v for v in summary.json()["by_village"]
            }
            own = by_village[(place(district), place(village))]
            own_worker = await a_worker(
                operator_api, pid, rows, lambda r: same(r, district, village)
            )
            other_worker = await a_worker(
                operator_api, pid, rows, lambda r: not same(r, district, village)
            )
        village_row = page.locator(
            f'table#villages tr[data-district="{district}"][data-village="{village}"]'
        )
        listed = await download(page, village_row.locator('a[data-download="village-list"]').first)
        assert len(listed) == own["registered"] > 0, (len(listed), own)
        desa_column = column(listed, "desa", "village")
        kecamatan_column = column(listed, "kecamatan", "district")
        assert {(place(r[kecamatan_column]), place(r[desa_column])) for r in listed} == {
            (place(district), place(village))
        }
        await screens.shoot(page, "programme", PHONE, DESK)

        # The operator's search: a NIK of one worker leads to that worker's page, NIK in full.
        own_page = f"/ui/programs/{pid}/workers/{own_worker['worker_id']}"
        response = await page.goto(f"/ui/workers?q={own_worker['nik']}")
        assert response is not None and response.request.redirected_from is not None
        assert urlsplit(page.url).path == own_page, page.url
        assert (await page.locator("h1").inner_text()).strip() == own_worker["full_name"]
        assert digits(await page.locator("[data-nik]").first.inner_text()) == int(own_worker["nik"])
        assert await page.locator("table#timeline").count() == 1
        await looked_at(page, "worker", audit)
        await screens.shoot(page, "worker", PHONE, DESK)
        await page.goto("/ui/")
        await screens.shoot(page, "programmes", PHONE, DESK)

        # g. The village key: its own desa only; elsewhere is the same as nowhere.
        await log_out(page)
        await looked_at(page, "login, logged out", audit)
        await log_in(page, village_key)
        await page.wait_for_url(re.compile(r"/ui/$"))
        await looked_at(page, "programmes, village key", audit)
        other_page = f"/ui/programs/{pid}/workers/{other_worker['worker_id']}"
        answers = {}
        for label, path in [
            ("another desa's worker", other_page),
            ("another desa's NIK searched", f"/ui/workers?q={other_worker['nik']}"),
            ("an unknown NIK searched", f"/ui/workers?q={UNKNOWN_NIK}"),
        ]:
            response = await page.goto(path)
            assert response is not None and response.status == 404, (label, response)
            assert (await page.locator("h1").inner_text()).strip() == NOT_FOUND, label
            answers[label] = (await page.locator("main").inner_text()).strip()
            assert other_worker["full_name"] not in await page.content(), label
            await looked_at(page, f"not found: {label}", audit)
        assert len(set(answers.values())) == 1, answers

        await page.goto(f"/ui/programs/{pid}")
        places = await page.eval_on_selector_all(
            "table#villages tr[data-village]",
            "rows => rows.map(r => [r.dataset.district, r.dataset.village])",
        )
        assert places and {(place(d), place(v)) for d, v in places} == {
            (place(district), place(village))
        }, places
        assert digits(await funnel_text(page, "registered")) == own["registered"]
        await looked_at(page, "programme, village key", audit)
        response = await page.goto(own_page)
        assert response is not None and response.status == 200
        assert (await page.locator("h1").inner_text()).strip() == own_worker["full_name"]
        masked = (await page.locator("[data-nik]").first.inner_text()).strip()
        assert masked and len(re.sub(r"\D", "", masked)) < 16, masked
        assert own_worker["nik"] not in await page.content(), "the full NIK is in the page"
        await looked_at(page, "worker, village key", audit)

        # h. A form posted without its CSRF token is refused, and changes nothing.
        tokenless = await page.request.post(f"{base_url}/ui/logout", max_redirects=0)
        assert tokenless.status == 403, tokenless.status
        await page.goto("/ui/")
        assert urlsplit(page.url).path == "/ui/", "the refused logout logged out"
        await log_out(page)
        await page.goto("/ui/")
        assert urlsplit(page.url).path == "/ui/login", "still logged in after logging out"
        await page.context.close()

    # i. and j.
    print(f"screenshots in {screens.directory}: {screens.taken}")
    print("axe-core checked:", *audit.checked, sep="\n  ")
    audit.assert_clean()
    if screens.oversized():  # for docs/screens: a hint, not a failure of the pages
        warnings.warn(f"screenshots over 200 KB: {screens.oversized()}", stacklevel=1)


# --- steps --------------------------------------------------------------------------------------


async def looked_at(page: Page, label: str, audit: AxeAudit) -> None:
    """Every page: axe-core's check, and a CSRF token in each form that posts (but logging in)."""
    await page.wait_for_load_state()
    await audit.check(page, label)
    forms = await page.eval_on_selector_all(
        "form",
        """forms => forms
            .filter(f => (f.getAttribute('method') || 'get').toLowerCase() === 'post')
            .filter(f => f.getAttribute('action') !== '/ui/login')
            .map(f => {
                const token = f.querySelector('input[type=hidden][name=csrf_token]');
                return [f.getAttribute('action'), !!(token && token.value)];
            })""",
    )
    assert all(has_token for _, has_token in forms), f"{label}: a form without csrf_token: {forms}"


async def expect_header(page: Page) -> None:
    assert await page.locator('a[href="/ui/"]', has_text="Program").count() >= 1
    assert await page.locator('a[href="/ui/workers"]', has_text="Cari peserta").count() >= 1
    logout = page.locator('form[action="/ui/logout"]')
    assert await logout.get_by_role("button", name="Keluar").count() == 1
    assert await logout.locator("input[type=hidden][name=csrf_token]").count() == 1


async def log_in(page: Page, key: str) -> Response:
    """Type the key into "Kunci API" and press "Masuk": the page it leads to, loaded (its
    response: the login page again, or the page after the login's redirect)."""
    form = page.locator('form[action="/ui/login"]')
    await form.get_by_label("Kunci API").fill(key)
    async with page.expect_navigation() as navigation:
        await form.get_by_role("button", name="Masuk").click()
    response = await navigation.value
    assert response is not None
    return response


async def log_out(page: Page) -> None:
    await page.locator('form[action="/ui/logout"]').get_by_role("button", name="Keluar").click()
    await page.wait_for_url(re.compile(r"/ui/login(\?.*)?$"))


#: The import page's state, and whether this document was looked at before (a reload is new).
IMPORT_STATE = """() => {
    const seen = window.__lindungWatched === true;
    window.__lindungWatched = true;
    if (document.readyState === 'loading') return null;
    const bar = document.querySelector('progress#import-progress');
    const status = document.querySelector('#import-status');
    return {seen, value: bar && bar.value, max: bar && bar.max,
            status: status && status.dataset.status};
}"""


async def watch_import(page: Page, timeout: float) -> dict[str, Any]:
    """Poll the import page, never reloading it (its script updates it), until it shows the
    import done, noting whether a part-way state was ever seen. The page's script may reload the
    page once done (for the report of rejected rows): then its done state is awaited in the new
    document, so that the steps after this one read a page that stays."""
    from playwright.async_api import Error as PlaywrightError

    deadline = time.monotonic() + timeout
    intermediate = False
    reload_due = False  # the script was still polling: it may reload when done
    done_since: float | None = None
    state: dict[str, Any] | None = None
    while True:
        assert time.monotonic() < deadline, f"import not done after {timeout} s: {state}"
        try:
            state = await page.evaluate(IMPORT_STATE)
        except PlaywrightError as error:  # the script reloaded the page under our feet
            if "context was destroyed" not in str(error) and "navigat" not in str(error):
                raise
            await page.wait_for_load_state()
            continue
        if state is None:
            await page.wait_for_timeout(100)
            continue
        running = state["status"] in ("queued", "running")
        if not state["seen"]:
            reload_due, done_since = running, None  # a new document
        reload_due = reload_due or running
        intermediate = intermediate or running or 0 < (state["value"] or 0) < state["max"]
        if state["status"] == "failed":
            await page.wait_for_timeout(1000)
            raise AssertionError(f"import failed: {await page.locator('main').inner_text()}")
        if state["status"] == "done" and state["value"] == state["max"]:
            done_since = done_since or time.monotonic()
            if not reload_due or time.monotonic() - done_since > 3:
                return {**state, "intermediate": intermediate}
        await page.wait_for_timeout(200)


async def funnel_text(page: Page, name: str) -> str:
    return await page.locator(f'[data-funnel="{name}"]').first.inner_text()


async def funnel_until(page: Page, wanted: dict[str, int], timeout: float) -> dict[str, int]:
    """Reload the programme page until its funnel shows `wanted` (the projection follows the
    events a little behind)."""
    deadline = time.monotonic() + timeout
    while True:
        shown = {name: digits(await funnel_text(page, name)) for name in FUNNEL}
        if all(shown[name] == value for name, value in wanted.items()):
            return shown
        assert time.monotonic() < deadline, f"funnel after {timeout} s: {shown}, not {wanted}"
        await page.wait_for_timeout(1000)
        await page.reload()


async def download(page: Page, link: Locator) -> list[dict[str, str]]:
    """Click a download link; the file it saves, as rows."""
    async with page.expect_download() as started:
        await link.click()
    file = await started.value
    failure = await file.failure()
    assert failure is None, f"{file.url}: {failure}"
    return read_table(await file.path(), file.suggested_filename)


def invoiced(expected: Expected) -> Any:
    def done(f: Funnel) -> bool:
        decided = len(f.confirmed) + len(f.eligibility_rejected)
        return (
            len(f.registered) == expected.registered
            and decided == len(f.registered)
            and len(f.invoice_lines) == len(f.confirmed) == expected.confirmed
        )

    return done


def same(row: dict[str, str], district: str, village: str) -> bool:
    return (place(row["district"]), place(row["village"])) == (place(district), place(village))


async def a_worker(
    api: httpx.AsyncClient, program_id: str, rows: list[dict[str, str]], wanted: Any
) -> dict[str, str]:
    """A registered worker of the programme among `rows` that `wanted` picks, as the operator's
    JSON API finds them by NIK: the row and its worker_id."""
    for row in rows:
        if not (wanted(row) and re.fullmatch(r"5318\d{12}", row["nik"])):
            continue
        answer = await api.get(f"/workers/{row['nik']}")
        if answer.status_code != 200:
            continue  # a row the import rejected
        for worker in answer.json()["workers"]:
            if worker["program_id"] == program_id:
                return {**row, "worker_id": worker["worker_id"]}
    raise AssertionError("no registered worker found")
