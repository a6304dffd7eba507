"""Programmes registration knows, for tests that register workers without running Kafka: the
service registers only for a programme published on `program.published`."""

from __future__ import annotations

from lindung_runtime import Service
from tests.unit.handler_kit import founding_program, handle_now


async def publish_known(service: Service, *program_ids: str) -> None:
    """Record each programme (the founding case's terms under that id) as if published."""
    await handle_now(service, [founding_program(program_id=p) for p in program_ids])
