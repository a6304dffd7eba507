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
    coverage_start: date
    coverage_end: date
    min_age: int
    max_age: int


class BusinessDay(Table, table=True):
    """The latest DayStarted seen: the only "today" eligibility knows."""

    __tablename__ = "business_day"

    id: int = Field(default=1, primary_key=True)
    today: date


class Decision(Table, table=True):
    __tablename__ = "decision"
    __table_args__ = (Index("ix_decision_nik_status", "nik", "status"),)

    worker_id: str = Field(primary_key=True, max_length=36)
    program_id: str = Field(max_length=64, index=True)
    nik: str = Field(max_length=16)
    status: str = Field(max_length=16, description="confirmed | rejected")
    coverage_start: date
    coverage_end: date
    reasons: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    decided_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


TABLES: list[type[SQLModel]] = [Program, BusinessDay, Decision]
