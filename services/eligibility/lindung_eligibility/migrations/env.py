"""Alembic environment of the eligibility service (see lindung_runtime.migrations)."""

from lindung_eligibility.db import TABLES
from lindung_runtime.migrations import run_env

run_env(TABLES)
