"""Programmes registration knows, for tests that register workers without running Kafka: the
service registers only for a programme published on `program.published`."""

from __future__ import annotations

from lindung_registration.handlers import on_program_published
from lindung_runtime import Service
from tests.unit.handler_kit import founding_program


async def publish_known(service: Service, *program_ids: str) -> None:
    """Record each programme (the founding case's terms under that id) as if published."""
    async with service.unit_of_work() as uow:
        for program_id in program_ids:
            await on_program_published(founding_program(program_id=program_id), uow)
        await uow.commit()
