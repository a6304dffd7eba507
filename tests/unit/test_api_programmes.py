"""The API registers and imports only for a published programme: an unknown one is a 404 with
the reason, before anything is stored (a misspelt id would otherwise enrol workers nowhere)."""

from __future__ import annotations

import httpx

from lindung_registration.db import ImportJob, Worker
from lindung_runtime import Service
from tests.unit.handler_kit import PROGRAM, rows
from tests.unit.test_api_auth import CSV_UPLOAD, Keys, api, bearer, keys, service, worker

__all__ = ["api", "keys", "service"]  # the fixtures, shared with test_api_auth

UNKNOWN = "sbd-pekerja-rentan-2052q1"


async def test_an_unknown_programme_is_a_404_for_a_registration_and_an_upload(
    api: httpx.AsyncClient, keys: Keys, service: Service
) -> None:
    ops = bearer(keys.operator)
    registered = await api.post(f"/programs/{UNKNOWN}/workers", json=worker(1), headers=ops)
    files = {"file": ("peserta.csv", CSV_UPLOAD.encode(), "text/csv")}
    uploaded = await api.post(f"/programs/{UNKNOWN}/imports", files=files, headers=ops)

    for response in (registered, uploaded):
        assert response.status_code == 404, response.text
        assert "Unknown programme" in response.json()["detail"]
    assert await rows(service, Worker) == []
    assert await rows(service, ImportJob) == []

    known = await api.post(f"/programs/{PROGRAM}/workers", json=worker(1), headers=ops)
    assert known.status_code == 201, known.text


async def test_a_client_asks_whether_a_programme_is_published(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    """What the demo and other publishers poll before uploading, instead of racing the event."""
    for key in (keys.operator, keys.village):
        known = await api.get(f"/programs/{PROGRAM}", headers=bearer(key))
        assert known.status_code == 200, known.text
        assert known.json()["program_id"] == PROGRAM
        assert known.json()["coverage_end"] == "2025-12-31"
    unknown = await api.get(f"/programs/{UNKNOWN}", headers=bearer(keys.operator))
    assert unknown.status_code == 404
    assert "Unknown programme" in unknown.json()["detail"]
    assert (await api.get(f"/programs/{PROGRAM}")).status_code == 401
