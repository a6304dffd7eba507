"""Registration's own tables."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, Text, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class Table(SQLModel, registry=registry()):
    """Base of this service's tables, with metadata of its own: services may share table names
    (each owns its database) and still be imported into one process (tests, the docs export)."""


class Worker(Table, table=True):
    """A registered worker: one row per (programme, NIK), which is what makes intake idempotent."""

    __tablename__ = "worker"
    __table_args__ = (UniqueConstraint("program_id", "nik"),)

    worker_id: str = Field(primary_key=True, max_length=36)
    program_id: str = Field(max_length=64, index=True)
    nik: str = Field(max_length=16, index=True)
    full_name: str
    birth_date: date
    gender: str = Field(max_length=1)
    occupation: str = ""
    village: str
    district: str
    phone: str | None = None
    registered_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class TimelineEntry(Table, table=True):
    """One event in a worker's enrolment history, as the services announced it (a projection of
    their events: registration never reads another service's tables)."""

    __tablename__ = "timeline_entry"
    __table_args__ = (
        Index("ix_timeline_nik_time", "nik", "occurred_at"),
        # The staff page: a programme's latest rejections, its activations per day.
        Index("ix_timeline_program_kind_time", "program_id", "kind", "occurred_at"),
    )

    event_id: str = Field(primary_key=True, max_length=200)
    kind: str = Field(max_length=40)
    nik: str = Field(max_length=64)
    program_id: str = Field(max_length=64)
    worker_id: str | None = Field(default=None, max_length=36)
    invoice_id: str | None = Field(default=None, max_length=100, index=True)
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    trace_id: str | None = Field(default=None, max_length=32)
    details: str = Field(sa_column=Column(Text, nullable=False))  # JSON


class PaymentRecord(Table, table=True):
    """A sponsor's payment of an invoice: it belongs to the timeline of every worker on it."""

    __tablename__ = "payment_record"

    event_id: str = Field(primary_key=True, max_length=200)
    invoice_id: str = Field(max_length=100, index=True)
    amount_idr: int = Field(sa_type=BigInteger)  # Rupiah: a payment may pass 2**31
    paid_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    announced_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    reference: str = Field(max_length=200)
    trace_id: str | None = Field(default=None, max_length=32)


class WorkerStatus(Table, table=True):
    """Where each worker stands in the funnel, for the programme summary (one row per worker,
    filled in by whichever event arrives first: topics are consumed independently)."""

    __tablename__ = "worker_status"
    __table_args__ = (Index("ix_worker_status_program_place", "program_id", "district", "village"),)

    worker_id: str = Field(primary_key=True, max_length=36)
    program_id: str = Field(max_length=64)
    nik: str = Field(max_length=16, index=True)
    village: str = ""
    district: str = ""
    registered: bool = False
    eligibility: str = Field(default="", max_length=12)  # "", "confirmed", "rejected"
    ineligible_reasons: str = ""  # comma-separated codes
    invoice_id: str | None = Field(default=None, max_length=100)
    invoiced_idr: int = Field(default=0, sa_type=BigInteger)  # Rupiah, BIGINT like every amount
    activated: bool = False
    expiry_alerts: int = 0
    # term * 10 + stage of the worker's latest coverage event, only ever raised (domain.STAGES):
    # 0 until one arrives. Its status and term are read back with domain.coverage_status.
    coverage_rank: int = 0


class RejectedRequest(Table, table=True):
    """A registration request refused for its data (counted per desa in the summary)."""

    __tablename__ = "rejected_request"
    __table_args__ = (Index("ix_rejected_program_place", "program_id", "district", "village"),)

    event_id: str = Field(primary_key=True, max_length=200)
    program_id: str = Field(max_length=64)
    village: str = ""
    district: str = ""


class ImportJob(Table, table=True):
    """An uploaded spreadsheet and how far its processing got (resumed after a restart)."""

    __tablename__ = "import_job"

    import_id: str = Field(primary_key=True, max_length=32)
    program_id: str = Field(max_length=64, index=True)
    filename: str = Field(max_length=255)
    file_format: str = Field(max_length=8)  # csv | xlsx
    status: str = Field(default="queued", max_length=12)  # queued, running, done, failed
    submitted_by: str = Field(max_length=100)
    village_scope: str | None = None  # a village key may import only its own desa's rows
    district_scope: str | None = None
    rows_total: int | None = None  # counted before processing starts (for progress bars)
    lease_until: datetime | None = Field(  # the instance processing it, until then
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    lease_owner: str | None = Field(default=None, max_length=32)  # that instance (lease.py)
    attempts: int = 0  # times claimed: an import that keeps killing its process is given up
    rows_done: int = 0
    registered: int = 0
    repeated: int = 0
    rejected: int = 0
    error: str | None = None
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class ImportRow(Table, table=True):
    """The outcome of one row of an import; rejected rows keep their values for errors.csv."""

    __tablename__ = "import_row"

    import_id: str = Field(primary_key=True, max_length=32)
    row_number: int = Field(primary_key=True)
    status: str = Field(max_length=12)  # registered, repeated, rejected
    worker_id: str | None = Field(default=None, max_length=36)
    errors: str | None = Field(default=None, sa_column=Column(Text))  # JSON list of FieldError
    values: str | None = Field(default=None, sa_column=Column(Text))  # JSON, rejected rows only


class KnownProgram(Table, table=True):
    """A programme the operator has published: registration accepts workers only for these."""

    __tablename__ = "known_program"

    program_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    sponsor: str = Field(max_length=200)
    coverage_start: date
    coverage_end: date
    published_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class KnownTerm(Table, table=True):
    """A programme's PKS terms, numbered as every service numbers them (`renewal_outcome`):
    term 1 as published (`program.published`), then each renewal accepted (`program.renewed`)."""

    __tablename__ = "known_term"

    program_id: str = Field(primary_key=True, max_length=64)
    term: int = Field(primary_key=True)
    term_start: date
    term_end: date
    quota: int | None = None  # seats; None for a programme known before terms were kept
    renewed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class WorkerTerm(Table, table=True):
    """A worker confirmed for a term of the programme (their `eligibility.confirmed` of it: a
    new decision, or a renewal's carry), with the cover it plans: whom the handover to BPJS
    Ketenagakerjaan lists for that term."""

    __tablename__ = "worker_term"
    __table_args__ = (Index("ix_worker_term_program_term", "program_id", "term"),)

    worker_id: str = Field(primary_key=True, max_length=36)
    term: int = Field(primary_key=True)
    program_id: str = Field(max_length=64)
    coverage_start: date
    coverage_end: date


class MembershipNumber(Table, table=True):
    """A worker's BPJS Ketenagakerjaan membership number (nomor KPJ), once the branch issued it
    (`membership.number-assigned`, or an uploaded NIK → KPJ spreadsheet). Never changed: another
    number for the worker, or this number for another worker, is refused (`kpj_conflict`)."""

    __tablename__ = "membership_number"
    __table_args__ = (UniqueConstraint("program_id", "kpj"),)

    worker_id: str = Field(primary_key=True, max_length=36)
    program_id: str = Field(max_length=64)
    nik: str = Field(max_length=16, index=True)
    kpj: str = Field(max_length=11, index=True)
    assigned_on: date
    reference: str = Field(default="", max_length=200)
    event_id: str = Field(max_length=200)  # the MembershipNumberAssigned it came with
    recorded_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class TermLine(Table, table=True):
    """One worker's line on the sponsor's invoice for one term (`contribution.invoiced`), in
    columns: the staff page adds up invoices and cost per month in SQL, without reading the
    timeline's JSON. A later invoice of the same worker and term replaces the line."""

    __tablename__ = "term_line"
    __table_args__ = (Index("ix_term_line_program_term", "program_id", "term"),)

    worker_id: str = Field(primary_key=True, max_length=36)
    term: int = Field(primary_key=True)
    program_id: str = Field(max_length=64)
    invoice_id: str = Field(max_length=100, index=True)
    first_month: date  # the 1st day of the first period invoiced
    months: int  # periods invoiced
    monthly_amount_idr: int = Field(sa_type=BigInteger)  # Rupiah
    amount_idr: int = Field(sa_type=BigInteger)


class WebSession(Table, table=True):
    """A staff member logged in to the web page. Kept on the server, not in a signed cookie:
    logging out, or revoking the API key it logged in with, ends it at once, on every instance
    sharing the database. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "web_session"

    session_hash: str = Field(primary_key=True, max_length=64)  # SHA-256 hex of the token
    key_sha256: str = Field(max_length=64, index=True)  # the API key's (auth.ApiKey.sha256)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    seen_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


TABLES: list[type[SQLModel]] = [
    Worker,
    TimelineEntry,
    PaymentRecord,
    WorkerStatus,
    RejectedRequest,
    ImportJob,
    ImportRow,
    KnownProgram,
    KnownTerm,
    WorkerTerm,
    MembershipNumber,
    TermLine,
    WebSession,
]
