"""The public port serves the API and /healthz only; readiness, metrics and the API docs are on
the admin port (`ADMIN_PORT`), where operators and probes reach them and API callers do not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from lindung_registration.app import create_service
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import Service


@pytest.fixture
async def service(data_dir: Path) -> AsyncIterator[Service]:
    settings = RegistrationSettings(LINDUNG_DATA_DIR=str(data_dir), kafka_bootstrap_servers=None)
    service = create_service(settings)
    await service.database.create_tables(service.tables)
    try:
        yield service
    finally:
        await service.database.dispose()


async def statuses(app: object, paths: list[str]) -> dict[str, int]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return {path: (await client.get(path)).status_code for path in paths}


ADMIN_ONLY = ["/metrics", "/docs", "/redoc", "/openapi.json"]


async def test_public_app_serves_no_metrics_readiness_or_docs(service: Service) -> None:
    got = await statuses(service.http, ["/healthz", "/readyz", *ADMIN_ONLY])
    assert got == {"/healthz": 200, "/readyz": 404, **dict.fromkeys(ADMIN_ONLY, 404)}


async def test_admin_app_serves_them_with_the_public_api_document(service: Service) -> None:
    got = await statuses(service.admin_http, ["/healthz", *ADMIN_ONLY])
    assert got == {"/healthz": 200, **dict.fromkeys(ADMIN_ONLY, 200)}
    transport = httpx.ASGITransport(app=service.admin_http)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        document = (await client.get("/openapi.json")).json()
    assert "/workers/{nik}" in document["paths"]  # the API's, not the admin app's own
    assert "/readyz" not in document["paths"]


def test_admin_port_is_a_setting_unset_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADMIN_PORT", raising=False)
    assert RegistrationSettings().admin_port is None
    monkeypatch.setenv("ADMIN_PORT", "9090")
    assert RegistrationSettings().admin_port == 9090
