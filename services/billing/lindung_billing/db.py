"""Billing's own tables: programmes' terms, invoices and their lines, payments, alerts sent.

Rupiah columns are BIGINT (`sa_type=BigInteger`): one programme's invoice passes 2**31 - 1
(Rp 2.1 bn) at ~42,600 workers for three months, and every amount the contract allows must fit.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, Text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class Table(SQLModel, registry=registry()):
    """Base of this service's tables, with metadata of its own: services may share table names
    (each owns its database) and still be imported into one process (tests, the docs export)."""


class Program(Table, table=True):
    __tablename__ = "program"

    program_id: str = Field(primary_key=True, max_length=64)
    sponsor: str
    reported_income_idr: int = Field(sa_type=BigInteger)
    coverage_start: date
    coverage_end: date
    alert_days_before_end: str = Field(description="Comma-separated days, e.g. 30,14,7")

    @property
    def alert_days(self) -> list[int]:
        return [int(d) for d in self.alert_days_before_end.split(",") if d]


class ProgramTerm(Table, table=True):
    """Every term of a programme: its dates and contribution basis, and so its invoice."""

    __tablename__ = "program_term"

    program_id: str = Field(primary_key=True, max_length=64)
    term: int = Field(primary_key=True)
    term_start: date
    term_end: date
    reported_income_idr: int = Field(sa_type=BigInteger)
    closed_on: date | None = Field(
        default=None, description="The business day its workers' CoverageEnded went out"
    )


class Invoice(Table, table=True):
    """A programme term's bill. `total_idr` is the sum of its lines and `paid_idr` of its
    payments; both change only while the row is locked (`FOR UPDATE`, see handlers.py), so
    instances sharing the database take turns on one invoice instead of overwriting each other."""

    __tablename__ = "invoice"

    invoice_id: str = Field(primary_key=True, max_length=80)
    program_id: str = Field(max_length=64, index=True)
    term: int = 1
    total_idr: int = Field(default=0, sa_type=BigInteger)
    paid_idr: int = Field(default=0, sa_type=BigInteger)


class InvoiceLine(Table, table=True):
    """A worker's line for one term of its programme; `ended_at` is set when CoverageEnded is
    announced for it (the term ended and nobody renewed it, or the renewal did not carry the
    worker: `not_carried`)."""

    __tablename__ = "invoice_line"
    __table_args__ = (
        Index("ix_line_expiry", "program_id", "coverage_end", "activated_at"),
        Index("ix_line_not_carried", "not_carried", "ended_at"),
    )

    worker_id: str = Field(primary_key=True, max_length=36)
    term: int = Field(default=1, primary_key=True)
    invoice_id: str = Field(max_length=80, index=True)
    program_id: str = Field(max_length=64)
    nik: str = Field(max_length=16)
    full_name: str = ""
    village: str = ""
    district: str = ""
    coverage_start: date
    coverage_end: date
    periods: str = Field(sa_column=Column(Text, nullable=False))
    amount_idr: int = Field(sa_type=BigInteger)
    activated_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    ended_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    not_carried: str | None = Field(
        default=None,
        sa_column=Column(Text),
        description="A renewal did not carry the worker on: the reason (JSON), so the cover "
        "ends with this line's term",
    )


class Payment(Table, table=True):
    """A payment is counted once per (invoice, reference), however often it is announced."""

    __tablename__ = "payment"

    invoice_id: str = Field(primary_key=True, max_length=80)
    reference: str = Field(primary_key=True, max_length=200)
    amount_idr: int = Field(sa_type=BigInteger)
    paid_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ExpiryAlert(Table, table=True):
    __tablename__ = "expiry_alert"

    worker_id: str = Field(primary_key=True, max_length=36)
    coverage_end: date = Field(primary_key=True)
    days_left: int = Field(primary_key=True)


TABLES: list[type[SQLModel]] = [Program, ProgramTerm, Invoice, InvoiceLine, Payment, ExpiryAlert]
