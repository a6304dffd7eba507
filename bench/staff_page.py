"""The staff programme page at N workers: `GET /ui/programs/{id}` (the HTML page) against the JSON
the API already serves for the same funnel counts (`GET /programs/{id}/summary`), in one run.

    .venv/bin/python bench/staff_page.py --n 100000        # about 2 min here
    .venv/bin/python bench/staff_page.py --n 10000 --pairs 5 --json /tmp/staff_page.json

A child process first builds registration's SQLite database with bulk inserts, as the pipeline
would have left it for one programme of N workers over 30 kecamatan x 15 desa (registrations
over the 45 days to the deadline, ~3% found ineligible, ~1% of requests refused for their data,
the others confirmed, invoiced on the term's one invoice, paid and active in term 1; a timeline
of ~4N entries). Then this process (whose memory the build does not inflate) starts the
registration app in-process (no broker), logs in through `/ui/login` like a browser and times,
after a warm-up, A B A B ...: A the page, B the JSON summary with the same key as a bearer token
(perf_counter around each httpx call through ASGITransport). The same for a village key (its
own desa only). Reported: the median of each, their ratio, tracemalloc's peak and the RSS of
one request, where the page's time goes (each step's wall time and the SQL in it; cProfile's
top functions in the event loop's thread). Appends the run to bench/staff_page.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Table, create_engine, event, insert, text

from lindung_registration import api
from lindung_registration.app import create_service
from lindung_registration.auth import create_key
from lindung_registration.db import TABLES
from lindung_registration.domain import worker_id_for
from lindung_registration.settings import RegistrationSettings
from lindung_registration.web import charts, pages, views
from lindung_runtime.clock import FixedClock
from lindung_runtime.logging import configure_logging

PROGRAM = "sbd-pekerja-rentan-2025q4"
INVOICE = f"INV-{PROGRAM}"
TERM = (date(2025, 10, 1), date(2025, 12, 31))
OPEN, DEADLINE = datetime(2025, 10, 1, tzinfo=UTC), date(2025, 11, 14)
PAID_AT = datetime(2025, 10, 28, 10, 0, tzinfo=UTC)  # the PKS's day: the term paid ahead
TODAY = datetime(2025, 11, 20, 9, 0, tzinfo=UTC)
MONTHLY = {"JKK": 10_000, "JKM": 6_800}  # 1% of Rp 1,000,000, and JKM's flat amount
PERIODS = ["2025-10", "2025-11", "2025-12"]
KECAMATAN = [  # Sumba Barat Daya's eleven, then made-up ones up to 30
    "Loura",
    "Wewewa Utara",
    "Wewewa Timur",
    "Wewewa Barat",
    "Wewewa Selatan",
    "Kodi Bangedo",
    "Kodi",
    "Kodi Utara",
    "Kota Tambolaka",
    "Wewewa Tengah",
    "Kodi Balaghar",
    *(f"Kecamatan {i:02d}" for i in range(12, 31)),
]
DESA_PER_KECAMATAN = 15
NAMES = ["Yohanes", "Petrus", "Maria", "Yuliana", "Umbu", "Rambu", "Markus", "Kristina"]
FAMILY = ["Bili", "Lede", "Malo", "Dappa", "Kaka", "Ngongo", "Tanggu", "Bulu", "Wora", "Lero"]
OCCUPATIONS = ["Petani", "Nelayan", "Peternak", "Pedagang", "Pengemudi ojek", "Perajin tenun"]
INELIGIBLE = [  # (code, message), as eligibility words them
    (
        "age_above_maximum",
        "Usia 63 tahun di atas batas maksimum 60 / Age 63 is above the maximum 60",
    ),
    (
        "age_below_minimum",
        "Usia 16 tahun di bawah batas minimum 18 / Age 16 is below the minimum 18",
    ),
    (
        "region_mismatch",
        "NIK terdaftar di wilayah 5311, bukan wilayah program (5318) / NIK region 5311 is "
        "outside the programme's region",
    ),
    (
        "birth_date_mismatch",
        "Tanggal lahir tidak sesuai dengan NIK / Birth date does not match the NIK",
    ),
]
REFUSED = [  # (field, code, message), as registration words them
    ("nik", "nik_invalid_length", "NIK harus 16 digit / NIK must be 16 digits"),
    ("full_name", "name_required", "Nama lengkap wajib diisi / Full name is required"),
    ("birth_date", "birth_date_invalid", "Tanggal lahir tidak valid / Birth date is not valid"),
]


# --- the database -------------------------------------------------------------------------------


def places() -> list[tuple[str, str]]:
    """(kecamatan, desa) of the programme, named like the founding case's."""
    return [
        (district, f"Desa {district} {j:02d}")
        for district in KECAMATAN
        for j in range(1, DESA_PER_KECAMATAN + 1)
    ]


def table(model: Any) -> Table:
    found: Table = model.__table__
    return found


def build(path: Path, n: int, seed: int = 20251001) -> dict[str, int]:
    """Registration's database for one programme of `n` workers, with bulk inserts."""
    rng = random.Random(seed)
    ids = random.Random(seed + 1)

    def event_id() -> str:
        return str(uuid.UUID(int=ids.getrandbits(128), version=4))

    def trace() -> str:
        return f"{ids.getrandbits(128):032x}"

    def at_registration() -> datetime:
        day = rng.randrange((DEADLINE - OPEN.date()).days + 1)
        return OPEN + timedelta(days=day, seconds=rng.randrange(7 * 3600, 17 * 3600))

    where = places()
    monthly = sum(MONTHLY.values())
    amount = monthly * len(PERIODS)
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    timeline: list[dict[str, Any]] = []

    def entry(kind: str, at: datetime, nik: str, details: dict[str, Any], **more: Any) -> None:
        timeline.append(
            {
                "event_id": event_id(),
                "kind": kind,
                "nik": nik,
                "program_id": PROGRAM,
                "worker_id": more.get("worker_id"),
                "invoice_id": more.get("invoice_id"),
                "occurred_at": at,
                "trace_id": trace(),
                "details": json.dumps(details, default=str, ensure_ascii=False),
            }
        )

    niks: set[str] = set()
    ineligible = invoiced = 0
    for i in range(n):
        district, village = rng.choice(where)
        gender = rng.choice("MF")
        born = date(1966, 1, 1) + timedelta(days=rng.randrange(14_000))
        day = born.day + (40 if gender == "F" else 0)
        code = KECAMATAN.index(district) + 1
        serial = i % 10_000
        nik = f"5318{code:02d}{day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"
        while nik in niks:
            serial = (serial + 1) % 10_000
            nik = nik[:12] + f"{serial:04d}"
        niks.add(nik)
        worker_id = worker_id_for(PROGRAM, nik)
        registered_at = at_registration()
        name = f"{rng.choice(NAMES)} {rng.choice(FAMILY)}"
        rows["worker"].append(
            {
                "worker_id": worker_id,
                "program_id": PROGRAM,
                "nik": nik,
                "full_name": name,
                "birth_date": born,
                "gender": gender,
                "occupation": rng.choice(OCCUPATIONS),
                "village": village,
                "district": district,
                "phone": f"0812{rng.randint(10_000_000, 99_999_999)}" if i % 3 == 0 else None,
                "registered_at": registered_at,
            }
        )
        place = {"village": village, "district": district}
        mine = {"worker_id": worker_id}
        entry("registered", registered_at, nik, {"full_name": name, **place}, **mine)
        decided_at = registered_at + timedelta(seconds=rng.uniform(1, 30))
        status = {
            "worker_id": worker_id,
            "program_id": PROGRAM,
            "nik": nik,
            **place,
            "registered": True,
            "eligibility": "confirmed",
            "ineligible_reasons": "",
            "invoice_id": None,
            "invoiced_idr": 0,
            "activated": False,
            "expiry_alerts": 0,
            "coverage_rank": 0,
        }
        if rng.random() < 0.03:
            reason = rng.choice(INELIGIBLE)
            ineligible += 1
            status |= {"eligibility": "rejected", "ineligible_reasons": reason[0]}
            details = {
                "reasons": [{"code": reason[0], "message": reason[1]}],
                "term": 1,
                "carried": False,
            }
            entry("eligibility_rejected", decided_at, nik, details, **mine)
            rows["worker_status"].append(status)
            continue
        cover = {"coverage_start": TERM[0], "coverage_end": TERM[1], "term": 1}
        entry("eligibility_confirmed", decided_at, nik, {**cover, "carried": False}, **mine)
        rows["worker_term"].append({"worker_id": worker_id, "program_id": PROGRAM, **cover})
        invoiced_at = decided_at + timedelta(seconds=rng.uniform(1, 60))
        line = {
            "invoice_id": INVOICE,
            "periods": PERIODS,
            "monthly_amount_idr": monthly,
            "amount_idr": amount,
            "components": MONTHLY,
            "term": 1,
        }
        entry("invoiced", invoiced_at, nik, line, invoice_id=INVOICE, **mine)
        rows["term_line"].append(
            {
                "worker_id": worker_id,
                "term": 1,
                "program_id": PROGRAM,
                "invoice_id": INVOICE,
                "first_month": TERM[0],
                "months": len(PERIODS),
                "monthly_amount_idr": monthly,
                "amount_idr": amount,
            }
        )
        invoiced += 1
        # Invoiced before the payment: active when it came; after: at once (paid ahead).
        activated_at = max(invoiced_at, PAID_AT) + timedelta(seconds=rng.uniform(1, 120))
        details = {**cover, "invoice_id": INVOICE}
        entry("coverage_activated", activated_at, nik, details, invoice_id=INVOICE, **mine)
        status |= {
            "invoice_id": INVOICE,
            "invoiced_idr": amount,
            "activated": True,
            "coverage_rank": 12,  # term 1, active (domain.STAGES)
        }
        rows["worker_status"].append(status)

    refused = max(1, n // 100)
    for _ in range(refused):
        district, village = rng.choice(where)
        field, error, message = rng.choice(REFUSED)
        refused_id = event_id()
        at = at_registration()
        rows["rejected_request"].append(
            {
                "event_id": refused_id,
                "program_id": PROGRAM,
                "village": village,
                "district": district,
            }
        )
        entry(
            "registration_rejected",
            at,
            f"5318{rng.randrange(10**11):011d}",
            {"errors": [{"field": field, "code": error, "message": message}]},
        )
        timeline[-1]["event_id"] = refused_id
    rows["payment_record"].append(
        {
            "event_id": event_id(),
            "invoice_id": INVOICE,
            "amount_idr": n * amount,  # the quota's whole term, ahead
            "paid_at": PAID_AT,
            "announced_at": PAID_AT + timedelta(minutes=5),
            "reference": "SP2D/0421/BPKAD-SBD/2025",
            "trace_id": trace(),
        }
    )
    published = OPEN - timedelta(days=3)
    rows["known_program"].append(
        {
            "program_id": PROGRAM,
            "name": "Perlindungan Pekerja Rentan Kab. Sumba Barat Daya 2025",
            "sponsor": "Pemerintah Kabupaten Sumba Barat Daya (APBD)",
            "coverage_start": TERM[0],
            "coverage_end": TERM[1],
            "published_at": published,
        }
    )
    rows["known_term"].append(
        {
            "program_id": PROGRAM,
            "term": 1,
            "term_start": TERM[0],
            "term_end": TERM[1],
            "quota": n,
            "renewed_at": published,
        }
    )
    timeline.sort(key=lambda e: e["occurred_at"])  # as the projections append them
    rows["timeline_entry"] = timeline

    engine = create_engine(f"sqlite:///{path}")
    by_name = {table(t).name: table(t) for t in TABLES}
    with engine.begin() as connection:
        connection.execute(text("PRAGMA journal_mode=WAL"))  # as the service opens it
        for metadata in {t.metadata for t in TABLES}:
            metadata.create_all(
                connection, tables=[table(t) for t in TABLES if t.metadata is metadata]
            )
    with engine.begin() as connection:
        connection.execute(text("PRAGMA synchronous=OFF"))
        for name, found in rows.items():
            for start in range(0, len(found), 10_000):
                connection.execute(insert(by_name[name]), found[start : start + 10_000])
    with engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    engine.dispose()
    counts = {name: len(found) for name, found in rows.items()}
    return counts | {"ineligible": ineligible, "invoiced": invoiced, "refused_requests": refused}


# --- measuring ----------------------------------------------------------------------------------


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), MB."""
    found = re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(found.group(1)) / 1024 if found else float("nan")


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden {name} on the page"
    return found.group(1)


async def login(browser: httpx.AsyncClient, key: str, next_page: str) -> None:
    """Through the form, as tests/unit/test_web_pages.py does; the landing page is not fetched
    (the first page request is the measured one)."""
    form = await browser.get("/ui/login", params={"next": next_page})
    assert form.status_code == 200, form.text
    answer = await browser.post(
        "/ui/login",
        data={
            "api_key": key,
            "next": hidden(form.text, "next"),
            "login_token": hidden(form.text, "login_token"),
        },
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == next_page


Request = Callable[[], Awaitable[httpx.Response]]


async def timed(request: Request) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = await request()
    return time.perf_counter() - started, response


async def alternate(page: Request, summary: Request, pairs: int) -> dict[str, Any]:
    """A B A B ...: `pairs` of each after one warm-up pair; seconds of each, and the medians."""
    for request in (page, summary):
        _, response = await timed(request)
        assert response.status_code == 200, response.text[:500]
    a: list[float] = []
    b: list[float] = []
    for _ in range(pairs):
        for request, into in ((page, a), (summary, b)):
            seconds, response = await timed(request)
            assert response.status_code == 200, response.text[:500]
            into.append(seconds)
    med_a, med_b = statistics.median(a), statistics.median(b)
    return {
        "page_ms": [round(s * 1000, 1) for s in a],
        "summary_ms": [round(s * 1000, 1) for s in b],
        "page_median_ms": round(med_a * 1000, 1),
        "summary_median_ms": round(med_b * 1000, 1),
        "ratio": round(med_a / med_b, 2),
        "ratio_of_pairs_median": round(
            statistics.median(x / y for x, y in zip(a, b, strict=True)), 2
        ),
    }


async def traced_peak_mb(request: Request) -> float:
    """Python's allocations during one request, at their peak, above what was live before."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        response = await request()
        assert response.status_code == 200
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return round((peak - before) / 1e6, 1)


class Steps:
    """Wall time of each step the page (and the summary route) takes, and the SQL inside each
    (execute + fetch: the aiosqlite adapter fetches every row in `execute`), by wrapping the
    names the routes look up at call time. Installed only after the timed pairs."""

    def __init__(self, engine: Any) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.sql: dict[str, float] = defaultdict(float)
        self.statements: list[tuple[float, str, str]] = []
        self.current = "other"
        self.undo: list[Callable[[], None]] = []
        self.engine = engine

    def wrap(self, owner: Any, name: str, label: str | None = None) -> None:
        original = getattr(owner, name)
        label = label or name
        steps = self

        if asyncio.iscoroutinefunction(original):

            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                outer, steps.current = steps.current, label
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    steps.wall[label] += time.perf_counter() - started
                    steps.current = outer

            setattr(owner, name, async_wrapper)
        else:

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                outer, steps.current = steps.current, label
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    steps.wall[label] += time.perf_counter() - started
                    steps.current = outer

            setattr(owner, name, wrapper)
        self.undo.append(lambda: setattr(owner, name, original))

    def before(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def after(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seconds = time.perf_counter() - conn.info.pop("bench_started")
        self.sql[self.current] += seconds
        self.statements.append((seconds, self.current, " ".join(statement.split())))

    @contextmanager
    def installed(self) -> Iterator[Steps]:
        for name in ("terms_of", "cost_per_month", "registrations_per_day"):
            self.wrap(views, name)
        for name in ("activations_per_day", "invoices_of", "latest_rejections", "imports_of"):
            self.wrap(views, name)
        for name in ("month_series", "bar_chart", "grouped_bar_chart"):
            self.wrap(charts, name, "charts")
        self.wrap(pages, "summarise")  # the page's
        self.wrap(api, "summarise")  # the JSON route's
        self.wrap(pages, "require_program")
        self.wrap(pages, "_maybe_staff", "session")
        self.wrap(pages.TEMPLATES, "TemplateResponse", "render (Jinja)")
        sync = self.engine.sync_engine
        event.listen(sync, "before_cursor_execute", self.before)
        event.listen(sync, "after_cursor_execute", self.after)
        try:
            yield self
        finally:
            event.remove(sync, "before_cursor_execute", self.before)
            event.remove(sync, "after_cursor_execute", self.after)
            for undo in reversed(self.undo):
                undo()
            self.undo.clear()

    def reset(self) -> None:
        self.wall.clear()
        self.sql.clear()
        self.statements.clear()

    def table(self, total: float) -> list[dict[str, Any]]:
        named = sum(self.wall.values())
        found = [
            {
                "step": k,
                "wall_ms": round(v * 1000, 1),
                "sql_ms": round(self.sql.get(k, 0) * 1000, 1),
            }
            for k, v in sorted(self.wall.items(), key=lambda kv: -kv[1])
        ]
        found.append(
            {
                "step": "rest (routing, middleware, response)",
                "wall_ms": round((total - named) * 1000, 1),
                "sql_ms": round(self.sql.get("other", 0) * 1000, 1),
            }
        )
        return found


async def split(request: Request, steps: Steps, runs: int = 3) -> dict[str, Any]:
    """The median run's steps, of `runs` requests."""
    found: list[dict[str, Any]] = []
    for _ in range(runs):
        steps.reset()
        seconds, response = await timed(request)
        assert response.status_code == 200
        slowest = sorted(steps.statements, reverse=True)[:3]
        found.append(
            {
                "total_ms": round(seconds * 1000, 1),
                "steps": steps.table(seconds),
                "sql_ms": round(sum(steps.sql.values()) * 1000, 1),
                "statements": len(steps.statements),
                "slowest_statements": [
                    {"ms": round(s * 1000, 1), "step": step, "sql": sql[:300]}
                    for s, step, sql in slowest
                ],
            }
        )
    found.sort(key=lambda f: f["total_ms"])
    return found[len(found) // 2]


async def profiled(request: Request, top: int = 15) -> str:
    """cProfile of one request, the registration code's functions by cumulative time, then every
    function by own time. The event loop's thread only: SQLite runs in aiosqlite's thread (a
    coroutine's cumulative time leaves out its awaits), and cProfile's overhead inflates code
    of many small calls (Jinja's) several times: `page_steps` has the true wall times."""
    profile = cProfile.Profile()
    profile.enable()
    response = await request()
    profile.disable()
    assert response.status_code == 200
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("cumulative").print_stats("lindung_registration|templating.py", top)
    stats.sort_stats("tottime").print_stats(top)
    return "\n".join(
        line
        for line in out.getvalue().splitlines()
        if line.strip() and not line.lstrip().startswith(("Ordered by", "List reduced"))
    )


async def measure(work: Path, n: int, pairs: int, village: tuple[str, str]) -> dict[str, Any]:
    configure_logging("registration", "WARNING", "console", stream=sys.stderr)
    settings = RegistrationSettings(
        LINDUNG_DATA_DIR=str(work), kafka_bootstrap_servers=None, LOG_LEVEL="WARNING"
    )
    service = create_service(settings, clock=FixedClock(TODAY))
    await service.database.create_tables(service.tables)  # the runtime's; the rest are built
    keys = settings.api_keys_path
    operator = create_key(keys, "bench-ops", "operator")
    desa = create_key(keys, "bench-desa", "village", village=village[1], district=village[0])
    page_path = f"/ui/programs/{PROGRAM}"
    summary_path = f"/programs/{PROGRAM}/summary"
    transport = httpx.ASGITransport(app=service.http)
    results: dict[str, Any] = {}
    try:
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://test") as ops,
            httpx.AsyncClient(transport=transport, base_url="http://test") as desk,
        ):
            await login(ops, operator, page_path)
            await login(desk, desa, page_path)

            def page(client: httpx.AsyncClient) -> Request:
                return lambda: client.get(page_path)

            def summary(key: str) -> Request:
                return lambda: ops.get(summary_path, headers={"Authorization": f"Bearer {key}"})

            rss_before, max_before = rss_mb(), max_rss_mb()
            first, response = await timed(page(ops))
            assert response.status_code == 200, response.text[:500]
            results["first_page"] = {
                "ms": round(first * 1000, 1),
                "bytes": len(response.content),
                "rss_mb_before": round(rss_before, 1),
                "rss_mb_after": round(rss_mb(), 1),
                "max_rss_mb_before": round(max_before, 1),
                "max_rss_mb_after": round(max_rss_mb(), 1),
            }
            answer = (await summary(operator)()).json()
            results["summary_bytes"] = len(json.dumps(answer))
            results["summary_totals"] = answer["totals"]
            results["operator"] = await alternate(page(ops), summary(operator), pairs)
            results["village"] = await alternate(page(desk), summary(desa), pairs)
            results["village"]["desa"] = f"{village[1]}, Kec. {village[0]}"

            results["tracemalloc_peak_mb"] = {
                "page": await traced_peak_mb(page(ops)),
                "summary": await traced_peak_mb(summary(operator)),
                "village_page": await traced_peak_mb(page(desk)),
                "village_summary": await traced_peak_mb(summary(desa)),
            }
            results["max_rss_mb_end"] = round(max_rss_mb(), 1)

            steps = Steps(service.database.engine)
            with steps.installed():
                results["page_steps"] = await split(page(ops), steps)
                results["summary_steps"] = await split(summary(operator), steps)
                results["village_page_steps"] = await split(page(desk), steps)
            results["profile"] = await profiled(page(ops))
    finally:
        await service.database.dispose()
    return results


def run(n: int, pairs: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lindung-staff-page-"))
    try:
        started = time.perf_counter()
        built = subprocess.run(
            [sys.executable, __file__, "--build", str(work / "registration.db"), "--n", str(n)],
            check=True,
            capture_output=True,
            text=True,
        )
        rows = json.loads(built.stdout)
        build_seconds = round(time.perf_counter() - started, 1)
        size_mb = round((work / "registration.db").stat().st_size / 1e6, 1)
        results = asyncio.run(measure(work, n, pairs, places()[0]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/staff_page.py " + " ".join(sys.argv[1:]),
        "n": n,
        "pairs": pairs,
        "rows": rows,
        "database_mb": size_mb,
        "build_seconds": build_seconds,
        **results,
    }


def report(figures: dict[str, Any]) -> str:
    lines = [
        f"n = {figures['n']:,}; database {figures['database_mb']} MB (built in "
        f"{figures['build_seconds']} s); {figures['pairs']} pairs after a warm-up",
        "",
        f"{'':28} {'page ms':>9} {'JSON ms':>9} {'ratio':>6}",
    ]
    for who in ("operator", "village"):
        f = figures[who]
        lines.append(
            f"{who:28} {f['page_median_ms']:>9} {f['summary_median_ms']:>9} {f['ratio']:>6}"
        )
    first = figures["first_page"]
    peak = figures["tracemalloc_peak_mb"]
    lines += [
        "",
        f"first page: {first['ms']} ms, {first['bytes']:,} bytes; RSS {first['rss_mb_before']} -> "
        f"{first['rss_mb_after']} MB, max RSS {first['max_rss_mb_before']} -> "
        f"{first['max_rss_mb_after']} MB (end of run {figures['max_rss_mb_end']})",
        "tracemalloc peak MB: " + ", ".join(f"{k} {v}" for k, v in peak.items()),
        "",
    ]
    for name in ("page_steps", "summary_steps", "village_page_steps"):
        s = figures[name]
        lines.append(
            f"{name}: {s['total_ms']} ms, SQL {s['sql_ms']} ms in {s['statements']} statements"
        )
        for step in s["steps"]:
            lines.append(f"  {step['step']:38} {step['wall_ms']:>8} ms (SQL {step['sql_ms']})")
        for slow in s["slowest_statements"][:2]:
            lines.append(f"  slowest: {slow['ms']} ms [{slow['step']}] {slow['sql'][:140]}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="workers in the programme")
    parser.add_argument("--pairs", type=int, default=7, help="A B pairs after the warm-up")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).with_name("staff_page.json"), dest="out"
    )
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)  # the child: build only
    args = parser.parse_args()
    if args.build:
        print(json.dumps(build(args.build, args.n)))
        sys.exit(0)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    figures = run(args.n, args.pairs)
    profile = figures.pop("profile")
    runs = json.loads(args.out.read_text()) if args.out.exists() else []
    runs.append(figures)
    args.out.write_text(json.dumps(runs, indent=2) + "\n")
    print(report(figures))
    print(profile)
