"""/metrics shows the process itself too: resident memory and CPU (prometheus_client's process
collector), the garbage collector's work, and the Python build, next to Lindung's own metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from lindung_runtime import Service
from lindung_runtime.metrics import ServiceMetrics
from lindung_runtime.settings import LindungSettings


def names(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


async def test_the_admin_port_serves_memory_cpu_and_garbage_collection(data_dir: Path) -> None:
    service = Service("collectors", LindungSettings(LINDUNG_DATA_DIR=str(data_dir)), tables=[])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.admin_http), base_url="http://test"
    ) as client:
        response = await client.get("/metrics")
    await service.database.dispose()
    assert response.status_code == 200
    text = response.text
    assert "process_resident_memory_bytes" in text
    assert "python_gc_objects_collected_total" in text
    served = names(text)
    assert {
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "python_gc_objects_collected_total",
        "python_gc_collections_total",
        "python_info",
    } <= served
    resident = next(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "process_resident_memory_bytes"
    )
    assert resident > 10_000_000  # this interpreter, read from /proc: tens of MB at least


def test_every_service_registry_of_a_process_has_them() -> None:
    """Tests run several services in one process, each with its own registry: registering the
    process's collectors on each must not clash."""
    first, second = ServiceMetrics("one"), ServiceMetrics("two")
    for metrics in (first, second):
        assert "process_resident_memory_bytes" in names(metrics.render().decode())
