"""Kafka topic names. Changing one is a breaking change for every upstream system."""

PROGRAM_PUBLISHED = "program.published"
REGISTRATION_REQUESTED = "registration.requested"
WORKER_REGISTERED = "worker.registered"
REGISTRATION_REJECTED = "registration.rejected"
ELIGIBILITY_CONFIRMED = "eligibility.confirmed"
ELIGIBILITY_REJECTED = "eligibility.rejected"
CONTRIBUTION_INVOICED = "contribution.invoiced"
PAYMENT_RECEIVED = "payment.received"
COVERAGE_ACTIVATED = "coverage.activated"
DAY_STARTED = "clock.day-started"
COVERAGE_EXPIRING = "coverage.expiring"
DIGEST_SENT = "notification.digest-sent"
PROGRAM_RENEWED = "program.renewed"
COVERAGE_ENDED = "coverage.ended"
MEMBERSHIP_NUMBER_ASSIGNED = "membership.number-assigned"

ALL = (
    PROGRAM_PUBLISHED,
    REGISTRATION_REQUESTED,
    WORKER_REGISTERED,
    REGISTRATION_REJECTED,
    ELIGIBILITY_CONFIRMED,
    ELIGIBILITY_REJECTED,
    CONTRIBUTION_INVOICED,
    PAYMENT_RECEIVED,
    COVERAGE_ACTIVATED,
    DAY_STARTED,
    COVERAGE_EXPIRING,
    DIGEST_SENT,
    PROGRAM_RENEWED,
    COVERAGE_ENDED,
    MEMBERSHIP_NUMBER_ASSIGNED,
)

DLQ_SUFFIX = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """Every consumed topic has a dead-letter twin holding what could not be processed."""
    return f"{topic}{DLQ_SUFFIX}"
