"""Lindung's public event contracts: the only code every service shares besides the runtime.

Topics and body field names here are a public contract: fields may be added, never renamed.
"""

from lindung_contracts import topics
from lindung_contracts.cloudevents import CloudEventHeaders, cloudevent_headers
from lindung_contracts.events import (
    ALL_EVENTS,
    ContributionInvoiced,
    CoverageActivated,
    CoverageEnded,
    CoverageExpiring,
    DayStarted,
    DigestSent,
    EligibilityConfirmed,
    EligibilityRejected,
    Event,
    FieldError,
    MembershipNumberAssigned,
    PaymentReceived,
    ProgramPublished,
    ProgramRenewed,
    Reason,
    RegistrationRejected,
    RegistrationRequested,
    WorkerEvent,
    WorkerRegistered,
    event_for_topic,
)
from lindung_contracts.terms import TermDates, renewal_outcome

__all__ = [
    "ALL_EVENTS",
    "CloudEventHeaders",
    "ContributionInvoiced",
    "CoverageActivated",
    "CoverageEnded",
    "CoverageExpiring",
    "DayStarted",
    "DigestSent",
    "EligibilityConfirmed",
    "EligibilityRejected",
    "Event",
    "FieldError",
    "MembershipNumberAssigned",
    "PaymentReceived",
    "ProgramPublished",
    "ProgramRenewed",
    "Reason",
    "RegistrationRejected",
    "RegistrationRequested",
    "TermDates",
    "WorkerEvent",
    "WorkerRegistered",
    "cloudevent_headers",
    "event_for_topic",
    "renewal_outcome",
    "topics",
]
