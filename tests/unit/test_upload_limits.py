"""Uploads and request bodies: a caller without a key hears 401 before a byte of the body is read;
every body has a size limit, checked on Content-Length and while it streams (413); an upload is
written to IMPORT_DIR as it arrives (never spooled to /tmp first)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from lindung_registration.app import create_service
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import Service
from lindung_runtime.limits import BodySizeLimit
from tests.programmes import publish_known
from tests.unit.handler_kit import PROGRAM
from tests.unit.test_api_auth import CSV_UPLOAD, Keys, bearer

BOUNDARY = "lindung-test-boundary"
CHUNK = b"x" * 65536


@pytest.fixture
async def small_service(data_dir: Path) -> AsyncIterator[Service]:
    settings = RegistrationSettings(
        LINDUNG_DATA_DIR=str(data_dir),
        kafka_bootstrap_servers=None,
        import_max_bytes=1024 * 1024,
        api_max_body_bytes=64 * 1024,
    )
    service = create_service(settings)
    await service.database.create_tables(service.tables)
    await publish_known(service, PROGRAM)
    try:
        yield service
    finally:
        await service.database.dispose()


@pytest.fixture
def keys(small_service: Service) -> Keys:
    return Keys(small_service.settings.api_keys_path)  # type: ignore[attr-defined]


@pytest.fixture
async def api(small_service: Service) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=small_service.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


class Body:
    """A multipart upload sent a chunk at a time, counting what the server pulled."""

    def __init__(self, chunks: int, on_chunk: object = None) -> None:
        self.chunks, self.pulled, self.on_chunk = chunks, 0, on_chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="peserta.csv"\r\nContent-Type: text/csv\r\n\r\n'
        ).encode() + CSV_UPLOAD.encode()
        for _ in range(self.chunks):
            self.pulled += 1
            if callable(self.on_chunk):
                self.on_chunk(self.pulled)
            yield b"\n" + CHUNK
        yield f"\r\n--{BOUNDARY}--\r\n".encode()


def multipart(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **(extra or {})}


def import_dir(service: Service) -> Path:
    return service.settings.import_path  # type: ignore[attr-defined,no-any-return]


async def test_an_upload_without_a_key_is_401_before_its_body_is_read(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    body = Body(chunks=10)
    response = await api.post(f"/programs/{PROGRAM}/imports", content=body, headers=multipart())
    assert response.status_code == 401
    assert body.pulled == 0
    wrong = Body(chunks=10)
    response = await api.post(
        f"/programs/{PROGRAM}/imports", content=wrong, headers=multipart(bearer("lnd_nope"))
    )
    assert response.status_code == 401
    assert wrong.pulled == 0


async def test_an_upload_is_written_to_the_import_dir_as_it_arrives(
    small_service: Service, api: httpx.AsyncClient, keys: Keys
) -> None:
    sizes: list[int] = []

    def look(pulled: int) -> None:
        if pulled == 8:  # half-way: what arrived so far is already on disk, in IMPORT_DIR
            sizes.extend(p.stat().st_size for p in import_dir(small_service).glob("*.csv"))

    body = Body(chunks=15, on_chunk=look)
    response = await api.post(
        f"/programs/{PROGRAM}/imports", content=body, headers=multipart(bearer(keys.operator))
    )
    assert response.status_code == 202, response.text
    assert sizes and sizes[0] > 0
    [stored] = import_dir(small_service).glob("*.csv")
    assert stored.stat().st_size > 15 * len(CHUNK)


async def test_an_upload_declared_too_large_is_413_without_reading_it(
    small_service: Service, api: httpx.AsyncClient, keys: Keys
) -> None:
    body = Body(chunks=10)
    headers = multipart({**bearer(keys.operator), "Content-Length": str(50 * 1024 * 1024)})
    response = await api.post(f"/programs/{PROGRAM}/imports", content=body, headers=headers)
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]
    assert body.pulled == 0


async def test_an_upload_streamed_past_the_limit_is_413_and_leaves_nothing_behind(
    small_service: Service, api: httpx.AsyncClient, keys: Keys
) -> None:
    body = Body(chunks=40)  # 2.5 MiB, chunked: no Content-Length to judge it by
    response = await api.post(
        f"/programs/{PROGRAM}/imports", content=body, headers=multipart(bearer(keys.operator))
    )
    assert response.status_code == 413, response.text
    assert " / " in response.json()["detail"]
    assert body.pulled < 40
    assert list(import_dir(small_service).glob("*")) == []


async def test_a_json_body_past_its_limit_is_413(api: httpx.AsyncClient, keys: Keys) -> None:
    response = await api.post(
        f"/programs/{PROGRAM}/workers",
        json={"nik": "1" * 100, "full_name": "x" * 100_000},
        headers=bearer(keys.operator),
    )
    assert response.status_code == 413


async def test_an_upload_without_a_file_part_is_422(api: httpx.AsyncClient, keys: Keys) -> None:
    response = await api.post(
        f"/programs/{PROGRAM}/imports",
        data={"note": "no file"},
        files={"other": ("x.csv", b"NIK\n1\n", "text/csv")},
        headers=bearer(keys.operator),
    )
    assert response.status_code == 422


async def test_the_limit_middleware_refuses_a_declared_size_before_the_app_runs() -> None:
    called: list[str] = []

    async def app(scope: object, receive: object, send: object) -> None:
        called.append("app")

    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        raise AssertionError("the body must not be read")

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    limited = BodySizeLimit(app, max_bytes=10, per_path=[(r"/big", 1000)])
    scope = {"type": "http", "path": "/small", "headers": [(b"content-length", b"11")]}
    await limited(scope, receive, send)  # type: ignore[arg-type]
    assert called == [] and sent[0]["status"] == 413
    await limited({**scope, "path": "/big"}, receive, send)  # type: ignore[arg-type]
    assert called == ["app"]
