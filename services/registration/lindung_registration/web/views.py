"""What each staff page shows, as plain data: the queries aggregate in SQL (a programme of
100,000 workers is never loaded row by row), and the pure functions below shape their rows.

Every query is filtered to what the caller's key may see with `ApiKey.covers`, on rows that are
already grouped per desa: a village key sees its own desa only, on every page.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from lindung_registration.api import FunnelCounts, ProgramSummary
from lindung_registration.auth import ApiKey
from lindung_registration.db import (
    ImportJob,
    KnownProgram,
    KnownTerm,
    PaymentRecord,
    RejectedRequest,
    TermLine,
    TimelineEntry,
    Worker,
    WorkerStatus,
)
from lindung_registration.domain import normalise_nik
from lindung_registration.web import format
from lindung_runtime import Service
from lindung_runtime.privacy import mask_nik

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
    lines: Iterable[tuple[int, str, str, str, int, int]],
    payments: Mapping[str, tuple[int, datetime | None]],
    key: ApiKey,
) -> list[InvoiceView]:
    """Invoices per term from term lines grouped by (term, invoice, kecamatan, desa, count,
    amount), as the key may see them: a village key sees its desa's part of each invoice. The
    paid amount is the invoice's (payments are per invoice, not per desa)."""
    found: dict[tuple[int, str], InvoiceView] = {}
    for term, invoice_id, district, village, workers, amount in lines:
        if not key.covers(village, district):
            continue
        view = found.setdefault((term, invoice_id), InvoiceView(term, invoice_id, 0, 0))
        view.workers += int(workers)
        view.amount_idr += int(amount)
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


def per_day(rows: Iterable[tuple[Any, str, str, int]], key: ApiKey) -> dict[date, int]:
    """(day, kecamatan, desa, count) rows, as the key may see them, summed per day."""
    days: dict[date, int] = defaultdict(int)
    for day, district, village, count in rows:
        if day is not None and key.covers(village, district):
            days[day if isinstance(day, date) else date.fromisoformat(str(day)[:10])] += int(count)
    return dict(days)


def month_lines(
    rows: Iterable[tuple[int, Any, int, str, str, int]], key: ApiKey
) -> list[tuple[int, date, int, int]]:
    """(term, first month, months, kecamatan, desa, monthly total) rows, as the key may see
    them, summed over desa: what `charts.month_series` draws."""
    found: dict[tuple[int, date, int], int] = defaultdict(int)
    for term, first, months, district, village, total in rows:
        if key.covers(village, district):
            start = first if isinstance(first, date) else date.fromisoformat(str(first)[:10])
            found[(int(term), start, int(months))] += int(total or 0)
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


async def invoices_of(service: Service, program_id: str, key: ApiKey) -> list[InvoiceView]:
    line, status = TermLine, WorkerStatus
    async with service.database.read_session() as session:
        lines = (
            await session.exec(
                select(  # type: ignore[call-overload]
                    line.term,
                    line.invoice_id,
                    status.district,
                    status.village,
                    func.count(),
                    func.sum(line.amount_idr),
                )
                .join(status, col(status.worker_id) == col(line.worker_id))
                .where(line.program_id == program_id)
                .group_by(line.term, line.invoice_id, status.district, status.village)
            )
        ).all()
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
    return invoices(lines, payments, key)


async def cost_per_month(
    service: Service, program_id: str, key: ApiKey
) -> list[tuple[int, date, int, int]]:
    line, status = TermLine, WorkerStatus
    async with service.database.read_session() as session:
        rows = (
            await session.exec(
                select(  # type: ignore[call-overload]
                    line.term,
                    line.first_month,
                    line.months,
                    status.district,
                    status.village,
                    func.sum(line.monthly_amount_idr),
                )
                .join(status, col(status.worker_id) == col(line.worker_id))
                .where(line.program_id == program_id)
                .group_by(line.term, line.first_month, line.months, status.district, status.village)
            )
        ).all()
    return month_lines(rows, key)


async def registrations_per_day(service: Service, program_id: str, key: ApiKey) -> dict[date, int]:
    day = func.date(Worker.registered_at)
    async with service.database.read_session() as session:
        rows = (
            await session.exec(
                select(day, Worker.district, Worker.village, func.count())  # type: ignore[call-overload]
                .where(Worker.program_id == program_id)
                .group_by(day, Worker.district, Worker.village)
            )
        ).all()
    return per_day(rows, key)


async def activations_per_day(service: Service, program_id: str, key: ApiKey) -> dict[date, int]:
    entry, status = TimelineEntry, WorkerStatus
    day = func.date(entry.occurred_at)
    async with service.database.read_session() as session:
        rows = (
            await session.exec(
                select(day, status.district, status.village, func.count())  # type: ignore[call-overload]
                .join(status, col(status.worker_id) == col(entry.worker_id))
                .where(entry.program_id == program_id, entry.kind == "coverage_activated")
                .group_by(day, status.district, status.village)
            )
        ).all()
    return per_day(rows, key)


async def latest_rejections(
    service: Service, program_id: str, key: ApiKey, limit: int = 20
) -> list[RejectionView]:
    """The newest refusals the key may see. Registration refusals carry their desa in
    `rejected_request`; eligibility refusals are their worker's."""
    entry = TimelineEntry
    found: list[RejectionView] = []
    scanned, page = 0, 500
    async with service.database.read_session() as session:
        while len(found) < limit:
            rows = (
                await session.exec(
                    select(  # type: ignore[call-overload]
                        entry.kind,
                        entry.occurred_at,
                        entry.nik,
                        entry.details,
                        func.coalesce(Worker.district, RejectedRequest.district),
                        func.coalesce(Worker.village, RejectedRequest.village),
                    )
                    .outerjoin(Worker, col(Worker.worker_id) == col(entry.worker_id))
                    .outerjoin(
                        RejectedRequest, col(RejectedRequest.event_id) == col(entry.event_id)
                    )
                    .where(entry.program_id == program_id, col(entry.kind).in_(REJECTION_KINDS))
                    .order_by(col(entry.occurred_at).desc(), col(entry.event_id))
                    .offset(scanned)
                    .limit(page)
                )
            ).all()
            for kind, at, nik, details, district, village in rows:
                if key.covers(village, district) and len(found) < limit:
                    found.append(rejection(kind, at, nik, json.loads(details), key))
            scanned += len(rows)
            # A village key's refusals may be few among many: scan a few pages, not the table.
            if len(rows) < page or scanned >= 5 * page:
                break
    return found


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
