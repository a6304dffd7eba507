"""Registration's own tables."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, DateTime, UniqueConstraint
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


TABLES: list[type[SQLModel]] = [Worker]
