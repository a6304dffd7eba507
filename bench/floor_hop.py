"""One hop of the stack floor (bench/pipeline.py): the least a service on this stack can do.

    python bench/floor_hop.py BOOTSTRAP SOURCE_TOPIC SINK_TOPIC SQLITE_FILE

Exactly the levers the throughput issue names and nothing else: a FastStream batch consumer, one
SQLite row per record written with one `executemany` and one commit per batch, one record out per
record in, sent through aiokafka without waiting on each send, offsets committed only after every
send was acknowledged (at-least-once). No validation, no outbox, no deduplication, no tracing,
metrics or logging. Lindung's services do all of those; the gap between this floor and their
figures in the same run is the cost of that work, the broker and the libraries being equal.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from uuid6 import uuid7


def main(bootstrap: str, source: str, sink: str, database: str) -> None:
    broker = KafkaBroker(bootstrap, logger=None)
    app = FastStream(broker, logger=None)
    db = sqlite3.connect(database, isolation_level=None)  # transactions are explicit below
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # as lindung_runtime.db sets for the services
    db.execute("CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, body BLOB NOT NULL)")

    @broker.subscriber(
        source,
        group_id=f"floor-{source}",
        batch=True,
        max_records=500,
        batch_timeout_ms=200,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
    )
    async def hop(body: list[Any], message: KafkaMessage) -> None:
        rows, out = [], []
        for record in message.raw_message:
            headers = dict(record.headers)
            rows.append((headers["ce_id"].decode(), record.value))
            headers["ce_id"] = str(uuid7()).encode()  # as the services' outboxes do
            out.append((record.key, record.value, list(headers.items())))
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", rows)
        db.execute("COMMIT")
        producer = producers[0]
        await asyncio.gather(
            *[await producer.send(sink, value, key=key, headers=h) for key, value, h in out]
        )

    # Its own aiokafka producer, as the services' outbox relays have (until 2026-12-06 it borrowed
    # FastStream's, with the same settings: aiokafka's defaults, acks=1). Made in the loop.
    producers: list[AIOKafkaProducer] = []

    @app.on_startup
    async def start_producer() -> None:
        producers.append(AIOKafkaProducer(bootstrap_servers=bootstrap))
        await producers[0].start()

    @app.after_shutdown
    async def stop_producer() -> None:
        await producers[0].stop()

    @app.after_startup
    async def ready() -> None:
        # After the broker's start, which waits until the consumer group has assigned the
        # subscriber its partitions: the bench starts publishing on this line.
        print("ready", flush=True)

    asyncio.run(app.run())


if __name__ == "__main__":
    main(*sys.argv[1:5])
