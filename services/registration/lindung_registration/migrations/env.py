"""Alembic environment of the registration service (see lindung_runtime.migrations)."""

from lindung_registration.db import TABLES
from lindung_runtime.migrations import run_env

run_env(TABLES)
