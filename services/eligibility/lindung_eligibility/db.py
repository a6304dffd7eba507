"""Eligibility's own tables: the programmes it has seen, the business date, its decisions."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, DateTime, Index, Text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class Table(SQLModel, registry=registry()):
    """Base of this service's tables, with metadata of its own: services may share table names
    (each owns its database) and still be imported into one process (tests, the docs export)."""


class Program(Table, table=True):
    __tablename__ = "program"

    program_id: str = Field(primary_key=True, max_length=64)
    region_codes: str = Field(description="Comma-separated Kemendagri codes")
    quota: int
    confirmed_count: int = Field(
        default=0, description="Seats taken; moved under the row lock (handlers.py)"
    )
    coverage_start: date = Field(description="The current term's first day")
    coverage_end: date = Field(description="The current term's last day")
    min_age: int
    max_age: int
    term: int = Field(default=1, description="The current term: 1, then one more per renewal")
    policy: str = Field(default="next_month", max_length=16)
    registration_deadline: date | None = None


class ProgramTerm(Table, table=True):
    """Every term of a programme, to number renewals and recognise a repeated one."""

    __tablename__ = "program_term"

    program_id: str = Field(primary_key=True, max_length=64)
    term: int = Field(primary_key=True)
    term_start: date
    term_end: date
    quota: int


class BusinessDay(Table, table=True):
    """The latest DayStarted seen: the only "today" eligibility knows."""

    __tablename__ = "business_day"

    id: int = Field(default=1, primary_key=True)
    today: date


class Decision(Table, table=True):
    """A worker's decision for one term of its programme: at registration, then at each renewal
    (carried or not). The worker's details are kept for the renewals' checks and events."""

    __tablename__ = "decision"
    __table_args__ = (
        Index("ix_decision_nik_status", "nik", "status"),
        Index("ix_decision_program_term", "program_id", "term", "status"),
    )

    worker_id: str = Field(primary_key=True, max_length=36)
    term: int = Field(default=1, primary_key=True)
    program_id: str = Field(max_length=64, index=True)
    nik: str = Field(max_length=16)
    status: str = Field(max_length=16, description="confirmed | rejected")
    coverage_start: date
    coverage_end: date
    reasons: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    decided_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    birth_date: date | None = None
    gender: str = Field(default="", max_length=1)
    full_name: str = ""
    village: str = ""
    district: str = ""
    registered_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


TABLES: list[type[SQLModel]] = [Program, ProgramTerm, BusinessDay, Decision]
