"""OpenTelemetry tracing: one trace follows a worker across services through Kafka headers.

FastStream's `KafkaTelemetryMiddleware` makes the consume/publish spans and carries the W3C
`traceparent` header; the outbox stores that context on each row so the relay continues the trace
of the handler that wrote it (../shared/STYLE.md, lesson 4).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter


def build_tracer_provider(
    service: str,
    exporter: str = "none",
    otlp_endpoint: str | None = None,
    extra_processors: list[SpanProcessor] | None = None,
) -> TracerProvider:
    """A provider for this service; spans exist (for log trace ids) even with no exporter."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"lindung-{service}"}))
    span_exporter: SpanExporter | None = None
    if exporter == "console":
        span_exporter = ConsoleSpanExporter()
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = (
            OTLPSpanExporter(endpoint=otlp_endpoint) if otlp_endpoint else OTLPSpanExporter()
        )
    if span_exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    for processor in extra_processors or []:
        provider.add_span_processor(processor)
    return provider


def current_trace_headers() -> dict[str, str]:
    """The W3C trace context of the running span, to store beside an outgoing event."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def continued_trace(headers: Mapping[str, str]) -> Iterator[None]:
    """Run a block inside the trace context that `headers` carry (used by the outbox relay)."""
    token = otel_context.attach(propagate.extract(dict(headers)))
    try:
        yield
    finally:
        otel_context.detach(token)


def current_trace_id() -> str | None:
    """The running trace's id as 32 hex digits (what Jaeger and the logs show), if any."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
