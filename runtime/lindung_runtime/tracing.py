"""OpenTelemetry tracing: one trace follows a worker across services through Kafka headers.

The reliable consumer opens ONE span per batch, `process {topic}` (kind CONSUMER), linked to the
producer context of each record in it, as the OpenTelemetry messaging conventions describe for
batch processing. Each record is handled in a context of its own: its producer's trace, with a
fresh span id that is never recorded (`record_context`). What a handler emits takes that context
into its outbox row, so the event the relay sends continues the worker's trace: one trace id from
the upstream request to the invoice, a new span id per hop. To find the batch spans that worked
on a worker, search the spans linked to its trace id (Tempo: `{ link:traceID = "…" }`).

With no exporter (the embedded default) nothing would ever read a span, so a batch span is
recorded only when one of its records' traces is sampled (`UPSTREAM_SAMPLED_ONLY`); ids are still
made and propagated (the logs and the timeline keep their trace ids). `OTEL_TRACES_SAMPLER`, when
set, decides instead, as the OpenTelemetry SDK documents.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, TraceFlags
from opentelemetry.util.types import Attributes

from lindung_runtime.privacy import mask_text, scrub_text


class _AnyLinkSampled(Sampler):
    """For a root span: sample it when a trace it links to is sampled (a batch span's records)."""

    def should_sample(
        self,
        parent_context: context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        sampled = any(link.context.trace_flags.sampled for link in links or ())
        return SamplingResult(
            Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP, attributes, trace_state
        )

    def get_description(self) -> str:
        return "AnyLinkSampled"


#: Records a span only when an upstream trace it continues or links to is sampled (the default
#: with no exporter).
UPSTREAM_SAMPLED_ONLY = ParentBased(root=_AnyLinkSampled())


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
        processors.insert(0, BatchSpanProcessor(ScrubbingSpanExporter(span_exporter)))
    sampler: Sampler | None = None  # the SDK's default, or OTEL_TRACES_SAMPLER
    if not processors and not os.environ.get("OTEL_TRACES_SAMPLER"):
        sampler = UPSTREAM_SAMPLED_ONLY
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"lindung-{service}"}), sampler=sampler
    )
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


#: Attribute keys that name personal data: dropped from spans and their events whatever the value.
_PERSONAL_KEY = re.compile(
    r"(?:^|[._])(?:nik|full_?name|name_?lengkap|nama|phone|no_?hp|telepon|birth(?:_?date)?|"
    r"tanggal_?lahir|address|alamat|email|(?:worker|person|peserta)[._]?name)(?:$|[._])",
    re.IGNORECASE,
)
#: Attributes of the SDK's exception events whose text may quote a worker's record.
_EXCEPTION_TEXT = ("exception.message", "exception.stacktrace")


class ScrubbingSpanExporter(SpanExporter):
    """Hands the exporter copies of the spans without personal data: span attributes are exported
    unmasked otherwise, and an exception event carries the error's message and traceback, which
    may quote a record (a pydantic error's input, a SQL statement's parameters).

    Names and birth dates have no recognisable shape, so: attributes under a personal key
    (`*.nik`, `*.full_name`, `*.phone`, `*.birth_date`, ...) are dropped; every other text is
    masked (NIKs, phone numbers); exception texts and the status description also lose quoted
    inputs, SQL parameters and dates (`privacy.scrub_text`). A `ReadableSpan` is immutable, hence
    the copies.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.exporter.export([scrub_span(span) for span in spans])

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def scrub_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of `span` without personal data (see ScrubbingSpanExporter)."""
    status = span.status
    if status.description:
        status = Status(status.status_code, scrub_text(status.description))
    return ReadableSpan(
        name=mask_text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_scrub_attributes(span.attributes),
        events=[
            Event(
                event.name,
                _scrub_attributes(event.attributes, thorough=event.name == "exception"),
                timestamp=event.timestamp,
            )
            for event in span.events
        ],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _scrub_attributes(
    attributes: Mapping[str, Any] | None, thorough: bool = False
) -> dict[str, Any]:
    scrubbed: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if _PERSONAL_KEY.search(key):
            continue
        clean = scrub_text if thorough or key in _EXCEPTION_TEXT else mask_text
        if isinstance(value, str):
            scrubbed[key] = clean(value)
        elif isinstance(value, bytes):
            continue  # opaque: could hold anything
        elif isinstance(value, Mapping):
            scrubbed[key] = _scrub_attributes(value, thorough)
        elif isinstance(value, Sequence):
            scrubbed[key] = tuple(clean(v) if isinstance(v, str) else v for v in value)
        else:
            scrubbed[key] = value
    return scrubbed


def current_trace_headers() -> dict[str, str]:
    """The W3C trace context of the running span, to store beside an outgoing event."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def current_trace_id() -> str | None:
    """The running trace's id as 32 hex digits (what Jaeger and the logs show), if any."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def upstream_context(headers: Mapping[str, str]) -> SpanContext:
    """The producer's span context a record carries (invalid when it carries none)."""
    return trace.get_current_span(propagate.extract(headers)).get_span_context()


def record_context(
    provider: TracerProvider, upstream: SpanContext, sampled: bool
) -> context.Context:
    """The context one record is handled in: its producer's trace (a new one if it has none,
    sampled as its batch span is), with a fresh span id that is never recorded. It makes what
    the handler emits continue the worker's trace at the cost of an id, not of a span."""
    ids = provider.id_generator
    if upstream.is_valid:
        trace_id, flags, state = upstream.trace_id, upstream.trace_flags, upstream.trace_state
    else:
        trace_id = ids.generate_trace_id()
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        state = None
    span = NonRecordingSpan(SpanContext(trace_id, ids.generate_span_id(), False, flags, state))
    return trace.set_span_in_context(span, context.Context())
