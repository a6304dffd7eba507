"""A size limit on every HTTP request body, as pure ASGI middleware in front of the app.

The limit is checked on the declared `Content-Length` before a byte is read, and again while the
body streams in (a chunked body declares nothing), so no route, form parser or temporary file ever
holds more than the limit: past it the answer is 413. Some paths (uploads) may take more than the
general limit; they name their own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lindung_runtime.logging import get_logger
from lindung_runtime.privacy import mask_text

log = get_logger(__name__)


def too_large_message(limit: int) -> str:
    return (
        f"Isi permintaan terlalu besar (batas {limit} bita) / "
        f"The request body is too large (limit {limit} bytes)"
    )


class BodyTooLarge(HTTPException):
    """Raised from `receive` once the body passes its limit. An HTTPException, so that whatever
    reads the body (FastAPI's parsers wrap other errors into a 400) lets it through as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))
        self.limit = limit


class BodySizeLimit:
    """`max_bytes` for every request; `per_path` gives (path regex, limit) pairs that override it
    (the first match wins). `page`, when given, answers a path with an HTML page (for people at a
    browser) instead of the JSON error: it returns the page, or None for JSON."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        per_path: Sequence[tuple[str, int]] = (),
        page: Callable[[str, int], str | None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = [(re.compile(pattern), limit) for pattern, limit in per_path]
        self.page = page

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.per_path:
            if pattern.fullmatch(path):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, send, limit)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if started:
                raise  # too late for a 413: the server closes the connection
            await self._refuse(scope, send, limit)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        log.info("http_body_too_large", path=mask_text(scope["path"]), limit=limit)
        html = self.page(scope["path"], limit) if self.page else None
        body = (
            html.encode()
            if html is not None
            else json.dumps({"detail": too_large_message(limit), "errors": []}).encode()
        )
        kind = b"text/html; charset=utf-8" if html is not None else b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", kind),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
