"""Alembic environment of the billing service (see lindung_runtime.migrations)."""

from lindung_billing.db import TABLES
from lindung_runtime.migrations import run_env

run_env(TABLES)
