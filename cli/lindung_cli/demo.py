"""`lindung demo`: the founding case end to end on the embedded stack, with a printed summary."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lindung_cli.founding_case import MALFORMED_MESSAGES, Expected, founding_program, generate_rows
from lindung_cli.funnel import Funnel, FunnelWatcher, dead_letter_counts, funnel_table
from lindung_cli.intake import read_requests, write_requests
from lindung_cli.stack import Stack, StackSettings
from lindung_contracts import DayStarted, PaymentReceived, RegistrationRequested, topics
from lindung_runtime.kafka import EventClient


@dataclass
class DemoResult:
    funnel: Funnel
    expected: Expected
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


async def run_founding_case(
    client: EventClient, work_dir: Path, console: Console | None = None, timeout: float = 90.0
) -> tuple[Funnel, Expected]:
    """Apply the programme, register, pay, let the days pass: the whole lifecycle once."""
    async with FunnelWatcher(client.bootstrap_servers) as watcher:
        return await _founding_case(client, watcher, work_dir, console, timeout)


async def _founding_case(
    client: EventClient,
    watcher: FunnelWatcher,
    work_dir: Path,
    console: Console | None,
    timeout: float,
) -> tuple[Funnel, Expected]:
    program = founding_program()
    await client.publish(program)
    await client.publish(DayStarted(date=program.coverage_start))

    rows, expected = generate_rows(program)
    csv_path = work_dir / "pekerja-rentan-sumba-barat-daya.csv"
    write_requests(csv_path, rows)
    requests = list(read_requests(csv_path, program.program_id))
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
        transient=True,
    ) as progress:
        half = len(requests) // 2
        await publish_requests(client, requests[:half], progress)
        for body in MALFORMED_MESSAGES:  # upstream mistakes among good messages
            await client.publish_raw(
                topics.REGISTRATION_REQUESTED,
                body,
                key=None,
                headers={"content-type": "application/json"},
            )
        await publish_requests(client, requests[half:], progress)
    expected.malformed = len(MALFORMED_MESSAGES)

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
                paid_at=datetime(2025, 10, 15, 9, 0, tzinfo=UTC),
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
    day = program.coverage_start
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
    return funnel, expected


async def run_demo(settings: StackSettings, console: Console) -> DemoResult:
    started = time.monotonic()
    work_dir = settings.data_dir.resolve() / "demo"
    shutil.rmtree(work_dir, ignore_errors=True)  # each demo starts from nothing
    work_dir.mkdir(parents=True)
    stack_settings = settings.model_copy(update={"data_dir": work_dir})
    console.print(f"[bold]Lindung demo[/] — data, logs and mail under {work_dir}")
    async with Stack(stack_settings) as stack:
        console.print(f"Broker {stack.bootstrap_servers}, SMTP {stack.smtp_host}:{stack.smtp_port}")
        async with EventClient(stack.bootstrap_servers) as client:
            funnel, expected = await run_founding_case(client, work_dir, console)
            dead = sum((await dead_letter_counts(client)).values())
        maildir = stack.maildir
        mails = len(stack.smtp.messages()) if stack.smtp else 0
    return DemoResult(funnel, expected, dead, maildir, mails, time.monotonic() - started)


def print_summary(result: DemoResult, console: Console) -> None:
    table = funnel_table(
        result.funnel, "Ringkasan / Summary — Kab. Sumba Barat Daya, 1 Okt – 31 Des 2025"
    )
    console.print(
        f"Permintaan pendaftaran / requests sent: {result.expected.requests:,} "
        f"(+ {result.expected.malformed} messages that are not JSON)"
    )
    console.print(table)
    console.print(f"Dead letters: {result.dead_letters} (registration.requested.dlq)")
    if result.maildir is not None:
        console.print(
            f"Mail landed in [bold]{result.maildir / 'new'}[/] ({result.mails} message(s))"
        )
    console.print(f"Finished in {result.seconds:.1f} s")
