"""Alembic environment of the notification service (see lindung_runtime.migrations)."""

from lindung_notification.db import TABLES
from lindung_runtime.migrations import run_env

run_env(TABLES)
