"""Notification's own tables: programmes' staff, digests being gathered, and their workers."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, DateTime
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class Table(SQLModel, registry=registry()):
    """Base of this service's tables, with metadata of its own: services may share table names
    (each owns its database) and still be imported into one process (tests, the docs export)."""


class Program(Table, table=True):
    __tablename__ = "program"

    program_id: str = Field(primary_key=True, max_length=64)
    name: str
    sponsor: str
    staff_emails: str = Field(description="Comma-separated addresses")


class Digest(Table, table=True):
    """One programme's alert window (workers whose cover is expiring) or ending (workers whose
    cover ended unrenewed); `sent_at` is set in the same transaction as DigestSent.

    A dispatcher leases the digest (committed) before talking SMTP and clears the lease when it
    records the outcome: a lease that ran out with `sent_at` still empty is a send that may have
    been delivered; the resend carries the same Message-ID (mailer.py). Leased, a digest takes no
    more workers: those alerted later go to a follow-up, `<window>#2`, `#3`, ... (handlers.py)."""

    __tablename__ = "digest"

    digest_id: str = Field(primary_key=True, max_length=120)
    program_id: str = Field(max_length=64)
    coverage_end: date
    days_left: int = Field(description="Days from the alert to coverage_end; 0 for an ending")
    kind: str = Field(
        default="expiring",
        max_length=16,
        sa_column_kwargs={"server_default": "expiring"},
        description="`expiring` or `ended` (domain.DigestKind): which mail it is",
    )
    renewed_until: date | None = Field(
        default=None,
        description="Expiring: the end of the next term when a renewal is published already",
    )
    expected_size: int = 0
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    sent_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), index=True)
    )
    send_attempts: int = 0
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    last_error: str | None = None
    failed_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True)),
        description="Set when the digest can never be sent (see last_error): not retried",
    )
    lease_until: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True)),
        description="A dispatcher is sending it until then (lindung_runtime.lease)",
    )
    lease_owner: str | None = Field(default=None, max_length=32)


class DigestEntry(Table, table=True):
    __tablename__ = "digest_entry"

    digest_id: str = Field(primary_key=True, max_length=120)
    worker_id: str = Field(primary_key=True, max_length=36)
    nik: str = Field(max_length=16)
    full_name: str = ""
    village: str = ""
    district: str = ""


TABLES: list[type[SQLModel]] = [Program, Digest, DigestEntry]
