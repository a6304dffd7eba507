"""Seeded generator of hostile input for every consumed topic, each message with the outcome it
must have: a dead letter from every service consuming the topic (with the expected error code),
or, for a request that has the right shape but wrong values, a RegistrationRejected naming the
field. Every message carries `x-chaos-id` (kept on its dead letters) so it can be traced.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from lindung_contracts import (
    ContributionInvoiced,
    CoverageActivated,
    CoverageExpiring,
    DayStarted,
    EligibilityConfirmed,
    EligibilityRejected,
    Event,
    FieldError,
    PaymentReceived,
    ProgramPublished,
    Reason,
    RegistrationRejected,
    RegistrationRequested,
    WorkerRegistered,
    cloudevent_headers,
    topics,
)
from tests.chaos.kit import HOSTILE_ID_PREFIX, PROGRAM, consumers_of
from tests.sources import trusted_source

#: Topics some service consumes (digest-sent is consumed by no one).
CONSUMED = sorted({t for t in topics.ALL if consumers_of(t)})

#: A body just under what a producer may send with aiokafka's default max_request_size
#: (1,048,576 bytes for the record with its headers), which is also about Apache Kafka's default
#: maximum (message.max.bytes 1,048,588). A dead letter adds its error headers to the record.
NEAR_MAX_BYTES = 1_048_000

NIK = "5318010101900001"
WHEN = datetime(2025, 10, 1, tzinfo=UTC)


def templates() -> dict[str, Event]:
    """A valid event for each topic, about nobody real (only ever sent with a defect)."""
    worker = {"worker_id": "poison-worker", "program_id": "poison-program", "nik": NIK}
    events: list[Event] = [
        ProgramPublished(
            program_id="poison-program",
            name="Poison",
            sponsor="Nobody",
            region_code="5318",
            quota=1,
            coverage_start=date(2025, 10, 1),
            coverage_end=date(2025, 12, 31),
        ),
        RegistrationRequested(program_id=PROGRAM, nik=NIK, full_name="X"),
        WorkerRegistered(
            **worker,
            full_name="X",
            birth_date=date(1990, 1, 1),
            gender="M",
            village="V",
            district="D",
            registered_at=WHEN,
        ),
        RegistrationRejected(
            program_id="poison-program",
            nik="1",
            errors=[FieldError(field="nik", code="nik_invalid_length", message="m")],
        ),
        EligibilityConfirmed(
            **worker,
            coverage_start=date(2025, 10, 1),
            coverage_end=date(2025, 12, 31),
            decided_at=WHEN,
        ),
        EligibilityRejected(
            **worker, reasons=[Reason(code="region_mismatch", message="m")], decided_at=WHEN
        ),
        ContributionInvoiced(
            **worker,
            invoice_id="INV-poison",
            periods=["2025-10"],
            monthly_amount_idr=16_800,
            amount_idr=16_800,
            components={"JKK": 10_000, "JKM": 6_800},
        ),
        PaymentReceived(invoice_id="INV-poison", amount_idr=1, paid_at=WHEN, reference="R"),
        CoverageActivated(
            **worker, coverage_start=date(2025, 10, 1), coverage_end=date(2025, 12, 31)
        ),
        DayStarted(date=date(2025, 10, 2)),
        CoverageExpiring(**worker, coverage_end=date(2025, 12, 31), days_left=30),
    ]
    return {event.TOPIC: event for event in events}


#: A field whose constraint a huge string breaks, per topic (registration.requested: the name,
#: which registration answers with `name_too_long`).
HUGE_FIELD = {
    topics.PROGRAM_PUBLISHED: "name",
    topics.REGISTRATION_REQUESTED: "full_name",
    topics.WORKER_REGISTERED: "full_name",
    topics.REGISTRATION_REJECTED: "village",
    topics.ELIGIBILITY_CONFIRMED: "nik",
    topics.ELIGIBILITY_REJECTED: "nik",
    topics.CONTRIBUTION_INVOICED: "nik",
    topics.PAYMENT_RECEIVED: "reference",
    topics.COVERAGE_ACTIVATED: "nik",
    topics.DAY_STARTED: "date",
    topics.COVERAGE_EXPIRING: "nik",
}
#: Not 16 characters: the contract's pattern refuses them on every worker-level topic.
BAD_NIKS = ["5318-01", "12345", "53180101019000011", "", "   ", "5318010101900001\x00"]
#: Registration also refuses these (stdnum: letters, no such birth date, non-ASCII digits); on
#: other topics they would pass the pattern, and be a fact about a programme nobody published.
BAD_REQUEST_NIKS = [
    *BAD_NIKS,
    "53180101019000A1",
    "5318019901900001",
    "٥٣١٨٠١٠١٠١٩٠٠٠٠١",
]
OVERSIZE_TOPICS = [
    topics.REGISTRATION_REQUESTED,
    topics.REGISTRATION_REQUESTED,  # the right shape: rejected (name_too_long), not dead-lettered
    topics.WORKER_REGISTERED,
    topics.COVERAGE_EXPIRING,
    topics.PROGRAM_PUBLISHED,
    topics.ELIGIBILITY_CONFIRMED,
]
KINDS = [
    "truncated_json",
    "garbage_bytes",
    "invalid_utf8",
    "empty_body",
    "tombstone",
    "not_an_object",
    "wrong_type",
    "missing_field",
    "huge_string",
    "unknown_fields_and_wrong_type",
    "wrong_ce_type",
    "wrong_schema_version",
    "invalid_nik",
    "no_headers",
]


@dataclass(frozen=True)
class Hostile:
    chaos_id: str
    kind: str
    topic: str
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    #: ("dlq", error code): every consumer of the topic dead-letters it with that code;
    #: ("rejected", field): registration answers it with a RegistrationRejected on that field.
    expect: tuple[str, str]


def generate(count: int, seed: int, oversize: int = 8) -> list[Hostile]:
    """`count` hostile messages spread over every consumed topic; `oversize` of them close to
    the maximum record size."""
    rng = random.Random(seed)
    events = templates()
    bodies = {topic: event.model_dump(mode="json") for topic, event in events.items()}
    ce_types = {topic: event.ce_type() for topic, event in events.items()}
    result = []
    for i in range(count):
        if i < oversize:
            topic = OVERSIZE_TOPICS[i % len(OVERSIZE_TOPICS)]
        elif i < len(CONSUMED) * 2:
            topic = CONSUMED[i % len(CONSUMED)]
        else:
            topic = rng.choice(CONSUMED)
        kind = KINDS[i % len(KINDS)] if i < len(KINDS) * 2 else rng.choice(KINDS)
        chaos_id = f"{HOSTILE_ID_PREFIX}{seed}-{i}"
        source = trusted_source(topic, "chaos")  # believed: what is wrong is the record itself
        headers = cloudevent_headers(ce_types[topic], source, event_id=chaos_id)
        headers["x-chaos-id"] = chaos_id
        body: dict[str, Any] = dict(bodies[topic])
        value: bytes | None
        expect = ("dlq", "schema_violation")
        required = [
            name for name, info in type(events[topic]).model_fields.items() if info.is_required()
        ]
        if i < oversize:
            if topic == topics.REGISTRATION_REQUESTED and i % 2:
                body["full_name"] = "N" * (NEAR_MAX_BYTES - 300)
                value, expect = _json(body), ("rejected", "full_name")
            else:
                value = b'{"nik": "' + b"9" * (NEAR_MAX_BYTES - 9)  # unterminated
                expect = ("dlq", "invalid_json")
            kind = "oversize"
        elif kind == "truncated_json":
            text = _json(body)
            value, expect = text[: rng.randrange(1, len(text) - 1)], ("dlq", "invalid_json")
        elif kind == "garbage_bytes":
            value = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
            try:
                json.loads(value)
                expect = ("dlq", "schema_violation")  # e.g. a lone digit is valid JSON
            except ValueError:
                expect = ("dlq", "invalid_json")
        elif kind == "invalid_utf8":
            value, expect = b'{"nik": "\xff\xfe\xfa"}', ("dlq", "invalid_json")
        elif kind == "empty_body":
            value, expect = b"", ("dlq", "invalid_json")
        elif kind == "tombstone":
            value, expect = None, ("dlq", "invalid_json")
        elif kind == "not_an_object":
            value = rng.choice([b"[]", b"[1, 2, 3]", b"42", b'"text"', b"null", b"true", b"{}"])
        elif kind == "wrong_type":
            body[rng.choice(required)] = rng.choice([{"$gt": ""}, [1, 2], [[]], {"a": {"b": 1}}])
            value = _json(body)
        elif kind == "missing_field":
            del body[rng.choice(required)]
            value = _json(body)
        elif kind == "huge_string":
            body[HUGE_FIELD[topic]] = "Z" * rng.randrange(5_000, 100_000)
            value = _json(body)
            if topic == topics.REGISTRATION_REQUESTED:
                expect = ("rejected", "full_name")
        elif kind == "unknown_fields_and_wrong_type":
            body.update({f"extra_{n}": "x" * n for n in range(1, 20)})
            body["__proto__"] = {"polluted": True}
            body[rng.choice(required)] = {"nested": {"deep": [1, {"x": None}]}}
            value = _json(body)
        elif kind in ("wrong_ce_type", "wrong_schema_version"):
            if kind == "wrong_ce_type":
                other = rng.choice([t for t in CONSUMED if t != topic])
                headers["ce_type"] = ce_types[other]
            else:
                name = ce_types[topic].rsplit(".", 1)[0]
                headers["ce_type"] = f"{name}.v{rng.choice([0, 2, 99])}"
            value, expect = _json(body), ("dlq", "unexpected_event_type")
        elif kind == "invalid_nik":
            if "nik" in body and topic != topics.REGISTRATION_REJECTED:
                if topic == topics.REGISTRATION_REQUESTED:
                    body["nik"] = rng.choice(BAD_REQUEST_NIKS)
                    expect = ("rejected", "nik")
                else:
                    body["nik"] = rng.choice(BAD_NIKS)
            else:  # this topic has no NIK to get wrong: a wrong type instead
                body[rng.choice(required)] = [NIK]
            value = _json(body)
        elif kind == "no_headers":
            headers = {"x-chaos-id": chaos_id}
            value, expect = (
                b"\x00\x01 not json at all " + chaos_id.encode(),
                ("dlq", "invalid_json"),
            )
        else:  # pragma: no cover
            raise AssertionError(kind)
        key = rng.choice([None, b"", b"k", NIK.encode(), chaos_id.encode(), b"\xff" * 40])
        if kind == "oversize":
            key = None
        elif value is None and key is None:
            key = b"tombstone"  # a record needs a key or a value
        result.append(Hostile(chaos_id, kind, topic, key, value, headers, expect))
    return result


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()
