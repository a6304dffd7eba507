"""`lindung demo`: the founding case end to end on the embedded stack, with a printed summary."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lindung_cli.founding_case import MALFORMED_MESSAGES, Expected, founding_program, generate_rows
from lindung_cli.funnel import Funnel, FunnelWatcher, dead_letter_counts, funnel_table
from lindung_cli.intake import ApiError, ImportClient
from lindung_cli.stack import Stack, StackSettings
from lindung_contracts import DayStarted, PaymentReceived, RegistrationRequested, topics
from lindung_registration.auth import create_key
from lindung_registration.spreadsheet import write_template_csv
from lindung_runtime.kafka import EventClient

#: The founding case's programme is published and its workers imported the day after the PKS.
SIGNED_DAY_AFTER = date(2025, 10, 29)


@dataclass
class DemoResult:
    funnel: Funnel
    expected: Expected
    import_report: dict[str, Any]
    dead_letters: int
    maildir: Path | None
    mails: int
    seconds: float


async def publish_requests(
    client: EventClient, requests: list[RegistrationRequested], progress: Progress | None = None
) -> None:
    task = (
        progress.add_task("Mendaftarkan peserta / registering", total=len(requests))
        if progress
        else None
    )
    for start in range(0, len(requests), 500):
        chunk = requests[start : start + 500]
        await client.publish_many(chunk)
        if progress is not None and task is not None:
            progress.advance(task, len(chunk))


async def wait_for(
    watcher: FunnelWatcher,
    program_id: str,
    done: Callable[[Funnel], bool],
    what: str,
    timeout: float,
) -> Funnel:
    """Poll the funnel until `done`; fail with what was reached so a stall is diagnosable."""
    deadline = time.monotonic() + timeout
    funnel = Funnel(program_id)
    while time.monotonic() < deadline:
        funnel = (await watcher.refresh()).get(program_id, Funnel(program_id))
        if done(funnel):
            return funnel
        await asyncio.sleep(0.5)
    raise TimeoutError(
        f"timed out waiting for {what}: registered={len(funnel.registered)} "
        f"rejected={len(funnel.registration_rejected)} confirmed={len(funnel.confirmed)} "
        f"ineligible={len(funnel.eligibility_rejected)} invoiced={len(funnel.invoice_lines)} "
        f"activated={len(funnel.activated)} digests={len(funnel.digests)}"
    )


async def import_with_progress(
    client: ImportClient, path: Path, program_id: str, console: Console | None
) -> dict[str, Any]:
    """Upload a spreadsheet to the registration API and follow its import to the end."""
    import_id = await client.upload(path, program_id)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
        transient=True,
    ) as progress:
        task = progress.add_task("Impor / importing " + path.name, total=None)

        def show(report: dict[str, Any]) -> None:
            progress.update(task, total=report["rows_total"], completed=report["rows_done"])

        return await client.wait(import_id, show)


def print_import_report(report: dict[str, Any], console: Console) -> None:
    console.print(
        f"Impor / import {report['import_id']} ({report['filename']}): {report['status']} — "
        f"{report['rows_done']:,} rows: {report['registered']:,} registered, "
        f"{report['repeated']:,} already registered, {report['rejected']:,} rejected"
        + (f" — {report['error']}" if report.get("error") else "")
    )


async def wait_for_api(client: ImportClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await client.available():
        if time.monotonic() > deadline:
            raise ApiError(f"the registration API at {client.base_url} did not come up")
        await asyncio.sleep(0.2)


async def run_founding_case(
    client: EventClient,
    api: ImportClient,
    work_dir: Path,
    console: Console | None = None,
    timeout: float = 90.0,
) -> tuple[Funnel, Expected, dict[str, Any]]:
    """Apply the programme, import the spreadsheet, pay, let the days pass: the whole lifecycle."""
    async with FunnelWatcher(client.bootstrap_servers) as watcher:
        return await _founding_case(client, api, watcher, work_dir, console, timeout)


async def _founding_case(
    client: EventClient,
    api: ImportClient,
    watcher: FunnelWatcher,
    work_dir: Path,
    console: Console | None,
    timeout: float,
) -> tuple[Funnel, Expected, dict[str, Any]]:
    program = founding_program()
    # The real timeline: the PKS was signed on 28 Oct 2025 for cover from 1 Oct; the programme
    # is published and its workers imported the day after (`from_term_start` covers them from
    # 1 Oct all the same), and the sponsor pays once the invoice is out.
    await client.publish(program)
    await client.publish(DayStarted(date=SIGNED_DAY_AFTER))

    rows, expected = generate_rows(program)
    csv_path = work_dir / "pekerja-rentan-sumba-barat-daya.csv"
    write_template_csv(csv_path, rows)
    for body in MALFORMED_MESSAGES:  # upstream systems' mistakes, straight onto Kafka
        await client.publish_raw(
            topics.REGISTRATION_REQUESTED,
            body,
            key=None,
            headers={"content-type": "application/json"},
        )
    expected.malformed = len(MALFORMED_MESSAGES)
    await wait_for_api(api)
    await api.wait_for_program(program.program_id)
    report = await import_with_progress(api, csv_path, program.program_id, console)
    if report["status"] != "done":
        raise ApiError(f"import {report['import_id']} {report['status']}: {report.get('error')}")

    def invoiced(f: Funnel) -> bool:
        decided = len(f.confirmed) + len(f.eligibility_rejected)
        return (
            len(f.registered) + len(f.registration_rejected)
            == expected.registered + expected.registration_rejected
            and decided == len(f.registered)
            and len(f.invoice_lines) == len(f.confirmed)
        )

    funnel = await wait_for(watcher, program.program_id, invoiced, "invoices", timeout)
    for invoice_id, amount in funnel.invoices().items():
        await client.publish(
            PaymentReceived(
                invoice_id=invoice_id,
                amount_idr=amount,
                paid_at=datetime(2025, 10, 30, 9, 0, tzinfo=UTC),
                reference=f"SP2D-{invoice_id}",
            )
        )
    funnel = await wait_for(
        watcher,
        program.program_id,
        lambda f: len(f.activated) == len(f.invoice_lines),
        "activation",
        timeout,
    )
    day = SIGNED_DAY_AFTER
    last = date(2025, 12, 1)
    while day < last:  # the daily cron, compressed
        day += timedelta(days=1)
        await client.publish(DayStarted(date=day))
    windows = sum(
        1 for d in program.alert_days_before_end if program.coverage_end - timedelta(days=d) <= last
    )
    funnel = await wait_for(
        watcher, program.program_id, lambda f: len(f.digests) >= windows, "expiry digests", timeout
    )
    return funnel, expected, report


async def run_demo(settings: StackSettings, console: Console) -> DemoResult:
    started = time.monotonic()
    work_dir = settings.data_dir.resolve() / "demo"
    shutil.rmtree(work_dir, ignore_errors=True)  # each demo starts from nothing
    work_dir.mkdir(parents=True)
    # The registration API on a free port, with an operator key made for this run.
    api_key = create_key(work_dir / "api-keys.yaml", "demo-operator", "operator")
    stack_settings = settings.model_copy(update={"data_dir": work_dir, "registration_http_port": 0})
    console.print(f"[bold]Lindung demo[/] — data, logs and mail under {work_dir}")
    async with Stack(stack_settings) as stack:
        console.print(
            f"Broker {stack.bootstrap_servers}, SMTP {stack.smtp_host}:{stack.smtp_port}, "
            f"API {stack.registration_url}"
        )
        assert stack.registration_url is not None
        api = ImportClient(stack.registration_url, api_key)
        async with EventClient(stack.bootstrap_servers) as client:
            funnel, expected, report = await run_founding_case(client, api, work_dir, console)
            dead = sum((await dead_letter_counts(client)).values())
        maildir = stack.maildir
        mails = len(stack.smtp.messages()) if stack.smtp else 0
    return DemoResult(funnel, expected, report, dead, maildir, mails, time.monotonic() - started)


def print_summary(result: DemoResult, console: Console) -> None:
    table = funnel_table(
        result.funnel, "Ringkasan / Summary — Kab. Sumba Barat Daya, 1 Okt – 31 Des 2025"
    )
    console.print(
        f"Spreadsheet rows imported over HTTP: {result.expected.requests:,} "
        f"(+ {result.expected.malformed} messages that are not JSON, sent straight to Kafka)"
    )
    print_import_report(result.import_report, console)
    console.print(table)
    console.print(f"Dead letters: {result.dead_letters} (registration.requested.dlq)")
    if result.maildir is not None:
        console.print(
            f"Mail landed in [bold]{result.maildir / 'new'}[/] ({result.mails} message(s))"
        )
    console.print(f"Finished in {result.seconds:.1f} s")
