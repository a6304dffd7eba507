"""Who may write each topic and who reads it: the one table behind the Kafka ACLs in `deploy/`,
the consumers' `ce_source` allow-lists and the table in docs/security.md.

Kafka authenticates the producer (its SASL principal) and its ACLs decide what that principal may
write; the consumer then checks the event's CloudEvents `ce_source` against the same table, so a
client that slipped past a loose ACL (or a misconfigured shared user) is still not believed.

A source matches an allowed one when it is equal to it or continues it after a `/`: the village
system may publish as `/upstream/village/5318010001` (one desa) under `/upstream/village`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lindung_contracts import topics

#: The operator's tools (`lindung` CLI: programmes, business days, dead-letter replays).
OPERATOR = "lindung-operator"
#: Upstream systems, each with its own principal.
VILLAGE = "lindung-village"
LABOUR_OFFICE = "lindung-labour-office"
PAYMENT = "lindung-payment"
SCHEDULER = "lindung-scheduler"
#: BPJS Ketenagakerjaan's branch: the membership numbers (nomor KPJ) it issued.
BPJS_BRANCH = "lindung-bpjs"
#: The services: principal `lindung-<service>`, CloudEvents source `/lindung/<service>`.
SERVICES = ("registration", "eligibility", "billing", "notification")

UPSTREAM_PRINCIPALS = (OPERATOR, VILLAGE, LABOUR_OFFICE, PAYMENT, SCHEDULER, BPJS_BRANCH)


def service_principal(service: str) -> str:
    return f"lindung-{service}"


def service_source(service: str) -> str:
    return f"/lindung/{service}"


CLI_SOURCE = "/lindung/cli"


@dataclass(frozen=True)
class TopicAccess:
    topic: str
    writers: tuple[str, ...]  # SASL principals allowed to produce
    sources: tuple[str, ...]  # CloudEvents sources the consumers believe
    readers: tuple[str, ...]  # services that consume it (one group per service and topic)


ACCESS: dict[str, TopicAccess] = {
    access.topic: access
    for access in (
        TopicAccess(
            topics.PROGRAM_PUBLISHED,
            writers=(OPERATOR,),
            sources=(CLI_SOURCE,),
            readers=("registration", "eligibility", "billing", "notification"),
        ),
        TopicAccess(
            topics.REGISTRATION_REQUESTED,
            writers=(VILLAGE, LABOUR_OFFICE, OPERATOR),
            sources=("/upstream/village", "/upstream/labour-office", CLI_SOURCE),
            readers=("registration",),
        ),
        TopicAccess(
            topics.WORKER_REGISTERED,
            writers=(service_principal("registration"),),
            sources=(service_source("registration"),),
            readers=("eligibility",),
        ),
        TopicAccess(
            topics.REGISTRATION_REJECTED,
            writers=(service_principal("registration"),),
            sources=(service_source("registration"),),
            readers=(),
        ),
        TopicAccess(
            topics.ELIGIBILITY_CONFIRMED,
            writers=(service_principal("eligibility"),),
            sources=(service_source("eligibility"),),
            readers=("registration", "billing"),
        ),
        TopicAccess(
            topics.ELIGIBILITY_REJECTED,
            writers=(service_principal("eligibility"),),
            sources=(service_source("eligibility"),),
            readers=("registration", "billing"),
        ),
        TopicAccess(
            topics.CONTRIBUTION_INVOICED,
            writers=(service_principal("billing"),),
            sources=(service_source("billing"),),
            readers=("registration",),
        ),
        TopicAccess(
            topics.PAYMENT_RECEIVED,
            writers=(PAYMENT, OPERATOR),
            sources=("/upstream/payment", CLI_SOURCE),
            readers=("registration", "billing"),
        ),
        TopicAccess(
            topics.COVERAGE_ACTIVATED,
            writers=(service_principal("billing"),),
            sources=(service_source("billing"),),
            readers=("registration",),
        ),
        TopicAccess(
            topics.DAY_STARTED,
            writers=(SCHEDULER, OPERATOR),
            sources=("/upstream/scheduler", CLI_SOURCE),
            readers=("eligibility", "billing"),
        ),
        TopicAccess(
            topics.COVERAGE_EXPIRING,
            writers=(service_principal("billing"),),
            sources=(service_source("billing"),),
            readers=("registration", "notification"),
        ),
        TopicAccess(
            topics.PROGRAM_RENEWED,
            writers=(OPERATOR, service_principal("registration")),
            sources=(CLI_SOURCE, service_source("registration")),
            readers=("registration", "eligibility", "billing"),
        ),
        TopicAccess(
            topics.COVERAGE_ENDED,
            writers=(service_principal("billing"),),
            sources=(service_source("billing"),),
            readers=("registration", "notification"),
        ),
        TopicAccess(
            topics.DIGEST_SENT,
            writers=(service_principal("notification"),),
            sources=(service_source("notification"),),
            readers=(),
        ),
        TopicAccess(
            topics.MEMBERSHIP_NUMBER_ASSIGNED,
            # Registration publishes the rows of an uploaded NIK -> KPJ spreadsheet.
            writers=(BPJS_BRANCH, OPERATOR, service_principal("registration")),
            sources=("/upstream/bpjs", CLI_SOURCE, service_source("registration")),
            readers=("registration",),
        ),
    )
}
assert set(ACCESS) == set(topics.ALL), "every topic has one row"


def dead_letter_writers(topic: str) -> tuple[str, ...]:
    """A `<topic>.dlq` is written by the services that consume `topic`; the operator reads it and
    replays it (writing `topic` again, with the original headers: see `acl_writers`)."""
    return tuple(service_principal(s) for s in ACCESS[topic].readers)


def trusted_source(topic: str, tag: str) -> str:
    """A source `topic`'s consumers believe: the table's first, continued by `tag` (as one desa
    continues `/upstream/village`), e.g. `/upstream/payment/bench` for tools and tests."""
    return f"{ACCESS[topic].sources[0].rstrip('/')}/{tag}"


def source_allowed(source: str | None, allowed: tuple[str, ...] | list[str]) -> bool:
    """`source` is one of `allowed` or continues one after a `/`."""
    if not source:
        return False
    return any(source == entry or source.startswith(entry.rstrip("/") + "/") for entry in allowed)


def acl_writers(topic: str) -> tuple[str, ...]:
    """The principals granted WRITE on `topic`: its writers, and the operator on every consumed
    topic, because `lindung dlq replay` puts dead letters back where they came from (with their
    original `ce_source`, which the consumers check as before)."""
    writers = ACCESS[topic].writers
    if ACCESS[topic].readers and OPERATOR not in writers:
        writers = (*writers, OPERATOR)
    return writers
