"""A 100,000-row spreadsheet through the registration API of a real service process.

The service runs as in production (`python -m lindung_cli service registration`, its own process,
HTTP on a free port) against the test's Tansu broker. The file is written to disk row by row and
uploaded as a streamed multipart body (neither side holds it whole); then the import report must
count every row exactly as generated and page through its rows, and the process's peak RSS
(VmHWM) must stay under one bound for 1,000 and for 100,000 rows.
"""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from lindung_registration.auth import create_key
from lindung_registration.spreadsheet import TEMPLATE_COLUMNS
from lindung_runtime.embedded import free_port
from tests.sources import TrustedClient
from tests.unit.handler_kit import founding_program

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROGRAM = "sbd-2025q4"
WORKSPACE = Path(__file__).resolve().parents[2]

#: Peak RSS (VmHWM) of the whole service process, the same bound whatever the file size. Measured
#: (Python 3.11, SQLite, Tansu, INFO JSON logs; upload, import, then the service's projection of
#: its own events), over several runs: 1,000 rows -> 113-127 MiB peak, import 2-8 s; 100,000 rows
#: (8.6 MiB CSV) -> 142-157 MiB peak, import 227-308 s (~320-440 rows/s), projection caught up
#: ~100 s later. The difference is warm-up, not the file: the Python heap stays flat
#: (tracemalloc), what grows is SQLite's page cache of each pooled connection (2 MiB each at most)
#: and aiokafka's fetch buffers while the projection lags. Bound = the highest 100k peak + ~30%:
#: the rows or the report held in Python objects (~1 KiB a row) would blow through it.
PEAK_RSS_BOUND_MIB = 205
IMPORT_TIMEOUT_SECONDS = 1500.0

VILLAGES = [
    ("Kota Tambolaka", "Kalena Wanno"),
    ("Wewewa Barat", "Kalembu Ndara Mane"),
    ("Wewewa Timur", "Tema Tana"),
    ("Kodi", "Kori"),
    ("Loura", "Karuni"),
]
#: (what is wrong, the field and error code the row report must give), in turn for each bad row.
INVALID: list[tuple[dict[str, str], str, str]] = [
    ({"nik": "5318-01"}, "nik", "nik_invalid_length"),
    ({"nik": "5318013202600001"}, "nik", "nik_invalid_component"),  # 32 February
    ({"birth_date": "31/02/1960"}, "birth_date", "birth_date_invalid"),
    ({"full_name": ""}, "full_name", "name_required"),
    ({"gender": "X"}, "gender", "gender_invalid"),
    ({"phone": "12345"}, "phone", "phone_invalid"),
]


@dataclass
class Generated:
    rows: int
    registered: int = 0
    repeated_rows: list[int] = field(default_factory=list)
    rejected_rows: dict[int, tuple[str, str]] = field(default_factory=dict)  # row -> field, code


def worker(unique: int) -> dict[str, str]:
    """The `unique`-th distinct valid worker: a distinct NIK (kecamatan 01-11 of Sumba Barat Daya,
    the birth date inside it, women's day + 40), the same birth date and gender beside it."""
    district_code = 1 + unique % 11
    born = date(1960, 1, 1) + timedelta(days=(unique // 11) % 3650)
    serial = 1 + unique // (11 * 3650)
    woman = unique % 2 == 1
    day = born.day + (40 if woman else 0)
    nik = f"5318{district_code:02d}{day:02d}{born:%m%y}{serial:04d}"
    district, village = VILLAGES[unique % len(VILLAGES)]
    return {
        "nik": nik,
        "full_name": f"Pekerja Rentan {unique}",
        "birth_date": f"{born:%d/%m/%Y}" if unique % 3 else born.isoformat(),
        "gender": "P" if woman else "L",
        "occupation": "Petani",
        "village": village,
        "district": district,
        "phone": f"0812{unique % 10**8:08d}" if unique % 4 else "",
    }


def write_spreadsheet(path: Path, rows: int) -> Generated:
    """`rows` data rows in the Indonesian template, written as generated (nothing kept whole):
    1 row in 100 invalid (in turn each mistake of INVALID), 1 in 100 a NIK already given above,
    the rest distinct valid workers. Deterministic."""
    generated = Generated(rows)
    unique = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TEMPLATE_COLUMNS)
        for index in range(rows):
            number = index + 2  # as the spreadsheet shows it: the header is row 1
            if index % 100 == 37:
                mistake, wrong_field, code = INVALID[len(generated.rejected_rows) % len(INVALID)]
                values = {**worker(10_000_000 + index), **mistake}
                generated.rejected_rows[number] = (wrong_field, code)
            elif index % 100 == 73:
                values = {**worker(unique - 1), "full_name": "Nama Lain"}  # same NIK again
                generated.repeated_rows.append(number)
            else:
                values = worker(unique)
                unique += 1
                generated.registered += 1
            writer.writerow([values[f] for f in TEMPLATE_COLUMNS.values()])
    return generated


@dataclass
class ServiceProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path
    admin_url: str

    def peak_rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        [line] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
        return int(line.split()[1]) / 1024  # kB

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


@pytest.fixture
def registration_process(
    kafka_bootstrap: str, data_dir: Path, tmp_path: Path
) -> Iterator[ServiceProcess]:
    """The registration service as its own process; always stopped, however the test ends."""
    port, admin_port = free_port(), free_port()
    # The database stays whatever the environment says (`REGISTRATION_DATABASE_URL` on PostgreSQL
    # runs, else SQLite in the data directory); the rest is pinned so the figures compare.
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LINDUNG_DATA_DIR": str(data_dir),
        "API_KEYS_FILE": str(data_dir / "api-keys.yaml"),
        "IMPORT_DIR": str(tmp_path / "imports"),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "ADMIN_PORT": str(admin_port),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }
    log = tmp_path / "registration.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lindung_cli", "service", "registration"],
            env=env,
            cwd=WORKSPACE,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = ServiceProcess(
        process, f"http://127.0.0.1:{port}", log, f"http://127.0.0.1:{admin_port}"
    )
    try:
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def wait_until_ready(service: ServiceProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            pytest.fail(f"the service exited ({service.process.returncode}):\n{service.log_tail()}")
        try:
            if httpx.get(f"{service.admin_url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the service was not ready after {timeout}s:\n{service.log_tail()}")


def poll(
    client: httpx.Client,
    url: str,
    done: Any,
    timeout: float,
    expect: tuple[int, ...] = (200,),
    **params: Any,
) -> Any:
    """GET `url` until `done(body)`; answers other than 200 (among `expect`) mean not yet."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(url, params=params)
        assert answer.status_code in expect, answer.text
        body = answer.json()
        if answer.status_code != 200:
            body, done_now = None, False
        else:
            done_now = done(body)
        if done_now:
            return body
        assert time.monotonic() < deadline, f"timed out polling {url}: {answer.text}"
        time.sleep(0.5)


async def publish_program(bootstrap: str) -> None:
    """The operator publishes the programme the spreadsheet is for."""
    async with TrustedClient(bootstrap) as client:
        await client.publish(founding_program(program_id=PROGRAM))


def all_report_rows(client: httpx.Client, import_id: str, status: str) -> list[dict[str, Any]]:
    """Every row of the report with `status`, a page of 1,000 at a time."""
    rows: list[dict[str, Any]] = []
    while True:
        page = client.get(
            f"/imports/{import_id}", params={"status": status, "offset": len(rows), "limit": 1000}
        ).json()
        rows += page["rows"]
        if not page["rows"]:
            return rows


@pytest.mark.timeout(2 * IMPORT_TIMEOUT_SECONDS)
@pytest.mark.parametrize("rows", [pytest.param(1_000, id="1k"), pytest.param(100_000, id="100k")])
def test_a_large_spreadsheet_is_imported_exactly_with_flat_memory(
    rows: int,
    registration_process: ServiceProcess,
    kafka_bootstrap: str,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    key = create_key(data_dir / "api-keys.yaml", "operator", "operator")
    spreadsheet = tmp_path / "pekerja.csv"
    generated = write_spreadsheet(spreadsheet, rows)
    assert (
        generated.registered + len(generated.repeated_rows) + len(generated.rejected_rows) == rows
    )
    service = registration_process
    wait_until_ready(service)
    asyncio.run(publish_program(kafka_bootstrap))

    with httpx.Client(
        base_url=service.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as client:
        poll(client, f"/programs/{PROGRAM}", lambda _: True, 60, expect=(200, 404))
        started = time.monotonic()
        with spreadsheet.open("rb") as upload:  # httpx streams the file in chunks
            accepted = client.post(
                f"/programs/{PROGRAM}/imports", files={"file": ("pekerja.csv", upload, "text/csv")}
            )
        uploaded = time.monotonic() - started
        assert accepted.status_code == 202, accepted.text
        import_id = accepted.json()["import_id"]

        report = poll(
            client,
            f"/imports/{import_id}",
            lambda r: r["status"] in ("done", "failed"),
            IMPORT_TIMEOUT_SECONDS,
            limit=0,
        )
        imported = time.monotonic() - started
        assert report["status"] == "done", report
        assert (report["rows_done"], report["registered"], report["repeated"]) == (
            rows,
            generated.registered,
            len(generated.repeated_rows),
        )
        assert report["rejected"] == len(generated.rejected_rows)
        assert report.get("rows_total", rows) == rows
        assert report["rows_matching"] == rows and report["rows"] == []

        # The report, paged: exactly the generated bad rows, each with its own mistake.
        rejected = all_report_rows(client, import_id, "rejected")
        assert [r["row"] for r in rejected] == sorted(generated.rejected_rows)
        for row in rejected:
            wrong_field, code = generated.rejected_rows[row["row"]]
            assert (wrong_field, code) in {(e["field"], e["code"]) for e in row["errors"]}, row
            assert row["worker_id"] is None
        repeated = all_report_rows(client, import_id, "repeated")
        assert [r["row"] for r in repeated] == generated.repeated_rows
        assert all(r["worker_id"] and not r["errors"] for r in repeated)
        middle = client.get(
            f"/imports/{import_id}", params={"offset": rows // 2, "limit": 5}
        ).json()
        assert [r["row"] for r in middle["rows"]] == list(range(rows // 2 + 2, rows // 2 + 7))

        with client.stream("GET", f"/imports/{import_id}/errors.csv") as errors_csv:
            assert errors_csv.status_code == 200
            lines = sum(1 for _ in errors_csv.iter_lines())
        assert lines == 1 + len(generated.rejected_rows)

        # The service also consumed its own events: the funnel shows every worker.
        summary = poll(
            client,
            f"/programs/{PROGRAM}/summary",
            lambda s: (
                s["totals"]["registered"] >= generated.registered
                and s["totals"]["requests_rejected"] >= len(generated.rejected_rows)
            ),
            IMPORT_TIMEOUT_SECONDS,
        )
        projected = time.monotonic() - started
        assert summary["totals"]["registered"] == generated.registered
        assert summary["totals"]["requests_rejected"] == len(generated.rejected_rows)

    peak = service.peak_rss_mib()
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=60) == 0, service.log_tail()
    duration = (
        datetime.fromisoformat(report["finished_at"]) - datetime.fromisoformat(report["created_at"])
    ).total_seconds()
    print(
        f"\nimport {rows:,} rows ({spreadsheet.stat().st_size / 2**20:.1f} MiB CSV): "
        f"upload {uploaded:.1f}s, import {duration:.1f}s ({rows / duration:,.0f} rows/s), "
        f"done after {imported:.1f}s, projected after {projected:.1f}s; "
        f"peak RSS {peak:.0f} MiB (bound {PEAK_RSS_BOUND_MIB} MiB)"
    )
    assert peak < PEAK_RSS_BOUND_MIB
