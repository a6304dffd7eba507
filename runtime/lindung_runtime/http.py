"""The HTTP side of a service, on two ports: the public one (`HTTP_PORT`: `/healthz` and the
routes a service adds, registration's API) and the admin one (`ADMIN_PORT`: `/readyz`,
`/metrics`, and the API's `/docs`, `/redoc` and `/openapi.json`). Metrics and readiness name the
system's insides and the docs map its surface: they are for operators and probes, not for the
callers of the API, so they are not served where the API is exposed.

Both are served by uvicorn inside the service's own process and event loop, next to its Kafka
subscribers, so a probe sees the very process it is asking about.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from lindung_runtime.logging import get_logger
from lindung_runtime.privacy import mask_text

log = get_logger(__name__)

READY_TIMEOUT_SECONDS = 2.0


Check = Callable[[], Awaitable[bool]]


def create_http_app(name: str, **fastapi_options: Any) -> FastAPI:
    """The public app: `/healthz`; the service may include more routers. Its OpenAPI document
    (`app.openapi()`) is served by the admin app, not here."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **fastapi_options)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process is serving")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @app.middleware("http")
    async def access_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """uvicorn's access log is off: paths carry NIKs (`/workers/{nik}`, written with any
        separators), so log them masked."""
        started = time.perf_counter()
        response = await call_next(request)
        if request.url.path != "/healthz":
            log.info(
                "http_request",
                method=request.method,
                path=mask_text(request.url.path),
                status=response.status_code,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
        return response

    return app


def create_admin_app(
    name: str,
    *,
    public: FastAPI,
    checks: dict[str, Check],
    render_metrics: Callable[[], bytes],
) -> FastAPI:
    """The admin app: `/healthz`, `/readyz` (each of `checks` must answer), `/metrics`, and the
    public app's API docs."""
    app = FastAPI(
        title=f"Lindung {name} (admin)",
        docs_url="/docs",
        redoc_url="/redoc",
        openapi_url="/openapi.json",
    )
    # The document served (and shown by /docs) is the public API's, read when asked: the
    # service adds its routes to the public app after this app is made.
    app.openapi = lambda: public.openapi()  # type: ignore[method-assign]

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: the broker and the database both answer (503 otherwise, with which)."""
        results = await readiness(checks)
        ready = all(results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": results},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)

    return app


def database_check(read_session: Callable[[], Any]) -> Check:
    """The database answers a `SELECT 1`."""

    async def database() -> bool:
        async with read_session() as session:
            await session.exec(text("SELECT 1"))
        return True

    return database


def broker_check(broker: Any) -> Check:
    """The broker answers FastStream's ping."""

    async def check() -> bool:
        return bool(await broker.ping(timeout=READY_TIMEOUT_SECONDS))

    return check


async def readiness(checks: dict[str, Check]) -> dict[str, bool]:
    results = {}
    for name, check in checks.items():
        try:
            results[name] = await asyncio.wait_for(check(), timeout=READY_TIMEOUT_SECONDS + 1)
        except Exception as error:
            log.warning("readiness_check_failed", check=name, error=repr(error)[:300])
            results[name] = False
    return results


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the FastStream app owns SIGTERM/SIGINT and stops
    the HTTP server itself, after the subscribers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    def __init__(self, app: FastAPI, host: str, port: int, name: str = "http") -> None:
        self.server = _Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                access_log=False,
                log_config=None,
                lifespan="off",
                timeout_graceful_shutdown=5,
            )
        )
        self.host, self.port, self.name = host, port, name
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(), name=f"{self.name}-server")
        while not self.server.started:
            if self._task.done():
                self._task.result()  # e.g. the port is taken: fail the start-up loudly
                raise RuntimeError("HTTP server stopped before it started")
            await asyncio.sleep(0.05)
        log.info(f"{self.name}_serving", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._task is None:
            return
        task, self._task = self._task, None
        self.server.should_exit = True
        # Waits without taking the server's outcome as its own: a cancellation of stop() itself
        # still propagates (a suppressed `await` would swallow it too).
        done, _ = await asyncio.wait([task], timeout=10)
        if not done:
            task.cancel()
            await asyncio.wait([task])
