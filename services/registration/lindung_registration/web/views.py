"""What each staff page shows, as plain data: the queries aggregate in SQL (a programme of
100,000 workers is never loaded row by row), and the pure functions below shape their rows.

Every query is filtered to what the caller's key may see with `ApiKey.covers`, on rows that are
already grouped per desa: a village key sees its own desa only, on every page.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, false, func, or_
from sqlmodel import col, select

from lindung_registration.api import FunnelCounts, ProgramSummary
from lindung_registration.auth import ApiKey
from lindung_registration.db import (
    ImportJob,
    KnownProgram,
    KnownTerm,
    MembershipNumber,
    PaymentRecord,
    RejectedRequest,
    TermLine,
    TimelineEntry,
    Worker,
    WorkerStatus,
)
from lindung_registration.domain import coverage_status, normalise_nik
from lindung_registration.handover import streamed_pages
from lindung_registration.web import format
from lindung_runtime import Service
from lindung_runtime.privacy import mask_nik
from lindung_runtime.spreadsheets import csv_text

#: The funnel as staff read it, in order; `rejected` and `ended` stand beside it.
FUNNEL: tuple[tuple[str, str], ...] = (
    ("registered", "Terdaftar"),
    ("confirmed", "Layak"),
    ("invoiced", "Ditagih"),
    ("paid", "Dibayar"),
    ("active", "Aktif"),
)
BESIDE: tuple[tuple[str, str], ...] = (("rejected", "Ditolak"), ("ended", "Berakhir"))
STATUS_NAMES = {
    "awaiting_payment": "Menunggu pembayaran",
    "active": "Aktif",
    "carried": "Diperpanjang",
    "not_carried": "Tidak diperpanjang",
    "ended": "Berakhir",
}
KIND_NAMES = {
    "registered": "Terdaftar",
    "registration_rejected": "Pendaftaran ditolak",
    "eligibility_confirmed": "Dinyatakan layak",
    "eligibility_rejected": "Dinyatakan tidak layak",
    "invoiced": "Ditagihkan",
    "payment_received": "Pembayaran diterima",
    "coverage_activated": "Kepesertaan aktif",
    "coverage_expiring": "Peringatan: kepesertaan segera berakhir",
    "coverage_ended": "Kepesertaan berakhir",
    "membership_number_assigned": "Nomor KPJ diterima",
}
REJECTION_KINDS = ("registration_rejected", "eligibility_rejected")


def indonesian(message: str) -> str:
    """The Indonesian half of a bilingual "Bahasa Indonesia / English" message."""
    return message.split(" / ", 1)[0].strip()


def show_nik(nik: str, key: ApiKey) -> str:
    """Full NIKs for operators; a village key sees them masked (region and serial only)."""
    return nik if key.role == "operator" else mask_nik(nik)


# --- pure shaping -------------------------------------------------------------------------------


def funnel_counts(counts: FunnelCounts) -> dict[str, int]:
    """The page's funnel from the summary's counts: rejected adds requests refused for their data
    and workers found ineligible."""
    return {
        "registered": counts.registered,
        "confirmed": counts.confirmed,
        "invoiced": counts.invoiced,
        "paid": counts.paid,
        "active": counts.active,
        "rejected": counts.requests_rejected + counts.ineligible,
        "ended": counts.ended + counts.not_carried,
    }


@dataclass(frozen=True)
class TermView:
    term: int
    start: date
    end: date
    quota: int | None


@dataclass(frozen=True)
class ProgrammeCard:
    program_id: str
    name: str
    sponsor: str
    current: TermView  # the term today falls in, else the latest that started, else the first
    last: TermView
    days_left: int  # until the last known term's cover ends (negative: ended that long ago)
    renewal: TermView | None  # a term after the current one, once published
    funnel: dict[str, int]


def programme_card(
    program: KnownProgram, terms: Sequence[TermView], counts: FunnelCounts, today: date
) -> ProgrammeCard:
    ordered = sorted(terms, key=lambda t: t.term) or [
        TermView(1, program.coverage_start, program.coverage_end, None)
    ]
    started = [t for t in ordered if t.start <= today]
    current = next((t for t in ordered if t.start <= today <= t.end), None) or (
        started[-1] if started else ordered[0]
    )
    later = [t for t in ordered if t.term > current.term]
    return ProgrammeCard(
        program_id=program.program_id,
        name=program.name,
        sponsor=program.sponsor,
        current=current,
        last=ordered[-1],
        days_left=(ordered[-1].end - today).days,
        renewal=later[0] if later else None,
        funnel=funnel_counts(counts),
    )


@dataclass
class InvoiceView:
    term: int
    invoice_id: str
    workers: int
    amount_idr: int
    paid_idr: int = 0
    paid_at: datetime | None = None

    @property
    def state(self) -> str:
        if self.paid_idr <= 0:
            return "Belum dibayar"
        return "Lunas" if self.paid_idr >= self.amount_idr else "Dibayar sebagian"


def invoices(
    lines: Iterable[tuple[int, str, int, int]],
    payments: Mapping[str, tuple[int, datetime | None]],
) -> list[InvoiceView]:
    """Invoices per term from term lines grouped by (term, invoice): count and amount, within
    the caller's places (a village key sees its desa's part of each invoice). The paid amount is
    the invoice's: payments are per invoice, not per desa."""
    found: dict[tuple[int, str], InvoiceView] = {}
    for term, invoice_id, workers, amount in lines:
        view = found.setdefault((int(term), invoice_id), InvoiceView(int(term), invoice_id, 0, 0))
        view.workers += int(workers)
        view.amount_idr += int(amount or 0)
    for view in found.values():
        view.paid_idr, view.paid_at = payments.get(view.invoice_id, (0, None))
    return [found[k] for k in sorted(found)]


@dataclass(frozen=True)
class RejectionView:
    occurred_at: datetime
    nik: str
    kind: str
    reasons: list[tuple[str, str]]  # (code, Indonesian message)


def rejection(
    kind: str, occurred_at: datetime, nik: str, details: Mapping[str, Any], key: ApiKey
) -> RejectionView:
    """One refusal as the page lists it: registration's field errors or eligibility's reasons,
    each with its code and Indonesian message."""
    items = details.get("errors") if kind == "registration_rejected" else details.get("reasons")
    reasons = [
        (str(item.get("code", "")), indonesian(str(item.get("message", ""))))
        for item in items or []
    ]
    return RejectionView(occurred_at, show_nik(nik, key) if nik else "", kind, reasons)


@dataclass
class TermHistory:
    term: int
    coverage_start: str | None = None
    coverage_end: str | None = None
    steps: list[str] = field(default_factory=list)
    status: str = ""


TERM_STEPS = {
    "eligibility_confirmed": ("Layak", ""),
    "eligibility_rejected": ("Tidak layak", "not_carried"),
    "invoiced": ("Ditagih", "awaiting_payment"),
    "coverage_activated": ("Aktif", "active"),
    "coverage_ended": ("Berakhir", "ended"),
}


def term_history(entries: Iterable[tuple[str, Mapping[str, Any]]]) -> list[TermHistory]:
    """A worker's coverage per term from their timeline entries (kind, details), in time order:
    what happened in each term and where it stands."""
    terms: dict[int, TermHistory] = {}
    order = ["", "not_carried", "awaiting_payment", "active", "ended"]
    for kind, details in entries:
        if kind not in TERM_STEPS:
            continue
        term = int(details.get("term") or 1)
        history = terms.setdefault(term, TermHistory(term))
        step, status = TERM_STEPS[kind]
        if kind == "eligibility_confirmed" and details.get("carried"):
            step, status = "Diperpanjang", "carried"
        if kind == "eligibility_rejected" and not details.get("carried"):
            status = ""  # a decision on registration, not the term's cover
        if step not in history.steps:
            history.steps.append(step)
        history.coverage_start = history.coverage_start or details.get("coverage_start")
        history.coverage_end = history.coverage_end or details.get("coverage_end")
        rank = order.index(status) if status in order else 0
        if status == "carried" and not history.status:
            history.status = "carried"
        elif rank > (order.index(history.status) if history.status in order else 0):
            history.status = status
    return [terms[t] for t in sorted(terms)]


def _as_date(value: Any) -> date:
    """A day as the database hands it back: a date (PostgreSQL) or ISO text (SQLite)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def per_day(rows: Iterable[tuple[Any, int]]) -> dict[date, int]:
    """(day, count) rows, summed per day (a day may come in several rows)."""
    days: dict[date, int] = defaultdict(int)
    for day, count in rows:
        if day is not None:
            days[_as_date(day)] += int(count)
    return dict(days)


def month_lines(rows: Iterable[tuple[int, Any, int, int]]) -> list[tuple[int, date, int, int]]:
    """(term, first month, months, monthly total) rows, summed per (term, first month, months):
    what `charts.month_series` draws."""
    found: dict[tuple[int, date, int], int] = defaultdict(int)
    for term, first, months, total in rows:
        found[(int(term), _as_date(first), int(months))] += int(total or 0)
    return [(*k, v) for k, v in sorted(found.items())]


def describe_days(what: str, days: Mapping[date, int]) -> str:
    """A chart's text for screen readers: the total, the span and the busiest day."""
    if not days:
        return f"Belum ada peserta {what}."
    first, last = min(days), max(days)
    busiest = max(sorted(days), key=lambda d: days[d])
    return (
        f"{format.angka(sum(days.values()))} peserta {what} dari {format.tanggal(first)} "
        f"sampai {format.tanggal(last)}; terbanyak {format.angka(days[busiest])} pada "
        f"{format.tanggal(busiest)}."
    )


# --- queries --------------------------------------------------------------------------------------


async def terms_of(service: Service, program_ids: Iterable[str]) -> dict[str, list[TermView]]:
    wanted = list(program_ids)
    async with service.database.read_session() as session:
        rows = (
            await session.exec(select(KnownTerm).where(col(KnownTerm.program_id).in_(wanted)))
        ).all()
    found: dict[str, list[TermView]] = defaultdict(list)
    for row in rows:
        found[row.program_id].append(TermView(row.term, row.term_start, row.term_end, row.quota))
    return found


async def programmes(service: Service) -> list[KnownProgram]:
    async with service.database.read_session() as session:
        return list(
            (
                await session.exec(select(KnownProgram).order_by(col(KnownProgram.published_at)))
            ).all()
        )


#: The (kecamatan, desa) pairs a caller may see, exactly as stored, or None for every one (an
#: operator): taken from the summary, which judged each pair with `ApiKey.covers`. Queries
#: filter on them in SQL (the worker_status (program, kecamatan, desa) index), so a village
#: key's page reads its desa's rows only, and an operator's reads no place at all.
Places = list[tuple[str, str]] | None


def places_of(summary: ProgramSummary, key: ApiKey) -> Places:
    if key.role == "operator":
        return None
    return [(v.district, v.village) for v in summary.by_village]


def _in_places(table: Any, places: list[tuple[str, str]]) -> Any:
    """`table`'s row is of one of `places` (its `district` and `village` columns)."""
    return or_(
        false(),
        *(and_(col(table.district) == d, col(table.village) == v) for d, v in places),
    )


def _within(statement: Any, worker_id: Any, places: Places) -> Any:
    """`statement` limited to workers of `places` (joined to their funnel row for the place)."""
    if places is None:
        return statement
    status = WorkerStatus
    return statement.join(status, col(status.worker_id) == worker_id).where(
        _in_places(status, places)
    )


async def invoices_of(service: Service, program_id: str, places: Places) -> list[InvoiceView]:
    line = TermLine
    query = select(  # type: ignore[call-overload]
        line.term, line.invoice_id, func.count(), func.sum(line.amount_idr)
    ).where(line.program_id == program_id)
    query = _within(query, col(line.worker_id), places).group_by(line.term, line.invoice_id)
    async with service.database.read_session() as session:
        lines = (await session.exec(query)).all()
        ids = sorted({row[1] for row in lines})
        paid = (
            (
                await session.exec(
                    select(  # type: ignore[call-overload]
                        PaymentRecord.invoice_id,
                        func.sum(PaymentRecord.amount_idr),
                        func.max(PaymentRecord.paid_at),
                    )
                    .where(col(PaymentRecord.invoice_id).in_(ids))
                    .group_by(PaymentRecord.invoice_id)
                )
            ).all()
            if ids
            else []
        )
    payments = {invoice: (int(amount or 0), at) for invoice, amount, at in paid}
    return invoices(lines, payments)


async def cost_per_month(
    service: Service, program_id: str, places: Places
) -> list[tuple[int, date, int, int]]:
    line = TermLine
    query = select(  # type: ignore[call-overload]
        line.term, line.first_month, line.months, func.sum(line.monthly_amount_idr)
    ).where(line.program_id == program_id)
    query = _within(query, col(line.worker_id), places).group_by(
        line.term, line.first_month, line.months
    )
    async with service.database.read_session() as session:
        return month_lines((await session.exec(query)).all())


async def registrations_per_day(
    service: Service, program_id: str, places: Places
) -> dict[date, int]:
    day = func.date(Worker.registered_at)
    query = select(day, func.count()).where(Worker.program_id == program_id)  # type: ignore[call-overload]
    if places is not None:
        query = query.where(_in_places(Worker, places))
    async with service.database.read_session() as session:
        return per_day((await session.exec(query.group_by(day))).all())


async def activations_per_day(service: Service, program_id: str, places: Places) -> dict[date, int]:
    entry = TimelineEntry
    day = func.date(entry.occurred_at)
    query = select(day, func.count()).where(  # type: ignore[call-overload]
        entry.program_id == program_id, entry.kind == "coverage_activated"
    )
    if places is not None:
        # By the NIKs of the desa's funnel rows: the timeline's index is by NIK, so the
        # database reads the desa's entries only, not the programme's.
        status = WorkerStatus
        in_places = select(status.nik).where(
            status.program_id == program_id, _in_places(status, places)
        )
        query = query.where(col(entry.nik).in_(in_places))
    query = query.group_by(day)
    async with service.database.read_session() as session:
        return per_day((await session.exec(query)).all())


async def latest_rejections(
    service: Service, program_id: str, key: ApiKey, places: Places, limit: int = 20
) -> list[RejectionView]:
    """The newest refusals within `places`. A registration refusal's desa is in
    `rejected_request`; an eligibility refusal's is its worker's."""
    entry = TimelineEntry
    query = (
        select(entry.kind, entry.occurred_at, entry.nik, entry.details)  # type: ignore[call-overload]
        .where(entry.program_id == program_id, col(entry.kind).in_(REJECTION_KINDS))
        .order_by(col(entry.occurred_at).desc(), col(entry.event_id))
        .limit(limit)
    )
    if places is not None:
        query = (
            query.outerjoin(Worker, col(Worker.worker_id) == col(entry.worker_id))
            .outerjoin(RejectedRequest, col(RejectedRequest.event_id) == col(entry.event_id))
            .where(or_(_in_places(Worker, places), _in_places(RejectedRequest, places)))
        )
    async with service.database.read_session() as session:
        rows = (await session.exec(query)).all()
    return [rejection(kind, at, nik, json.loads(details), key) for kind, at, nik, details in rows]


async def imports_of(
    service: Service, program_id: str, key: ApiKey, limit: int = 10
) -> list[ImportJob]:
    """The newest imports of the programme: every one for an operator, a key's own else."""
    query = select(ImportJob).where(ImportJob.program_id == program_id)
    if key.role != "operator":
        query = query.where(ImportJob.submitted_by == key.name)
    async with service.database.read_session() as session:
        return list(
            (
                await session.exec(query.order_by(col(ImportJob.created_at).desc()).limit(limit))
            ).all()
        )


VILLAGE_COLUMNS = [
    "NIK",
    "NAMA_LENGKAP",
    "JENIS_KELAMIN",
    "PEKERJAAN",
    "DESA",
    "KECAMATAN",
    "STATUS",
    "NOMOR_KPJ",
]


def status_text(rank: int | None) -> str:
    found = coverage_status(rank or 0)
    if found is None:
        return "Terdaftar"
    name, term = found
    return f"{STATUS_NAMES[name]} (masa {term})"


async def village_csv(
    service: Service, program_id: str, district: str, village: str, key: ApiKey
) -> AsyncIterator[str]:
    """The workers of one desa (its exact names, as the per-desa table links them), for the
    village office: a page of rows at a time, NIKs masked for a village key."""
    query = (
        select(  # type: ignore[call-overload]
            Worker.nik,
            Worker.full_name,
            Worker.gender,
            Worker.occupation,
            Worker.village,
            Worker.district,
            WorkerStatus.coverage_rank,
            MembershipNumber.kpj,
        )
        .outerjoin(WorkerStatus, col(WorkerStatus.worker_id) == col(Worker.worker_id))
        .outerjoin(MembershipNumber, col(MembershipNumber.worker_id) == col(Worker.worker_id))
        .where(
            Worker.program_id == program_id,
            Worker.district == district,
            Worker.village == village,
        )
        .order_by(col(Worker.full_name), col(Worker.worker_id))
    )
    yield csv_text([VILLAGE_COLUMNS])
    async for rows in streamed_pages(service, query):
        yield csv_text(
            [
                show_nik(nik, key),
                name,
                gender,
                occupation,
                desa,
                kecamatan,
                status_text(rank),
                kpj or "",
            ]
            for nik, name, gender, occupation, desa, kecamatan, rank, kpj in rows
        )


@dataclass(frozen=True)
class Found:
    worker_id: str
    program_id: str
    nik: str
    full_name: str
    village: str
    district: str


async def search(service: Service, query: str, key: ApiKey, limit: int = 50) -> list[Found]:
    """Workers by NIK (exact, any separators) or by a part of their name, within the key's
    scope."""
    text = query.strip()[:100]
    if not text:
        return []
    nik = normalise_nik(text) if any(c.isdigit() for c in text) else None
    statement = select(Worker)
    if isinstance(nik, str):
        statement = statement.where(Worker.nik == nik)
    else:
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(func.lower(Worker.full_name).like(pattern + "%", escape="\\"))
    found: list[Found] = []
    async with service.database.read_session() as session:
        rows = (
            await session.exec(
                statement.order_by(col(Worker.full_name), col(Worker.worker_id)).limit(2000)
            )
        ).all()
    for w in rows:
        if key.covers(w.village, w.district) and len(found) < limit:
            found.append(
                Found(
                    w.worker_id,
                    w.program_id,
                    show_nik(w.nik, key),
                    w.full_name,
                    w.village,
                    w.district,
                )
            )
    return found


def scoped_summary(summary: ProgramSummary) -> dict[str, list[Any]]:
    """The per-kecamatan table: each kecamatan's total, then its desa."""
    villages: dict[str, list[Any]] = defaultdict(list)
    for village in summary.by_village:
        villages[village.district].append(village)
    return villages
