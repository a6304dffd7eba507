"""Registration's HTTP API fuzzed from its own OpenAPI document (Schemathesis): whatever a caller
sends, the service answers with a documented status, content type and body, never a 5xx.

The service runs for real (its FastStream app started against a Tansu broker, so `/readyz` says
ready, the outbox relays and imports are processed in the background) on an event loop in a thread
of its own; each request is sent in-process to its ASGI app (`service.http`) on that same loop,
with an operator key. (Schemathesis' own ASGI transport would run the app on another event loop,
away from the service's database and broker clients.)
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from lindung_registration.app import create_service
from lindung_registration.auth import create_key
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import Service
from tests.integration.conftest import on_broker, running
from tests.programmes import publish_known

pytestmark = pytest.mark.integration

REQUEST_TIMEOUT = 30.0
BASE_URL = "http://testserver"
PROGRAM = "sbd-2025q4"

#: Every check that judges the response alone: no 5xx, documented status codes, content types and
#: headers, bodies matching the documented schemas. (Checks that send requests of their own, such
#: as `ignored_auth`, need Schemathesis' own transport.)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]

#: Examples per operation in the fuzzing phase (the examples and coverage phases add their own).
#: Set LINDUNG_FUZZ_EXAMPLES=500 (say) to fuzz longer, with a fresh random seed each run.
FUZZ_EXAMPLES = os.environ.get("LINDUNG_FUZZ_EXAMPLES")


@dataclass
class LiveService:
    """The registration service running on its own event loop, reached in-process over ASGI."""

    service: Service
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    api_key: str

    def send(
        self, method: str, url: str, headers: dict[str, str] | None = None, content: bytes = b""
    ) -> httpx.Response:
        call = self.client.request(method, url, headers=headers, content=content)
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(REQUEST_TIMEOUT)

    def send_case(self, case: schemathesis.Case) -> tuple[dict[str, str], httpx.Response]:
        """The request exactly as Schemathesis would send it (its serialisers, plus the operator
        key; coverage cases about a missing header still leave it out)."""
        auth = {"Authorization": f"Bearer {self.api_key}"}
        data: dict[str, Any] = case.as_transport_kwargs(base_url=BASE_URL, headers=auth)
        fields = ("headers", "params", "cookies", "json", "data", "files")
        request = requests.Request(
            data["method"], data["url"], **{f: data.get(f) for f in fields}
        ).prepare()
        body = request.body or b""
        assert isinstance(body, bytes | str)
        headers = {
            name: value if isinstance(value, str) else value.decode("latin-1")
            for name, value in request.headers.items()
        }
        content = body.encode() if isinstance(body, str) else body
        return headers, self.send(request.method or "GET", request.url or "/", headers, content)


@pytest.fixture
def live(kafka_bootstrap: str, data_dir: Path) -> Iterator[LiveService]:
    settings_ = RegistrationSettings(**on_broker(data_dir, kafka_bootstrap))
    api_key = create_key(settings_.api_keys_path, "schemathesis", "operator")
    service = create_service(settings_)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="registration-loop", daemon=True)
    thread.start()
    started: Future[None] = Future()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with running(service):
                await publish_known(service, PROGRAM)
                started.set_result(None)
                await stop.wait()
        except BaseException as error:
            if not started.done():
                started.set_exception(error)
            raise

    async def readyz(service: Service) -> httpx.Response:
        """/readyz is on the admin app, not the API under test."""
        transport = httpx.ASGITransport(app=service.admin_http)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as admin:
            return await admin.get("/readyz")

    async def open_client() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.http), base_url=BASE_URL)

    served = asyncio.run_coroutine_threadsafe(serve(), loop)
    try:
        started.result(timeout=60)
        client = asyncio.run_coroutine_threadsafe(open_client(), loop).result()
        live = LiveService(service, loop, client, api_key)
        try:
            ready = asyncio.run_coroutine_threadsafe(readyz(service), loop).result(60)
            assert ready.status_code == 200, ready.text
            yield live
        finally:
            asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(REQUEST_TIMEOUT)
    finally:
        loop.call_soon_threadsafe(stop.set)
        try:
            served.result(timeout=60)
        except TimeoutError:
            raise AssertionError(
                "the registration service did not stop within 60 s; its event loop's tasks:\n"
                + task_stacks(loop, thread)
            ) from None
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            if not thread.is_alive():
                loop.close()


def task_stacks(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> str:
    """What a stop that hangs is stuck on: the loop thread's own stack (which shows a call that
    blocks the loop), then where each of its tasks waits, if the loop still answers; the tasks
    running Lindung's own code come last, where a log cut to its tail still shows them."""
    frame = sys._current_frames().get(thread.ident or -1)
    stacks = ["loop thread:\n" + "".join(traceback.format_stack(frame)) if frame else ""]

    async def dump() -> list[str]:
        tasks = []
        for task in asyncio.all_tasks():
            out = io.StringIO()
            task.print_stack(limit=12, file=out)
            tasks.append(out.getvalue())
        return sorted(tasks, key=lambda stack: "lindung_" in stack)

    try:
        stacks += asyncio.run_coroutine_threadsafe(dump(), loop).result(10)
    except TimeoutError:
        stacks.append("(the loop did not answer within 10 s: something blocks it)")
    return "\n".join(stacks)


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document, as the service serves it at /openapi.json. It depends on no
    setting, so a service that is never started is enough to produce it at collection time."""
    blueprint = create_service(RegistrationSettings(database_url="sqlite+aiosqlite:///:memory:"))
    return blueprint.http.openapi()


schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@schema.parametrize()
@settings(
    max_examples=int(FUZZ_EXAMPLES or 40),
    deadline=None,
    derandomize=FUZZ_EXAMPLES is None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_the_api_fail_or_break_its_contract(
    case: schemathesis.Case, live: LiveService
) -> None:
    headers, response = live.send_case(case)
    case.validate_response(response, checks=CHECKS, headers=headers)


# --- what Hypothesis does not generate by default -------------------------------------------------

WORKER = {
    "nik": "5318010101900001",
    "full_name": "Yohanes Bili",
    "birth_date": "1990-01-01",
    "gender": "L",
    "village": "Kalena Wanno",
    "district": "Kota Tambolaka",
    "phone": "0812-3456-7890",
}
JSON = {"content-type": "application/json"}
MULTIPART = {"content-type": "multipart/form-data; boundary=B"}


def hostile_requests() -> list[tuple[str, str, dict[str, str], bytes]]:
    """Lone surrogates (as JSON escapes), NUL and escape characters, non-UTF-8 bytes, numbers past
    the float and int limits, deep nesting, huge strings; in bodies, paths, queries and uploads."""
    workers = f"/programs/{PROGRAM}/workers"
    out: list[tuple[str, str, dict[str, str], bytes]] = []
    for field in WORKER:
        for value in (r"\ud800", r"\udfff\ud800", r"x\u0000y", r"\u001b[31m", r"\ufeff\u200b"):
            text = json.dumps(WORKER)[:-1] + f', "{field}": "{value}"}}'
            out.append(("POST", workers, JSON, text.encode()))
    for raw in (
        b'{"nik": 1e999, "full_name": -1e999}',
        b'{"nik": NaN, "birth_date": Infinity}',
        b'{"nik": ' + b"9" * 5000 + b"}",
        b"[" * 100_000,
        b'{"nik": "\xff"}',
        b"\xff\xfe{}",
        b'{"nik": "' + b"1" * 2_000_000 + b'"}',
        b'{"\\ud800": 1, "nik": "5318010101900001"}',
    ):
        out.append(("POST", workers, JSON, raw))
    for path in (
        "/workers/%00",
        "/workers/%ED%A0%80",
        "/workers/%FF%FE",
        "/imports/%00",
        "/imports/%ED%A0%80/errors.csv",
        "/imports/" + "a" * 5000,
        "/imports/x?offset=99999999999999999999999&limit=-1",
        f"/programs/{PROGRAM}/summary?%00=%ED%A0%80",
    ):
        out.append(("GET", path, {}, b""))
    for filename in (b"\xed\xa0\x80.csv", b"\xff.csv", b"a\x00b.csv", b"../../x.csv"):
        upload = (
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
            b"Content-Type: text/csv\r\n\r\n"
            b"NIK,Nama Lengkap\n\x00,\xed\xa0\x80\n5318010101900001,\x1b\r\n--B--\r\n"
        )
        out.append(("POST", f"/programs/{PROGRAM}/imports", MULTIPART, upload))
    no_file = b'--B\r\nContent-Disposition: form-data; name="file"\r\n'
    for broken in (b"garbage", b"--B\r\n", no_file):
        out.append(("POST", f"/programs/{PROGRAM}/imports", MULTIPART, broken))
    return out


def test_hostile_bytes_get_a_client_error_never_a_server_error(live: LiveService) -> None:
    auth = {"Authorization": f"Bearer {live.api_key}"}
    answers: list[tuple[str, str, bytes, int]] = []
    imports: list[str] = []
    filenames: list[str] = []
    for method, path, headers, body in hostile_requests():
        response = live.send(method, path, {**auth, **headers}, body)
        answers.append((method, path[:60], body[:60], response.status_code))
        if response.status_code == 202:
            imports.append(response.json()["progress_url"])

    # The accepted uploads (odd file names, NUL and broken UTF-8 in cells) are processed, and
    # their reports and errors.csv served.
    assert len(imports) == 4
    for progress_url in imports:
        for _ in range(600):
            report = live.send("GET", progress_url, auth)
            answers.append(("GET", progress_url, b"", report.status_code))
            if report.status_code != 200 or report.json()["status"] in ("done", "failed"):
                break
            time.sleep(0.05)
        assert report.json()["status"] == "done", report.text
        assert report.json()["rejected"] == 2, report.text
        filenames.append(report.json()["filename"])
        errors = live.send("GET", f"{progress_url}/errors.csv", auth)
        answers.append(("GET", f"{progress_url}/errors.csv", b"", errors.status_code))
        assert errors.status_code == 200 and len(errors.text.splitlines()) == 3, errors.text

    # Control characters in a file name are replaced before it is stored (PostgreSQL cannot
    # store NUL); undecodable bytes arrive already replaced.
    assert "a\ufffdb.csv" in filenames and not any("\x00" in name for name in filenames)
    assert not [a for a in answers if a[3] >= 500]
    assert {code for *_, code in answers} <= {200, 201, 202, 400, 404, 413, 422}, answers
    # The 2 MB string is refused by the body limit, before any JSON is parsed.
    assert [a for a in answers if a[3] == 413] == [
        a for a in answers if a[0] == "POST" and a[2].startswith(b'{"nik": "111')
    ]
