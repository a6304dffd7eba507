"""Every service counts what it consumes, produces and dead-letters, and serves it at /metrics
in the Prometheus text format (the names are what deploy/grafana's dashboard reads)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from prometheus_client.parser import text_string_to_metric_families

from lindung_contracts import topics
from lindung_eligibility.app import create_service
from lindung_eligibility.settings import EligibilitySettings
from lindung_runtime import FixedClock, Service
from tests.unit.handler_kit import QUICK_GIVE_UP, publish, with_tables
from tests.unit.test_handlers_eligibility import NOW, program, registered


@pytest.fixture
async def service(data_dir: Path) -> AsyncIterator[Service]:
    settings = EligibilitySettings(LINDUNG_DATA_DIR=str(data_dir), **QUICK_GIVE_UP)
    async with with_tables(create_service(settings, clock=FixedClock(NOW))) as svc:
        yield svc


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_consumed_dead_lettered_and_produced_are_counted_and_served(service: Service) -> None:
    first = registered(1)
    async with TestKafkaBroker(service.broker) as br:
        await publish(br, program(quota=2))
        ce_id = await publish(br, first)
        await publish(br, first, ce_id=ce_id)  # a redelivery: skipped by the inbox
        await publish(br, registered(2))
        await br.publish(b"{not json", topic=topics.WORKER_REGISTERED)
        assert await service.outbox.relay_all() == 2

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.admin_http), base_url="http://test"
    ) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    labels = (
        ("outcome", "processed"),
        ("service", "eligibility"),
        ("topic", topics.WORKER_REGISTERED),
    )
    assert got[("lindung_events_consumed_total", labels)] == 2
    duplicate = (("outcome", "duplicate"), *labels[1:])
    assert got[("lindung_events_consumed_total", duplicate)] == 1
    dead = (
        ("error_code", "invalid_json"),
        ("service", "eligibility"),
        ("topic", topics.WORKER_REGISTERED),
    )
    assert got[("lindung_dead_letters_total", dead)] == 1
    produced = (("service", "eligibility"), ("topic", topics.ELIGIBILITY_CONFIRMED))
    assert got[("lindung_events_produced_total", produced)] == 2
    handler = (("service", "eligibility"), ("topic", topics.WORKER_REGISTERED))
    assert got[("lindung_handler_duration_seconds_count", handler)] == 2
