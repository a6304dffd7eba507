"""`lindung up`: the whole system on one machine, supervised.

Starts the embedded broker when `KAFKA_BOOTSTRAP_SERVERS` is unset and an SMTP sink (local, plain
SMTP: `SMTP_SECURITY=none`) when `SMTP_HOST` is unset, then runs each service as its own process
(as in production, where each is `lindung service NAME`), restarting one that dies, and stops them
gracefully (SIGTERM) on exit. Each serves /readyz and /metrics on its own admin port. The
broker and the sink are lindung-runtime's `embedded` extra: where it is not installed (the
production image), the stack stops at once with one line saying what to install or to set.

`Stack(..., instances=N)` runs N processes of each service (one, for `lindung up`): they share the
service's database (`<SERVICE>_DATABASE_URL`, which must then be one a second process can share,
i.e. PostgreSQL) and its consumer groups, and each has its own log file (`<service>-<i>.log`) and
admin port; the chaos tests use it to scale out.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import httpx
from pydantic import Field

from lindung_runtime.embedded import (
    EmbeddedKafka,
    EmbeddedNotInstalled,
    SmtpSink,
    free_port,
    require_embedded,
    wait_for_kafka,
)
from lindung_runtime.kafka import all_topics, ensure_topics
from lindung_runtime.logging import get_logger
from lindung_runtime.settings import LindungSettings

log = get_logger(__name__)

SERVICES = ("registration", "eligibility", "billing", "notification")
STACK_FILE = "stack.json"


class StackSettings(LindungSettings):
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: Literal["starttls", "tls", "none"] | None = Field(
        default=None, description="Passed on to notification; `none` for the stack's own sink"
    )
    registration_http_port: int = Field(
        default=8080, ge=0, le=65535, description="The registration API; 0 picks a free port"
    )


@dataclass
class Child:
    """One service process. `label` names it: the service's name, or `<service>-<i>` (i from 1)
    when the stack runs several instances of each service."""

    name: str
    log_path: Path
    http_port: int = 0
    admin_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    log_handle: IO[bytes] | None = field(default=None, repr=False)
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or self.name


class Stack:
    def __init__(
        self,
        settings: StackSettings,
        services: tuple[str, ...] = SERVICES,
        *,
        instances: int = 1,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        if instances < 1:
            raise ValueError(f"instances must be at least 1, not {instances}")
        self.settings = settings
        self.instances = instances
        self.extra_env = dict(extra_env or {})
        self.data_dir = settings.data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.broker: EmbeddedKafka | None = None
        self.smtp: SmtpSink | None = None
        self.bootstrap_servers = settings.kafka_bootstrap_servers or ""
        self.smtp_host = settings.smtp_host or ""
        self.smtp_port = settings.smtp_port or 25
        self.smtp_security = settings.smtp_security
        self.children = []
        for name in services:
            for i in range(instances):
                label = name if instances == 1 else f"{name}-{i + 1}"
                http_port = self._http_port_for(name) if i == 0 else free_port()
                self.children.append(
                    Child(name, self.logs / f"{label}.log", http_port, free_port(), label=label)
                )
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    def _http_port_for(self, name: str) -> int:
        """Registration's API on a known port; the others' health endpoints on free ones."""
        if name == "registration" and self.settings.registration_http_port:
            return self.settings.registration_http_port
        return free_port()

    @property
    def registration_url(self) -> str | None:
        first = next((c for c in self.children if c.name == "registration"), None)
        return f"http://127.0.0.1:{first.http_port}" if first else None

    @property
    def maildir(self) -> Path | None:
        return self.smtp.maildir if self.smtp else None

    async def __aenter__(self) -> Stack:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> None:
        try:  # before anything starts: nothing is left running when a part is missing
            require_embedded(broker=not self.bootstrap_servers, smtp=not self.smtp_host)
        except EmbeddedNotInstalled as error:
            raise SystemExit(str(error)) from None
        self.logs.mkdir(parents=True, exist_ok=True)
        if not self.bootstrap_servers:
            self.broker = EmbeddedKafka(self.logs / "broker.log")
            self.bootstrap_servers = await self.broker.start()
        else:
            await wait_for_kafka(self.bootstrap_servers)
        if self.settings.kafka_create_topics:
            await ensure_topics(
                self.bootstrap_servers,
                all_topics(),
                self.settings.kafka_partitions,
                self.settings.kafka_replication_factor,
            )
        if not self.smtp_host:
            self.smtp = SmtpSink(self.data_dir / "mail")
            self.smtp.start()
            self.smtp_host, self.smtp_port = "127.0.0.1", self.smtp.port
            self.smtp_security = "none"  # the sink speaks plain SMTP on 127.0.0.1
        for child in self.children:
            self._spawn(child)
        (self.data_dir / STACK_FILE).write_text(
            json.dumps(
                {
                    "kafka_bootstrap_servers": self.bootstrap_servers,
                    "registration_url": self.registration_url,
                    "admin_urls": {
                        c.label: f"http://127.0.0.1:{c.admin_port}" for c in self.children
                    },
                    "pid": os.getpid(),
                }
            )
        )
        self._watch = asyncio.create_task(self._supervise())

    def _child_env(self, child: Child) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["HTTP_PORT"] = str(child.http_port)
        env["ADMIN_PORT"] = str(child.admin_port)
        if self.smtp_security:
            env["SMTP_SECURITY"] = self.smtp_security
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
                "KAFKA_CREATE_TOPICS": "false",  # done once, above
                "LINDUNG_DATA_DIR": str(self.data_dir),
                "SMTP_HOST": self.smtp_host,
                "SMTP_PORT": str(self.smtp_port),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _spawn(self, child: Child) -> None:
        if child.log_handle is None:
            child.log_handle = child.log_path.open("ab")
        child.process = subprocess.Popen(
            [sys.executable, "-m", "lindung_cli", "service", child.name],
            env=self._child_env(child),
            stdout=child.log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # we forward signals ourselves, once, in order
        )
        log.info("service_process_started", service=child.label, pid=child.process.pid)

    async def _supervise(self) -> None:
        """Restart a service that died, with backoff; a crash loop is visible in the logs."""
        while not self._stopping:
            await asyncio.sleep(0.5)
            for child in self.children:
                if self._stopping or child.process is None or child.process.poll() is None:
                    continue
                child.restarts += 1
                delay = min(30.0, 0.5 * 2 ** min(child.restarts, 6))
                log.error(
                    "service_process_died",
                    service=child.label,
                    exit_code=child.process.returncode,
                    restart_in_s=delay,
                    log=str(child.log_path),
                )
                await asyncio.sleep(delay)
                if not self._stopping:
                    self._spawn(child)

    def child(self, name: str) -> Child:
        """The process labelled `name`, else the first instance of the service `name`."""
        return next(
            (c for c in self.children if c.label == name),
            next((c for c in self.children if c.name == name), None),
        ) or _no_such_child(name)

    def instances_of(self, name: str) -> list[Child]:
        """Every process of the service `name` (or the one labelled `name`)."""
        return [c for c in self.children if name in (c.name, c.label)]

    def admin_url(self, name: str) -> str:
        """Where the service (its first instance, or the process labelled `name`) serves /readyz,
        /metrics and the API docs."""
        return f"http://127.0.0.1:{self.child(name).admin_port}"

    async def readyz(self, name: str) -> int | None:
        """The HTTP status of the service's /readyz, or None while nothing answers."""
        url = f"{self.admin_url(name)}/readyz"
        try:
            async with httpx.AsyncClient(timeout=5.0) as http:
                return (await http.get(url)).status_code
        except httpx.HTTPError:
            return None

    async def wait_ready(self, names: Sequence[str] | None = None, timeout: float = 90.0) -> None:
        """Until each service answers /readyz with 200.

        A service serves HTTP only after its subscribers have started, and a subscriber's start
        waits until its consumer group has assigned it partitions: a ready service consumes at
        once. (Process start-up and the group joins take 5-15 s here, more with four services
        starting together on two cores, so a fixed sleep is either wasted or too short.)
        """
        deadline = time.monotonic() + timeout
        labels = [c.label for n in names for c in self.instances_of(n)] if names else None
        for name in labels or [c.label for c in self.children]:
            while (status := await self.readyz(name)) != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{name} not ready after {timeout:.0f} s (/readyz: {status}; "
                        f"log: {self.child(name).log_path})"
                    )
                await asyncio.sleep(0.2)

    def alive(self) -> dict[str, bool]:
        return {c.label: c.process is not None and c.process.poll() is None for c in self.children}

    async def stop(self, grace_seconds: float = 20.0) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for child in self.children:
            if child.process is None:
                continue
            while child.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if child.process.poll() is None:
                log.warning("service_process_killed", service=child.label)
                child.process.kill()
                child.process.wait()
            if child.log_handle is not None:
                child.log_handle.close()
                child.log_handle = None
        if self.smtp is not None:
            self.smtp.stop()
        if self.broker is not None:
            self.broker.stop()
        (self.data_dir / STACK_FILE).unlink(missing_ok=True)


def _no_such_child(name: str) -> Child:
    raise KeyError(f"no service process {name!r} in this stack")


def resolve_bootstrap(settings: LindungSettings) -> str:
    """`KAFKA_BOOTSTRAP_SERVERS`, else the broker of a `lindung up` running on this data dir."""
    if settings.kafka_bootstrap_servers:
        return settings.kafka_bootstrap_servers
    stack_file = settings.data_dir / STACK_FILE
    if stack_file.exists():
        return str(json.loads(stack_file.read_text())["kafka_bootstrap_servers"])
    raise SystemExit(
        "No broker: set KAFKA_BOOTSTRAP_SERVERS, "
        "or start `lindung up` (same LINDUNG_DATA_DIR) first."
    )
