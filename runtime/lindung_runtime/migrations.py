"""Alembic migrations, one history per service, in `lindung_<service>/migrations/`.

Each service's `migrations/env.py` is two lines that call `run_env` with its tables; the history
covers the service's own tables and the runtime's outbox and inbox. Run them with
`lindung migrate` (a Kubernetes Job, a deploy step) or at start-up (`DATABASE_MIGRATE_ON_START`,
the default, convenient on a laptop). On SQLite, changes are rendered as batch operations
(copy-and-move), since SQLite's ALTER TABLE is limited.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alembic import command, context, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.types import TypeEngine
from sqlmodel import SQLModel

from lindung_runtime.outbox import RUNTIME_TABLES

VERSION_TABLE = "alembic_version"
MIGRATION_LOCK_KEY = 0x4C494E44  # "LIND": one advisory lock per database


def metadata_of(tables: Sequence[type[SQLModel]]) -> list[MetaData]:
    """The MetaData objects holding a service's tables and the runtime's (each service's tables
    have a registry of their own)."""
    found: list[MetaData] = []
    for table in [*tables, *RUNTIME_TABLES]:
        if table.metadata not in found:
            found.append(table.metadata)
    return found


def migrations_dir(service: str) -> Path | None:
    try:
        module = importlib.import_module(f"lindung_{service}")
    except ImportError:
        return None
    location = Path(next(iter(module.__path__))) / "migrations"
    return location if (location / "env.py").exists() else None


def has_migrations(service: str) -> bool:
    return migrations_dir(service) is not None


def config_for(service: str, database_url: str) -> Config:
    location = migrations_dir(service)
    if location is None:
        raise ValueError(f"no migrations for {service!r}")
    config = Config()
    config.set_main_option("path_separator", "os")
    config.set_main_option("script_location", str(location))
    config.set_main_option("version_locations", str(location / "versions"))
    config.attributes["database_url"] = database_url
    config.attributes["service"] = service
    return config


_ONE_AT_A_TIME = threading.Lock()


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    """Bring the service's database to `revision` (blocking: run it in a thread from async).

    Alembic keeps the running migration in module-level state (`alembic.context`), so two
    services migrating at once in one process (tests, `lindung migrate`) would trample each
    other: they take turns.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)  # a fresh data directory
    with _ONE_AT_A_TIME:
        command.upgrade(config_for(service, database_url), revision)


async def upgrade_async(service: str, database_url: str) -> None:
    await asyncio.to_thread(upgrade, service, database_url)


def run_env(tables: Sequence[type[SQLModel]]) -> None:
    """The body of every service's env.py."""
    metadata = metadata_of(tables)
    own = {name for m in metadata for name in m.tables}
    url = str(
        context.config.attributes.get("database_url")
        or context.config.get_main_option("sqlalchemy.url")
    )
    options: dict[str, Any] = {
        "target_metadata": metadata,
        "render_as_batch": True,  # SQLite's ALTER TABLE cannot do most changes in place
        "compare_type": True,
        "include_name": lambda name, type_, _: type_ != "table" or name in own,
    }
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Pods starting together run their migrations one after another, not into each other.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool, hide_parameters=True)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(migrate)
                await connection.commit()
        finally:
            await engine.dispose()

    connection = context.config.attributes.get("connection")
    if connection is not None:
        migrate(connection)
    else:
        asyncio.run(run())


def differences(connection: Connection, tables: Sequence[type[SQLModel]]) -> list[Any]:
    """What the models have that the migrated database has not (empty when in step)."""
    from alembic.autogenerate import compare_metadata

    metadata = metadata_of(tables)
    own = {name for m in metadata for name in m.tables}
    migration_context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "include_name": lambda name, type_, _: type_ != "table" or name in own,
        },
    )
    merged = MetaData()
    for m in metadata:
        for table in m.tables.values():
            table.to_metadata(merged)
    return list(compare_metadata(migration_context, merged))


def change_column_types(
    columns: Mapping[str, Sequence[str]], old: TypeEngine[Any], new: TypeEngine[Any]
) -> None:
    """In a migration: give each table's `columns` (all NOT NULL) the type `new`, batch-wise, so
    SQLite (which cannot ALTER a column's type) copies the table and PostgreSQL alters it."""
    for table, names in columns.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in names:
                batch_op.alter_column(name, existing_type=old, type_=new, existing_nullable=False)
