"""Wiring of the registration service: what it consumes, what it emits, and its HTTP API."""

from __future__ import annotations

from lindung_contracts import (
    MembershipNumberAssigned,
    ProgramRenewed,
    RegistrationRejected,
    WorkerRegistered,
    topics,
)
from lindung_registration import handlers, projection
from lindung_registration.api import install_api
from lindung_registration.auth import KeyStore
from lindung_registration.db import TABLES
from lindung_registration.imports import Importer
from lindung_registration.settings import RegistrationSettings
from lindung_registration.web import install_web
from lindung_registration.web.pages import too_large_page
from lindung_runtime import Clock, Service
from lindung_runtime.pipeline import Handler

NAME = "registration"

#: The other services' events that make up a worker's timeline and the programme funnel
#: (registration's own, WorkerRegistered and RegistrationRejected, are projected as it emits them).
PROJECTED: dict[str, Handler] = {
    topics.ELIGIBILITY_CONFIRMED: projection.on_eligibility_confirmed,
    topics.ELIGIBILITY_REJECTED: projection.on_eligibility_rejected,
    topics.CONTRIBUTION_INVOICED: projection.on_contribution_invoiced,
    topics.PAYMENT_RECEIVED: projection.on_payment_received,
    topics.COVERAGE_ACTIVATED: projection.on_coverage_activated,
    topics.COVERAGE_EXPIRING: projection.on_coverage_expiring,
    topics.COVERAGE_ENDED: projection.on_coverage_ended,
}


def create_service(
    settings: RegistrationSettings | None = None, clock: Clock | None = None
) -> Service:
    settings = settings or RegistrationSettings()
    service = Service(NAME, settings, TABLES, clock=clock)
    service.consumer(topics.PROGRAM_PUBLISHED)(handlers.on_program_published)
    # Registration also writes this topic (POST /programs/{id}/renewals), and reads it back like
    # every other service: the topic's order numbers the terms, not the HTTP request's.
    service.consumer(topics.PROGRAM_RENEWED)(handlers.on_program_renewed)
    service.consumer(topics.REGISTRATION_REQUESTED)(handlers.on_registration_requested)
    # BPJS Ketenagakerjaan's membership numbers; registration also writes this topic (the
    # upload of a NIK -> KPJ spreadsheet) and reads its own numbers back as repeats.
    service.consumer(topics.MEMBERSHIP_NUMBER_ASSIGNED)(handlers.on_membership_number_assigned)
    for topic, handler in PROJECTED.items():
        # The timeline entry, keyed by the event's id, is the projection's own inbox.
        service.consumer(topic, inbox=False)(handler)
    service.publishes(
        WorkerRegistered, RegistrationRejected, ProgramRenewed, MembershipNumberAssigned
    )

    importer = Importer(service, settings)
    service.background(importer.run)
    keys = KeyStore(settings.api_keys_path)
    install_api(service, keys, importer, page=too_large_page)
    install_web(service, keys, importer)
    return service
