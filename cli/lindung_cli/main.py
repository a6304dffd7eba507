"""The `lindung` command: run the services and the embedded stack, and operate the programme."""

from __future__ import annotations

import asyncio
import importlib
import signal
import sys
from collections import Counter
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress

from lindung_cli.demo import (
    import_with_progress,
    print_import_report,
    print_summary,
    publish_requests,
    run_demo,
)
from lindung_cli.funnel import dead_letter_counts, funnel_table, read_funnels, rupiah
from lindung_cli.intake import ApiError, ImportClient, read_requests, resolve_api_url
from lindung_cli.stack import Stack, StackSettings, resolve_bootstrap
from lindung_contracts import (
    DayStarted,
    Event,
    MembershipNumberAssigned,
    PaymentReceived,
    ProgramPublished,
    ProgramRenewed,
)
from lindung_runtime.kafka import EventClient
from lindung_runtime.logging import configure_logging
from lindung_runtime.service import service_process_gc
from lindung_runtime.settings import LindungSettings

app = typer.Typer(
    help="Lindung: BPJS Ketenagakerjaan enrolment for pekerja rentan.", no_args_is_help=True
)
program_app = typer.Typer(help="Programmes (one sponsor's PKS term).", no_args_is_help=True)
app.add_typer(program_app, name="program")
contracts_app = typer.Typer(
    help="The contract documents generated from the code.", no_args_is_help=True
)
app.add_typer(contracts_app, name="contracts")
apikey_app = typer.Typer(
    help="API keys of the registration API (stored hashed; rotate by creating again).",
    no_args_is_help=True,
)
app.add_typer(apikey_app, name="apikey")
dlq_app = typer.Typer(help="Dead letters: inspect and re-drive.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
outbox_app = typer.Typer(help="The services' transactional outboxes.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")
kpj_app = typer.Typer(
    help="BPJS Ketenagakerjaan's membership numbers (nomor KPJ).", no_args_is_help=True
)
app.add_typer(kpj_app, name="kpj")
console = Console()


class ServiceName(StrEnum):
    registration = "registration"
    eligibility = "eligibility"
    billing = "billing"
    notification = "notification"


def _client(settings: LindungSettings | None = None) -> EventClient:
    return EventClient(resolve_bootstrap(settings or LindungSettings()))


def _publish(event: Event) -> None:
    async def run() -> None:
        async with _client() as client:
            await client.publish(event)

    asyncio.run(run())


@app.command()
def service(name: ServiceName) -> None:
    """Run one service in the foreground (how production runs each of them)."""
    settings = LindungSettings()
    configure_logging(name.value, settings.log_level, settings.log_format)
    module = importlib.import_module(f"lindung_{name.value}.app")
    service_process_gc()
    asyncio.run(module.create_service().app.run())


@app.command()
def up() -> None:
    """Start the four services, plus the embedded broker and SMTP sink when none is configured."""
    settings = StackSettings()
    configure_logging("supervisor", settings.log_level, "console", stream=sys.stderr)

    async def run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        async with Stack(settings) as stack:
            console.print(
                f"Kafka: {stack.bootstrap_servers}   SMTP: {stack.smtp_host}:{stack.smtp_port}"
            )
            console.print(
                f"Logs: {stack.logs}" + (f"   Mail: {stack.maildir}" if stack.maildir else "")
            )
            console.print(f"API: {stack.registration_url}")
            console.print(
                "Admin (/readyz, /metrics, /docs): "
                + ", ".join(f"{c.name} {stack.admin_url(c.name)}" for c in stack.children)
            )
            console.print(
                "Services: " + ", ".join(stack.alive()) + " — Ctrl-C stops them gracefully."
            )
            await stopping.wait()
            console.print("Stopping…")

    asyncio.run(run())


@app.command()
def demo() -> None:
    """The founding case end to end on the embedded defaults, with a summary."""
    settings = StackSettings()
    configure_logging("demo", "WARNING", "console", stream=sys.stderr)
    result = asyncio.run(run_demo(settings, console))
    print_summary(result, console)


@program_app.command("apply")
def program_apply(file: Path) -> None:
    """Publish a programme from a YAML file (see cli/lindung_cli/examples/)."""
    program = ProgramPublished.model_validate(yaml.safe_load(file.read_text()))

    _publish(program)
    console.print(
        f"Programme {program.program_id} published: quota {program.quota:,}, "
        f"{program.coverage_start} – {program.coverage_end}"
    )


@program_app.command("renew")
def program_renew(
    program_id: Annotated[str, typer.Argument(metavar="PROGRAM")],
    term_start: Annotated[str, typer.Option(help="The new term's first day, YYYY-MM-DD")],
    term_end: Annotated[str, typer.Option(help="The new term's last day, YYYY-MM-DD")],
    quota: Annotated[int | None, typer.Option(help="Seats; the term before's if left out")] = None,
    reported_income: Annotated[
        int | None,
        typer.Option(
            "--reported-income", help="Contribution basis in whole Rupiah; the term before's"
        ),
    ] = None,
    registration_deadline: Annotated[
        str | None, typer.Option(help="from_term_start: last day cover counts from term start")
    ] = None,
) -> None:
    """Renew a programme into its next PKS term: its workers are carried over, no re-upload.

    Renewing the same term again changes nothing. A term overlapping one the programme has is
    refused by the services (dead-lettered as `term_overlaps`; `lindung dlq list` shows it);
    the API's POST /programs/{id}/renewals answers such a request with 409 at once."""
    try:
        renewal = ProgramRenewed(
            program_id=program_id,
            term_start=date.fromisoformat(term_start),
            term_end=date.fromisoformat(term_end),
            quota=quota,
            reported_income_idr=reported_income,
            registration_deadline=(
                date.fromisoformat(registration_deadline) if registration_deadline else None
            ),
            renewed_at=datetime.now(UTC),
        )
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        console.print(f"[red]Not renewed:[/] {error}")
        raise typer.Exit(2) from error
    _publish(renewal)
    console.print(
        f"Renewal of {program_id} published: {renewal.term_start} – {renewal.term_end}"
        + (f", quota {quota:,}" if quota else "")
    )


class Route(StrEnum):
    auto = "auto"
    http = "http"
    kafka = "kafka"


@app.command()
def register(
    file: Path,
    program: Annotated[
        str | None, typer.Option(help="Programme id (else the file's program column; Kafka only)")
    ] = None,
    via: Annotated[
        Route, typer.Option(help="auto: the HTTP import when the API answers, else Kafka")
    ] = Route.auto,
    api_url: Annotated[
        str | None, typer.Option(envvar="LINDUNG_API_URL", help="Registration API base URL")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="LINDUNG_API_KEY", help="API key (lindung apikey create)")
    ] = None,
) -> None:
    """Register every row of a CSV or XLSX file (Indonesian or English headers).

    Through the registration API's import when it is up: a progress bar, the import report and
    the rejected rows saved next to FILE as `<name>.ditolak.csv`, ready to fix and send again.
    """
    settings = LindungSettings()
    client = ImportClient(resolve_api_url(settings, api_url), api_key)
    use_http = via == Route.http or (via == Route.auto and asyncio.run(client.available()))
    if not use_http:
        _register_over_kafka(file, program)
        return
    if not program:
        raise typer.BadParameter("the HTTP import needs --program", param_hint="--program")
    try:
        report = asyncio.run(import_with_progress(client, file, program, console))
    except ApiError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    except httpx.HTTPError as error:
        console.print(
            f"[red]The registration API at {client.base_url} did not answer: {error!r}[/]"
        )
        raise typer.Exit(1) from None
    print_import_report(report, console)
    if report["rejected"]:
        rejected = file.with_name(f"{file.stem}.ditolak.csv")
        asyncio.run(client.errors_csv(report["import_id"], rejected))
        console.print(f"Baris ditolak / rejected rows: {rejected} — fix them and register it again")
    if report["status"] != "done":
        raise typer.Exit(1)


def _register_over_kafka(file: Path, program: str | None) -> None:
    requests = list(read_requests(file, program))

    async def run() -> None:
        async with _client() as client:
            with Progress(console=console) as progress:
                await publish_requests(client, requests, progress)

    asyncio.run(run())
    console.print(
        f"{len(requests):,} requests sent over Kafka (the API was not up); "
        "`lindung status` shows the outcome."
    )


@app.command()
def pay(
    invoice_id: str,
    amount: int,
    reference: Annotated[
        str | None, typer.Option(help="Payment reference (e.g. SP2D number)")
    ] = None,
) -> None:
    """Announce a sponsor's payment of an invoice (whole Rupiah)."""
    event = PaymentReceived(
        invoice_id=invoice_id,
        amount_idr=amount,
        paid_at=datetime.now(UTC),
        reference=reference or f"manual-{datetime.now(UTC):%Y%m%d%H%M%S}",
    )

    _publish(event)
    console.print(f"Payment of {rupiah(amount)} for {invoice_id} announced.")


@kpj_app.command("assign")
def kpj_assign(
    program_id: str,
    nik: str,
    kpj: Annotated[str, typer.Argument(help="The 11-digit membership number")],
    assigned_on: Annotated[
        str | None, typer.Option(metavar="YYYY-MM-DD", help="When BPJS issued it (default: today)")
    ] = None,
    reference: Annotated[str, typer.Option(help="The branch's reference")] = "",
) -> None:
    """Announce a worker's membership number (nomor KPJ) on membership.number-assigned.

    Registration dead-letters it for an unknown NIK or a conflicting number (a spreadsheet of
    them goes to POST /programs/{id}/membership-numbers, which answers per row)."""
    try:
        event = MembershipNumberAssigned(
            program_id=program_id,
            nik=nik,
            kpj=kpj,
            assigned_on=date.fromisoformat(assigned_on) if assigned_on else date.today(),
            reference=reference,
        )
    except ValidationError as error:
        wrong = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in error.errors())
        raise typer.BadParameter(wrong) from None
    except ValueError as error:  # --assigned-on
        raise typer.BadParameter(str(error)) from None

    _publish(event)
    console.print(f"Membership number of NIK {event.nik[:4]}…{event.nik[-4:]} announced.")


@app.command()
def tick(day: Annotated[str, typer.Argument(metavar="YYYY-MM-DD")]) -> None:
    """Start a business day (what a daily cron job sends)."""
    event = DayStarted(date=date.fromisoformat(day))

    _publish(event)
    console.print(f"Day {event.date} started.")


@app.command()
def status() -> None:
    """Funnel counts per programme, counted from the events."""

    async def run() -> None:
        async with _client() as client:
            funnels = await read_funnels(client.bootstrap_servers)
            dead = await dead_letter_counts(client)
        for program_id, funnel in sorted(funnels.items()):
            console.print(funnel_table(funnel, f"Programme {program_id or '(none)'}"))
        if dead:
            console.print("Dead letters: " + ", ".join(f"{t} {n}" for t, n in sorted(dead.items())))

    asyncio.run(run())


@contracts_app.command("export")
def contracts_export(
    directory: Annotated[Path, typer.Option(help="The contracts/ folder")] = Path("contracts"),
    check: Annotated[bool, typer.Option(help="Only report stale documents; exit 1 if any")] = False,
) -> None:
    """Write JSON Schemas and each service's AsyncAPI document under contracts/."""
    from lindung_cli.contract_docs import stale_contract_docs, write_contract_docs

    if check:
        stale = stale_contract_docs(directory)
        for path in stale:
            console.print(f"stale: {directory / path}")
        raise typer.Exit(1 if stale else 0)
    for path in write_contract_docs(directory):
        console.print(f"wrote {directory / path}")


def _keys_file(file: Path | None) -> Path:
    from lindung_registration.settings import RegistrationSettings

    return file or RegistrationSettings().api_keys_path


KeysFile = Annotated[
    Path | None,
    typer.Option("--file", envvar="API_KEYS_FILE", help="Default: <data dir>/api-keys.yaml"),
]


@apikey_app.command("create")
def apikey_create(
    name: str,
    role: Annotated[str, typer.Option(help="operator or village")] = "operator",
    village: Annotated[str | None, typer.Option(help="The desa a village key serves")] = None,
    district: Annotated[
        str | None, typer.Option(help="Its kecamatan (required for a village key)")
    ] = None,
    file: KeysFile = None,
) -> None:
    """Create (or rotate) a key and print it once: only its SHA-256 hash is stored."""
    from lindung_registration.auth import ROLES, create_key

    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}", param_hint="--role")
    path = _keys_file(file)
    try:
        key = create_key(path, name, role, village=village, district=district)  # type: ignore[arg-type]
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    console.print(
        f"Key [bold]{name}[/] ({role}) stored hashed in {path}. Copy it now; it is not shown again:"
    )
    print(key)


@apikey_app.command("list")
def apikey_list(file: KeysFile = None) -> None:
    """The keys by name and role (never the keys themselves)."""
    from lindung_registration.auth import read_keys

    for key in read_keys(_keys_file(file)):
        scope = (
            f" {key.village}" + (f", {key.district}" if key.district else "") if key.village else ""
        )
        console.print(f"{key.name}\t{key.role}{scope}\tcreated {key.created_at}")


@apikey_app.command("revoke")
def apikey_revoke(name: str, file: KeysFile = None) -> None:
    """Remove a key; the service stops accepting it within seconds (no restart)."""
    from lindung_registration.auth import revoke_key

    if not revoke_key(_keys_file(file), name):
        console.print(f"No key named {name}")
        raise typer.Exit(1)
    console.print(f"Key {name} revoked")


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[str, typer.Argument(help="A topic (or its .dlq twin)")],
    limit: Annotated[int, typer.Option(help="Show at most this many, newest last")] = 50,
) -> None:
    """The dead letters of a topic: when, which service, why, and the start of the body."""
    from rich.table import Table

    from lindung_runtime.operations import dlq_name, list_dead_letters
    from lindung_runtime.privacy import mask_text

    async def run() -> list[Any]:
        async with _client() as client:
            return await list_dead_letters(client.bootstrap_servers, topic)

    letters = asyncio.run(run())
    table = Table(title=f"{dlq_name(topic)}: {len(letters):,} dead letter(s)")
    for column in ("partition/offset", "failed at", "service", "code", "error", "body"):
        table.add_column(column, overflow="fold")
    for letter in letters[-limit:]:
        record = letter.record
        body = record.value[:120].decode(errors="replace")
        table.add_row(
            f"{record.partition}/{record.offset}",
            letter.failed_at[:19],
            letter.service,
            letter.error_code,
            mask_text(letter.error[:200]),
            mask_text(body),
        )
    console.print(table)
    codes = Counter(letter.error_code for letter in letters)
    if codes:
        console.print("By code: " + ", ".join(f"{c} {n}" for c, n in codes.most_common()))


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="A topic (or its .dlq twin)")],
    code: Annotated[
        list[str] | None, typer.Option(help="Only dead letters with this error code (repeatable)")
    ] = None,
) -> None:
    """Re-drive dead letters onto their original topic after a fix (each one once: progress is
    kept by the consumer group lindung-dlq-replay.<topic>.dlq)."""
    from lindung_runtime.operations import replay_dead_letters

    async def run() -> tuple[int, int]:
        async with _client() as client:
            return await replay_dead_letters(
                client.bootstrap_servers, topic, error_codes=code or ()
            )

    replayed, skipped = asyncio.run(run())
    console.print(
        f"Replayed {replayed:,} dead letter(s)" + (f", skipped {skipped:,}" if skipped else "")
    )


@outbox_app.command("replay")
def outbox_replay(
    since: Annotated[
        datetime,
        typer.Option(
            formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"],
            help="UTC; every event written since then is published again",
        ),
    ],
    service_name: Annotated[
        list[ServiceName] | None, typer.Option("--service", help="Default: all four")
    ] = None,
) -> None:
    """Publish again what the services emitted since a moment (e.g. after the broker lost data).
    Consumers skip what they already processed, so replaying too much is harmless."""
    from sqlalchemy.exc import OperationalError

    from lindung_runtime.db import Database
    from lindung_runtime.operations import replay_outbox

    settings = LindungSettings()
    moment = since if since.tzinfo else since.replace(tzinfo=UTC)

    async def run() -> None:
        for name in service_name or list(ServiceName):
            database = Database(settings.database_url_for(name.value))
            try:
                count = await replay_outbox(database, moment.astimezone(UTC))
            except OperationalError as error:
                console.print(f"[red]{name.value}: no outbox to replay ({error.orig})[/]")
                continue
            finally:
                await database.dispose()
            console.print(f"{name.value}: {count:,} event(s) queued for publishing again")

    asyncio.run(run())


@app.command()
def migrate(
    service_name: Annotated[
        list[ServiceName] | None, typer.Argument(help="Default: all four", show_default=False)
    ] = None,
    revision: Annotated[str, typer.Option(help="Alembic revision")] = "head",
) -> None:
    """Bring each service's database to the latest schema (Alembic; DATABASE_URL or
    <SERVICE>_DATABASE_URL). Services also do this at start, unless
    DATABASE_MIGRATE_ON_START=false."""
    from lindung_runtime.migrations import upgrade
    from lindung_runtime.privacy import mask_text

    settings = LindungSettings()
    for name in service_name or list(ServiceName):
        url = settings.database_url_for(name.value)
        upgrade(name.value, url, revision)
        shown = url.split("@")[-1] if "@" in url else url  # never print a password
        console.print(f"{name.value}: migrated to {revision} ({mask_text(shown)})")
