"""Span recording follows who reads spans; trace ids exist and propagate either way."""

from __future__ import annotations

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lindung_runtime.tracing import (
    build_tracer_provider,
    current_trace_headers,
    current_trace_id,
    unrecorded_span,
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


def test_a_record_that_cannot_be_recorded_gets_the_span_the_sdk_would_make_more_cheaply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The consumer's shortcut: same trace, a fresh span id, not sampled, current in its block;
    an upstream trace that is sampled, or a provider that records, goes to the SDK (None)."""
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    provider = build_tracer_provider("t")
    span = unrecorded_span(provider, propagate.extract(traceparent(False)))
    assert span is not None
    with span:
        current = trace.get_current_span()
        assert not current.is_recording()
        assert current_trace_id() == PARENT_TRACE
        sent = current_trace_headers()["traceparent"].split("-")
        assert (sent[1], sent[3]) == (PARENT_TRACE, "00")
        assert sent[2] not in ("b7ad6b7169203331", "0" * 16)  # its own span id
    assert current_trace_id() is None  # no longer current after the block

    fresh = unrecorded_span(provider, propagate.extract({}))  # no upstream: a new trace
    assert fresh is not None
    with fresh:
        assert current_trace_id() not in (None, PARENT_TRACE)

    assert unrecorded_span(provider, propagate.extract(traceparent(True))) is None
    recording = build_tracer_provider(
        "t", extra_processors=[SimpleSpanProcessor(InMemorySpanExporter())]
    )
    assert unrecorded_span(recording, propagate.extract(traceparent(False))) is None
