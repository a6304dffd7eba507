"""Wiring of the billing service: what it consumes and what it emits."""

from __future__ import annotations

from lindung_billing import handlers
from lindung_billing.db import TABLES
from lindung_billing.settings import BillingSettings
from lindung_contracts import (
    ContributionInvoiced,
    CoverageActivated,
    CoverageEnded,
    CoverageExpiring,
    topics,
)
from lindung_runtime import Clock, Service

NAME = "billing"


def create_service(settings: BillingSettings | None = None, clock: Clock | None = None) -> Service:
    service = Service(NAME, settings or BillingSettings(), TABLES, clock=clock)
    service.consumer(topics.PROGRAM_PUBLISHED)(handlers.on_program_published)
    service.consumer(topics.PROGRAM_RENEWED)(handlers.on_program_renewed)
    service.consumer(topics.ELIGIBILITY_CONFIRMED)(handlers.on_eligibility_confirmed)
    service.consumer(topics.ELIGIBILITY_REJECTED)(handlers.on_eligibility_rejected)
    service.consumer(topics.PAYMENT_RECEIVED)(handlers.on_payment_received)
    service.consumer(topics.DAY_STARTED)(handlers.on_day_started)
    service.publishes(ContributionInvoiced, CoverageActivated, CoverageExpiring, CoverageEnded)
    return service
