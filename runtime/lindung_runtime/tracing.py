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
import re
from collections.abc import Mapping, Sequence
from types import TracebackType
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
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, TraceFlags

from lindung_runtime.privacy import mask_text, scrub_text

#: Records a span only when its upstream trace is sampled (the default with no exporter).
UPSTREAM_SAMPLED_ONLY = ParentBased(root=ALWAYS_OFF)


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


class UnrecordedSpan:
    """A span that is current for a `with` block and never recorded: what the SDK makes for a
    span its sampler drops (same trace, fresh span id, not sampled), without asking the sampler
    or building the span's attributes first."""

    __slots__ = ("_context", "_token")

    def __init__(self, span: NonRecordingSpan, parent: context.Context) -> None:
        self._context = trace.set_span_in_context(span, parent)
        self._token: object | None = None

    def __enter__(self) -> None:
        self._token = context.attach(self._context)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        context.detach(self._token)  # type: ignore[arg-type]


def unrecorded_span(provider: TracerProvider, parent: context.Context) -> UnrecordedSpan | None:
    """The span to process a record in when it cannot be recorded: the provider records only
    sampled upstream traces (no exporter) and `parent`'s is not sampled. None when the SDK must
    decide. Per record this costs a third of the SDK's start (the reliable consumer's hot path)."""
    if provider.sampler is not UPSTREAM_SAMPLED_ONLY:
        return None
    upstream = trace.get_current_span(parent).get_span_context()
    if upstream.trace_flags.sampled:
        return None
    ids = provider.id_generator
    span = NonRecordingSpan(
        SpanContext(
            upstream.trace_id if upstream.is_valid else ids.generate_trace_id(),
            ids.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.DEFAULT),
            trace_state=upstream.trace_state,
        )
    )
    return UnrecordedSpan(span, parent)
