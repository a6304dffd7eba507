"""One trace follows a worker across services: registration → eligibility → billing, on the wire.

The W3C `traceparent` travels in Kafka headers and through each service's outbox, so the event
each service emits for a worker carries the trace id of the request that started it.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from lindung_billing.app import create_service as create_billing
from lindung_billing.settings import BillingSettings
from lindung_contracts import ProgramPublished, RegistrationRequested, topics
from lindung_eligibility.app import create_service as create_eligibility
from lindung_eligibility.settings import EligibilitySettings
from lindung_registration.app import create_service as create_registration
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import Service
from lindung_runtime.kafka import EventClient

from .conftest import FAST, running, wire

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PROGRAM = ProgramPublished(
    program_id="trace-test",
    name="Trace",
    sponsor="Kab. Uji",
    region_code="5318",
    quota=10,
    coverage_start=date(2025, 10, 1),
    coverage_end=date(2025, 12, 31),
    staff_emails=["staf@example.go.id"],
)
REQUEST = RegistrationRequested(
    program_id="trace-test",
    nik="5318015708900001",
    full_name="Maria Bili",
    birth_date="1990-08-17",
    gender="F",
    village="Desa Uji",
    district="Loura",
)


def three_services(bootstrap: str, data_dir: Path) -> tuple[Service, Service, Service]:
    common = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "LINDUNG_DATA_DIR": str(data_dir), **FAST}
    return (
        create_registration(RegistrationSettings(**common)),
        create_eligibility(EligibilitySettings(**common)),
        create_billing(BillingSettings(**common)),
    )


def trace_id_of(headers: dict[str, str]) -> str:
    return headers["traceparent"].split("-")[1]


async def test_one_trace_follows_a_worker_from_registration_to_invoice(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    services = three_services(kafka_bootstrap, data_dir)
    program, request = PROGRAM, REQUEST
    outputs = [topics.WORKER_REGISTERED, topics.ELIGIBILITY_CONFIRMED, topics.CONTRIBUTION_INVOICED]
    async with running(*services), wire(kafka_bootstrap, outputs) as seen:
        async with EventClient(kafka_bootstrap) as client:
            await client.publish(program)
            headers = client.headers_for(request)
            headers["traceparent"] = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
            await client.publish_raw(
                request.TOPIC, request.model_dump_json().encode(), request.key(), headers
            )
        (registered,) = await seen.wait_for(topics.WORKER_REGISTERED, 1)
        (confirmed,) = await seen.wait_for(topics.ELIGIBILITY_CONFIRMED, 1)
        (invoiced,) = await seen.wait_for(topics.CONTRIBUTION_INVOICED, 1)

    assert [trace_id_of(r.headers) for r in (registered, confirmed, invoiced)] == [TRACE_ID] * 3
    # Each hop is a new span (child of the previous), not a copy of the caller's span.
    assert len({r.headers["traceparent"] for r in (registered, confirmed, invoiced)}) == 3
    assert {r.headers["ce_source"] for r in (registered, confirmed, invoiced)} == {
        "/lindung/registration",
        "/lindung/eligibility",
        "/lindung/billing",
    }


async def test_each_service_processes_the_worker_in_a_batch_span_linked_to_its_trace(
    kafka_bootstrap: str, data_dir: Path
) -> None:
    """With the in-memory span exporter: each service's `process {topic}` span (one per batch)
    links to the span context that the worker's record carried into it, so the request's trace
    leads through every service, in causal order, with the messaging attributes."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    exporter = InMemorySpanExporter()
    services = three_services(kafka_bootstrap, data_dir)
    for service in services:
        service.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    program, request = PROGRAM, REQUEST
    outputs = [topics.WORKER_REGISTERED, topics.ELIGIBILITY_CONFIRMED, topics.CONTRIBUTION_INVOICED]
    async with running(*services), wire(kafka_bootstrap, outputs) as seen:
        async with EventClient(kafka_bootstrap) as client:
            await client.publish(program)
            headers = client.headers_for(request)
            headers["traceparent"] = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
            await client.publish_raw(
                request.TOPIC, request.model_dump_json().encode(), request.key(), headers
            )
        (registered,) = await seen.wait_for(topics.WORKER_REGISTERED, 1)
        (confirmed,) = await seen.wait_for(topics.ELIGIBILITY_CONFIRMED, 1)
        await seen.wait_for(topics.CONTRIBUTION_INVOICED, 1)

    def span_id_of(traceparent: str) -> int:
        return int(traceparent.split("-")[2], 16)

    hops = [
        ("lindung-registration", topics.REGISTRATION_REQUESTED, span_id_of(headers["traceparent"])),
        (
            "lindung-eligibility",
            topics.WORKER_REGISTERED,
            span_id_of(registered.headers["traceparent"]),
        ),
        (
            "lindung-billing",
            topics.ELIGIBILITY_CONFIRMED,
            span_id_of(confirmed.headers["traceparent"]),
        ),
    ]
    spans = exporter.get_finished_spans()
    process_spans = []
    for service_name, topic, carried in hops:
        # A retried attempt (e.g. the programme not yet known) leaves an ERROR span of its
        # own; exactly one attempt per hop succeeds.
        attempts = [
            s
            for s in spans
            if s.resource.attributes["service.name"] == service_name
            and s.name == f"process {topic}"
            and any(
                format(link.context.trace_id, "032x") == TRACE_ID
                and link.context.span_id == carried
                for link in s.links
            )
        ]
        (span,) = [s for s in attempts if s.status.status_code is not StatusCode.ERROR]
        assert all(s.status.status_code is StatusCode.ERROR for s in attempts if s is not span)
        assert span.kind is SpanKind.CONSUMER
        attributes = dict(span.attributes or {})
        assert attributes["messaging.system"] == "kafka"
        assert attributes["messaging.operation.name"] == "process"
        assert attributes["messaging.destination.name"] == topic
        assert attributes["messaging.consumer.group.name"] == f"lindung-{service_name[8:]}.{topic}"
        assert attributes["messaging.batch.message_count"] >= 1
        process_spans.append(span)
    # Each relay sent the worker's event in a PRODUCER span linked to the context it carries.
    for service_name, topic, carried in [
        ("lindung-registration", topics.WORKER_REGISTERED, hops[1][2]),
        ("lindung-eligibility", topics.ELIGIBILITY_CONFIRMED, hops[2][2]),
    ]:
        (send,) = [
            s
            for s in spans
            if s.resource.attributes["service.name"] == service_name
            and s.kind is SpanKind.PRODUCER
            and any(link.context.span_id == carried for link in s.links)
        ]
        assert send.name == f"send {topic}"
        assert dict(send.attributes or {})["messaging.operation.type"] == "send"
    # Causal order: each service worked on the record after the previous one emitted it.
    assert [s.start_time for s in process_spans] == sorted(s.start_time for s in process_spans)
