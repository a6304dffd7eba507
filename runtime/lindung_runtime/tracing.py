"""OpenTelemetry tracing: one trace follows a worker across services through Kafka headers.

The reliable consumer opens a CONSUMER span per record, continuing the W3C `traceparent` the
record carries; `UnitOfWork.emit` stores that span's context in the outbox row's headers, so the
event the relay later sends is the child of the processing that produced it (../shared/STYLE.md,
lesson 4). Each service's processing span is therefore the parent of the next service's.

With no exporter (the embedded default) nothing would ever read a span's attributes, so spans are
not recorded unless the incoming trace is already sampled: ids are still made and propagated (the
logs and the timeline keep their trace ids), at a third of the cost per record (bench/).
`OTEL_TRACES_SAMPLER`, when set, decides instead, as the OpenTelemetry SDK documents.
"""

from __future__ import annotations

import os

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler


def build_tracer_provider(
    service: str,
    exporter: str = "none",
    otlp_endpoint: str | None = None,
    extra_processors: list[SpanProcessor] | None = None,
) -> TracerProvider:
    """A provider for this service; spans exist (for log trace ids) even with no exporter."""
    span_exporter: SpanExporter | None = None
    if exporter == "console":
        span_exporter = ConsoleSpanExporter()
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = (
            OTLPSpanExporter(endpoint=otlp_endpoint) if otlp_endpoint else OTLPSpanExporter()
        )
    processors = list(extra_processors or [])
    if span_exporter is not None:
        processors.insert(0, BatchSpanProcessor(span_exporter))
    sampler: Sampler | None = None  # the SDK's default, or OTEL_TRACES_SAMPLER
    if not processors and not os.environ.get("OTEL_TRACES_SAMPLER"):
        sampler = ParentBased(root=ALWAYS_OFF)
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"lindung-{service}"}), sampler=sampler
    )
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def current_trace_headers() -> dict[str, str]:
    """The W3C trace context of the running span, to store beside an outgoing event."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def current_trace_id() -> str | None:
    """The running trace's id as 32 hex digits (what Jaeger and the logs show), if any."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
