"""Wiring of the registration service: what it consumes and what it emits."""

from __future__ import annotations

from lindung_contracts import RegistrationRejected, WorkerRegistered, topics
from lindung_registration import handlers
from lindung_registration.db import TABLES
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import Clock, Service

NAME = "registration"


def create_service(
    settings: RegistrationSettings | None = None, clock: Clock | None = None
) -> Service:
    service = Service(NAME, settings or RegistrationSettings(), TABLES, clock=clock)
    service.consumer(topics.REGISTRATION_REQUESTED, preload=handlers.preload_workers)(
        handlers.on_registration_requested
    )
    service.publishes(WorkerRegistered, RegistrationRejected)
    return service
