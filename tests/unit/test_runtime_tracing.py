"""Span recording follows who reads spans; trace ids exist and propagate either way."""

from __future__ import annotations

import pytest
from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link

from lindung_runtime.tracing import (
    build_tracer_provider,
    current_trace_headers,
    current_trace_id,
    record_context,
    upstream_context,
)

PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"


def traceparent(sampled: bool) -> dict[str, str]:
    return {"traceparent": f"00-{PARENT_TRACE}-b7ad6b7169203331-{'01' if sampled else '00'}"}


def test_with_no_exporter_spans_are_not_recorded_but_carry_a_trace_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    tracer = build_tracer_provider("t").get_tracer("t")
    with tracer.start_as_current_span("root") as span:
        assert not span.is_recording()
        trace_id = current_trace_id()
        assert trace_id is not None and len(trace_id) == 32
        assert current_trace_headers()["traceparent"].split("-")[1] == trace_id
    with tracer.start_as_current_span("child", context=propagate.extract(traceparent(False))):
        assert current_trace_id() == PARENT_TRACE  # the upstream trace continues


def test_with_no_exporter_a_sampled_upstream_trace_is_still_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    tracer = build_tracer_provider("t").get_tracer("t")
    with tracer.start_as_current_span("child", context=propagate.extract(traceparent(True))) as s:
        assert s.is_recording()


def test_with_a_span_processor_every_span_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider("t", extra_processors=[SimpleSpanProcessor(exporter)])
    with provider.get_tracer("t").start_as_current_span("root") as span:
        assert span.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == ["root"]


def test_the_sampler_setting_of_opentelemetry_decides_when_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    with build_tracer_provider("t").get_tracer("t").start_as_current_span("root") as span:
        assert span.is_recording()


def test_a_record_is_handled_in_its_producers_trace_with_a_fresh_unrecorded_span_id() -> None:
    """What a handler emits continues the worker's trace (same trace id and sampled flag, its
    own span id); a record without a trace context gets a new trace, sampled as its batch is."""
    provider = build_tracer_provider("t")
    for sampled in (False, True):
        upstream = upstream_context(traceparent(sampled))
        token = context.attach(record_context(provider, upstream, sampled=not sampled))
        try:
            assert not trace.get_current_span().is_recording()
            assert current_trace_id() == PARENT_TRACE
            sent = current_trace_headers()["traceparent"].split("-")
            assert (sent[1], sent[3]) == (PARENT_TRACE, "01" if sampled else "00")
            assert sent[2] not in ("b7ad6b7169203331", "0" * 16)  # its own span id
        finally:
            context.detach(token)
    assert current_trace_id() is None  # no longer current after detaching

    for batch_sampled in (False, True):
        token = context.attach(record_context(provider, upstream_context({}), batch_sampled))
        try:
            sent = current_trace_headers()["traceparent"].split("-")
            assert sent[1] != PARENT_TRACE and sent[3] == ("01" if batch_sampled else "00")
        finally:
            context.detach(token)


def test_with_no_exporter_a_batch_span_is_recorded_when_one_of_its_records_is_sampled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    tracer = build_tracer_provider("t").get_tracer("t")
    unsampled, sampled = upstream_context(traceparent(False)), upstream_context(traceparent(True))
    with tracer.start_as_current_span("b", context=Context(), links=[Link(unsampled)]) as span:
        assert not span.is_recording()
    links = [Link(unsampled), Link(sampled)]
    with tracer.start_as_current_span("b", context=Context(), links=links) as span:
        assert span.is_recording()
        assert current_trace_id() != PARENT_TRACE  # a root of its own, linked to the records'
