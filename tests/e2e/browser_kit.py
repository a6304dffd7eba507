"""A real browser for the end-to-end tests of the staff pages: the system's Chromium (Debian's
package, driven by Playwright: Playwright's own browser builds are never downloaded), axe-core
(npm, tests/e2e/browser/) injected into each page for its accessibility check, screenshots at a
phone's and a desk's width, and the founding case's stack to point it at.

Without Chromium or axe-core the browser tests skip, saying what to install, so that `make test`
passes on a machine with only Python; with LINDUNG_BROWSER_REQUIRED=1 (CI, .ci/run) they fail
instead: there the browser must really run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lindung_cli.stack import Stack, StackSettings

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, ViewportSize

ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = ROOT / "tests" / "e2e" / "browser"
AXE_JS = BROWSER_DIR / "node_modules" / "axe-core" / "axe.min.js"
#: Debian's `chromium` package; another build (e.g. a developer's Chrome) through LINDUNG_CHROMIUM.
CHROMIUM = Path(os.environ.get("LINDUNG_CHROMIUM") or "/usr/bin/chromium")
REQUIRED_ENV = "LINDUNG_BROWSER_REQUIRED"
INSTALL_HINT = (
    "apt-get install -y chromium chromium-driver; npm ci --prefix tests/e2e/browser "
    "(.ci/run does both)"
)
#: Without the background-networking flags Chromium dials Google's services at start, which a
#: closed network refuses (and a test must not depend on anyway).
CHROMIUM_ARGS = [
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers' /dev/shm is small
]
#: WCAG 2.0 and 2.1, levels A and AA.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING_IMPACTS = ("serious", "critical")
DESK: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 360, "height": 800}
SCREEN_BUDGET_BYTES = 200 * 1024


# --- what is there ------------------------------------------------------------------------------


def browser_required() -> bool:
    return os.environ.get(REQUIRED_ENV, "").strip() not in ("", "0", "false", "no")


def missing_browser_parts() -> list[str]:
    """What the browser tests need and this machine lacks, each said with where it comes from."""
    missing = []
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (the root's `dev` group: `make bootstrap`)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    if not AXE_JS.is_file():
        where = BROWSER_DIR.relative_to(ROOT)
        missing.append(f"axe-core at {AXE_JS.relative_to(ROOT)} (npm ci --prefix {where})")
    return missing


def require_browser() -> None:
    """Skip the calling test when the browser or axe-core is missing; fail when CI requires them."""
    missing = missing_browser_parts()
    if not missing:
        return
    reason = "no browser test without " + "; ".join(missing) + f" — install: {INSTALL_HINT}"
    if browser_required():
        pytest.fail(f"{REQUIRED_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


# --- the browser --------------------------------------------------------------------------------


@asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    """The system's Chromium, headless, with no network of its own beyond what the page asks."""
    from playwright.async_api import async_playwright

    args = list(CHROMIUM_ARGS)
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=args
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser, base_url: str) -> Page:
    """A fresh context (no cookies), desk-sized, Indonesian, relative URLs against `base_url`."""
    context = await browser.new_context(
        base_url=base_url,
        viewport=DESK,
        locale="id-ID",
        timezone_id="Asia/Makassar",  # WITA: Sumba
        accept_downloads=True,
    )
    context.set_default_timeout(15_000)
    return await context.new_page()


# --- accessibility ------------------------------------------------------------------------------


@dataclass
class AxeAudit:
    """axe-core run on each page visited; serious and critical violations fail the test at the
    end (all pages' at once, so one run shows every page's problems)."""

    found: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)

    async def check(self, page: Page, label: str) -> list[dict[str, Any]]:
        await inject_axe(page)
        result = await page.evaluate(
            "tags => axe.run(document, {runOnly: tags, resultTypes: ['violations']})", AXE_TAGS
        )
        blocking = [v for v in result["violations"] if v.get("impact") in BLOCKING_IMPACTS]
        where = f"{label} ({page.url})"
        self.checked.append(where)
        if blocking:
            self.found[where] = blocking
            print(format_violations(where, blocking))  # shown with the failure, whatever it is
        return blocking

    def assert_clean(self) -> None:
        assert not self.found, "axe-core (WCAG 2.1 A/AA), serious or critical:\n" + "\n".join(
            format_violations(where, violations) for where, violations in self.found.items()
        )


async def inject_axe(page: Page) -> None:
    if await page.evaluate("typeof window.axe === 'object'"):
        return
    try:
        await page.add_script_tag(path=AXE_JS)
    except Exception:
        # A Content-Security-Policy without 'unsafe-inline' refuses the <script> Playwright adds;
        # DevTools' own evaluation is not subject to it, so the page keeps its policy under test.
        await page.evaluate(AXE_JS.read_text(encoding="utf-8") + "\n;undefined")
    assert await page.evaluate("typeof window.axe === 'object'"), "axe-core did not load"


def format_violations(where: str, violations: list[dict[str, Any]]) -> str:
    lines = [f"{where}:"]
    for violation in violations:
        targets = [node.get("target") for node in violation.get("nodes", [])[:3]]
        lines.append(
            f"  [{violation.get('impact')}] {violation['id']}: {violation.get('help')} "
            f"— {len(violation.get('nodes', []))} node(s), e.g. {json.dumps(targets)}"
        )
    return "\n".join(lines)


# --- screenshots --------------------------------------------------------------------------------


@dataclass
class Screens:
    """PNGs named for docs/screens (`programme-360.png`), into LINDUNG_SCREENSHOTS when set."""

    directory: Path
    taken: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_env(cls, fallback: Path) -> Screens:
        directory = Path(os.environ.get("LINDUNG_SCREENSHOTS") or fallback)
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory)

    async def shoot(self, page: Page, name: str, *sizes: ViewportSize) -> None:
        """The viewport (not the full page) at each size; the page's own size restored after."""
        before = page.viewport_size or DESK
        for size in sizes or (DESK,):
            await page.set_viewport_size(size)
            await page.evaluate("window.scrollTo(0, 0)")  # the page's head, as a reader sees it
            path = self.directory / f"{name}-{size['width']}.png"
            await page.screenshot(path=path, full_page=False, animations="disabled")
            self.taken[path.name] = path.stat().st_size
        await page.set_viewport_size(before)

    def oversized(self) -> dict[str, int]:
        return {n: size for n, size in self.taken.items() if size > SCREEN_BUDGET_BYTES}


# --- reading pages and files --------------------------------------------------------------------


def digits(text: str | None) -> int:
    """A count as the page writes it ("5.600", "5 600"): its digits."""
    found = re.sub(r"\D", "", text or "")
    assert found, f"no number in {text!r}"
    return int(found)


def place(name: str | None) -> str:
    """Desa/kecamatan names compared as the API compares them (auth.place)."""
    return " ".join((name or "").split()).casefold()


def read_table(path: Path, suggested_name: str) -> list[dict[str, str]]:
    """A downloaded list (CSV, or XLSX by its name) as rows of header → text."""
    if suggested_name.lower().endswith(".xlsx"):
        from openpyxl import load_workbook

        sheet = load_workbook(path, read_only=True).worksheets[0]
        values = [
            ["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)
        ]
        header, body = values[0], values[1:]
        return [dict(zip(header, row, strict=False)) for row in body if any(row)]
    text = path.read_text(encoding="utf-8-sig")
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)  # Excel in Indonesian locales writes ";"
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))


def column(rows: list[dict[str, str]], *words: str) -> str:
    """The header that names one of `words` (e.g. "Desa/Kelurahan" for "desa")."""
    headers = list(rows[0]) if rows else []
    for header in headers:
        if any(word in (header or "").casefold() for word in words):
            return header
    raise AssertionError(f"no column for {words} among {headers}")


# --- the stack ----------------------------------------------------------------------------------


@asynccontextmanager
async def founding_stack(data_dir: Path) -> AsyncIterator[Stack]:
    """`lindung up` as the demo runs it (its supervisor in this process): the embedded broker and
    SMTP sink (never a Kafka or mail server named in the environment), the four services, the
    registration API and its staff pages on a free port."""
    stack = Stack(
        StackSettings(
            LINDUNG_DATA_DIR=str(data_dir),
            kafka_bootstrap_servers=None,
            smtp_host=None,
            registration_http_port=0,
        )
    )
    try:
        await stack.start()
        await stack.wait_ready()
        yield stack
    finally:
        await stack.stop()
