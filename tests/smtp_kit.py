"""A real local SMTP server (aiosmtpd) for the notification tests, unit and integration alike:
it keeps every mail it accepts so that a test can read what was sent, and to whom."""

from __future__ import annotations

import csv
import email
import email.policy
import io
from email.message import EmailMessage
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller

from lindung_runtime.embedded import free_port


class SmtpInbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(e.content, policy=email.policy.default)  # type: ignore[misc]
            for e in self.envelopes
        ]


class SmtpServer:
    """An SMTP server on 127.0.0.1:`port` (a free one unless given) that is up between `start()`
    and `stop()`, or for the length of a `with` block."""

    def __init__(self, port: int | None = None) -> None:
        self.port = free_port() if port is None else port
        self.inbox = SmtpInbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def attachment_rows(message: EmailMessage) -> list[dict[str, str]]:
    """The rows of the mail's one attachment, a CSV file."""
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/csv"
    content = attachment.get_content()
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    return list(csv.DictReader(io.StringIO(text)))
