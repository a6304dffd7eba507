"""What the shape of event ids costs SQLite: random UUIDv4 against time-ordered UUIDv7 keys.

    .venv/bin/python bench/id_locality.py [--rows 20000 100000 300000]

Every Lindung consumer stores the id of each event it handles (the inbox's primary key, the
timeline's, the outbox's unique event id), 500 rows per transaction. This creates registration's
inbox and timeline tables from the services' models (their keys and indexes) and inserts rows like
registration's into them, with the services' SQLite settings (WAL, synchronous NORMAL, the default
page cache), once with each kind of id, and prints the CPU per row in the process (SQLite runs in
it) at each table size. Random keys land all over a growing index, so each commit writes pages from
all over it; time-ordered keys land at its end.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateIndex, CreateTable
from uuid6 import uuid7

from lindung_registration.db import TimelineEntry
from lindung_runtime.outbox import InboxMessage

BATCH = 500
TABLES = (InboxMessage, TimelineEntry)  # the services' own models: the same keys and indexes
INSERT_INBOX = (
    "INSERT INTO inbox (topic, event_id, processed_at) "
    "VALUES ('lindung.eligibility.confirmed', ?, '2026-11-27 00:00:00.000000')"
)
INSERT_TIMELINE = (
    "INSERT INTO timeline_entry (event_id, kind, nik, program_id, worker_id, invoice_id, "
    "occurred_at, trace_id, details) VALUES (?, 'eligibility_confirmed', '5318010101900001', "
    "'bench-2025q4', '0b5d3f6e-7f1c-5a3e-9d0b-2c4f6a8e1b3d', NULL, "
    "'2026-11-27 00:00:00.000000', NULL, "
    '\'{"coverage_start": "2025-10-01", "coverage_end": "2025-12-31"}\')'
)


def schema() -> list[str]:
    """CREATE TABLE and CREATE INDEX statements of TABLES, as SQLite gets them from the models."""
    dialect = sqlite.dialect()
    statements = []
    for model in TABLES:
        table = model.__table__  # type: ignore[attr-defined]
        statements.append(str(CreateTable(table).compile(dialect=dialect)))
        statements += [str(CreateIndex(index).compile(dialect=dialect)) for index in table.indexes]
    return statements


def insert_rows(path: Path, new_id: Callable[[], object], rows: int) -> float:
    """Insert `rows` ids into both tables; CPU µs per row over the last tenth (the table's size
    by then is what the figure is about)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for statement in schema():
        db.execute(statement)
    batches = max(10, rows // BATCH)
    timed_from = batches - batches // 10
    started = 0.0
    for batch in range(batches):
        if batch == timed_from:
            started = time.process_time()
        ids = [(str(new_id()),) for _ in range(BATCH)]
        db.execute("BEGIN IMMEDIATE")
        db.executemany(INSERT_INBOX, ids)
        db.executemany(INSERT_TIMELINE, ids)
        db.execute("COMMIT")
    elapsed = time.process_time() - started
    db.close()
    return elapsed / ((batches - timed_from) * BATCH) * 1e6


def main(sizes: list[int]) -> None:
    print(f"CPU µs per id stored (new id, 2 inserts, share of the commit), {BATCH} per")
    print("transaction, over the last tenth of each run")
    print(f"{'rows':>9} | {'uuid4':>8} | {'uuid7':>8} | ratio")
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="id-locality-") as work:
            random_last = insert_rows(Path(work) / "uuid4.db", uuid.uuid4, rows)
            ordered_last = insert_rows(Path(work) / "uuid7.db", uuid7, rows)
        ratio = random_last / ordered_last
        print(f"{rows:>9,} | {random_last:>8.1f} | {ordered_last:>8.1f} | {ratio:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 100_000, 300_000])
    main(parser.parse_args().rows)
