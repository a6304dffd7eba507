"""Wiring of the notification service: what it consumes, what it emits, its mail dispatcher."""

from __future__ import annotations

from lindung_contracts import DigestSent, topics
from lindung_notification import handlers
from lindung_notification.db import TABLES
from lindung_notification.settings import NotificationSettings
from lindung_runtime import Clock, Service

NAME = "notification"


def create_service(
    settings: NotificationSettings | None = None, clock: Clock | None = None
) -> Service:
    settings = settings or NotificationSettings()
    service = Service(NAME, settings, TABLES, clock=clock)
    service.consumer(topics.PROGRAM_PUBLISHED)(handlers.on_program_published)
    service.consumer(topics.COVERAGE_EXPIRING)(handlers.on_coverage_expiring)
    service.consumer(topics.COVERAGE_ENDED)(handlers.on_coverage_ended)
    service.publishes(DigestSent)
    service.background(handlers.DigestDispatcher(service, settings).run)
    return service
