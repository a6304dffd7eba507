"""Wiring of the eligibility service: what it consumes and what it emits."""

from __future__ import annotations

from lindung_contracts import EligibilityConfirmed, EligibilityRejected, topics
from lindung_eligibility import handlers
from lindung_eligibility.db import TABLES
from lindung_eligibility.settings import EligibilitySettings
from lindung_runtime import Clock, Service

NAME = "eligibility"


def create_service(
    settings: EligibilitySettings | None = None, clock: Clock | None = None
) -> Service:
    service = Service(NAME, settings or EligibilitySettings(), TABLES, clock=clock)
    service.consumer(topics.PROGRAM_PUBLISHED)(handlers.on_program_published)
    service.consumer(topics.DAY_STARTED)(handlers.on_day_started)
    service.consumer(topics.PROGRAM_RENEWED)(handlers.on_program_renewed)
    service.consumer(topics.WORKER_REGISTERED)(handlers.on_worker_registered)
    service.publishes(EligibilityConfirmed, EligibilityRejected)
    return service
