"""The chaos tests' harness: the four services as separate processes (`lindung up`'s supervisor,
`Stack`) against a real broker process (Tansu) that the test owns and may stop, and a real SMTP
server (aiosmtpd) the test can take down or make refuse; a seeded workload with known outcomes;
and a census that reads every output topic and counts, per worker, the *distinct* events
(CloudEvents ids) each step produced.

What "lost" and "duplicated" mean (the same in every scenario):

- Publishing is at-least-once (the outbox marks a row sent only after the broker acknowledged it),
  so after a crash the same event may appear twice on a topic under the SAME `ce_id`. That is not
  a duplicate: every consumer skips an id its inbox has seen. Such re-sent records are counted
  and shown (`re-sent records`), never hidden.
- A DUPLICATE is an effect that happened twice: a request answered by two different rejections, a
  worker registered, decided, invoiced, activated or alerted under two different event ids, a
  worker both confirmed and rejected, more than one digest announced, a digest mail accepted by
  the mail server more than once, an invoice whose total is not the sum of its lines, or more
  seats taken than the quota.
- LOST is an expected effect that never happened: a request neither registered nor rejected, a
  registered worker without a decision, a confirmed one without an invoice line (or activation,
  or expiry alert, once those steps run), a worker missing from the digest mail, or no mail. A
  record of the workload that reached a dead-letter topic is lost too, even if a re-drive later
  repaired its effect: faults (a crash, an outage, a restart) are waited out, never dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import email
import email.policy
import io
import json
import os
import random
import signal
import sqlite3
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiosmtpd.controller import Controller

from lindung_cli.funnel import FUNNEL_TOPICS
from lindung_cli.stack import Child, Stack, StackSettings
from lindung_contracts import (
    DayStarted,
    Event,
    PaymentReceived,
    ProgramPublished,
    RegistrationRequested,
    cloudevent_headers,
    topics,
)
from lindung_runtime.embedded import EmbeddedKafka, free_port
from lindung_runtime.kafka import EventClient, GroupOffsets, Record, TopicReader, ensure_topics
from tests.conftest import run_lindung
from tests.sources import trusted_source

PROGRAM = "chaos-2025q4"
#: The CloudEvents ids of test_poison's hostile messages start so (tests/chaos/hostile.py).
HOSTILE_ID_PREFIX = "hostile-"
START = date(2025, 10, 1)
END = date(2025, 12, 31)
ALERT_DAY = date(2025, 12, 1)  # 30 days before END: billing alerts, notification mails a digest
STAFF = ["chaos@example.go.id"]
ID_NAMESPACE = uuid.UUID("0c4a05a1-5e11-4c1d-9f0e-6b2f3c9d7e21")

#: Every consumer group of the system: one per (service, topic) (Service.group_for).
CONSUMES: dict[str, tuple[str, ...]] = {
    "registration": (
        topics.REGISTRATION_REQUESTED,
        topics.ELIGIBILITY_CONFIRMED,
        topics.ELIGIBILITY_REJECTED,
        topics.CONTRIBUTION_INVOICED,
        topics.PAYMENT_RECEIVED,
        topics.COVERAGE_ACTIVATED,
        topics.COVERAGE_EXPIRING,
    ),
    "eligibility": (topics.PROGRAM_PUBLISHED, topics.DAY_STARTED, topics.WORKER_REGISTERED),
    "billing": (
        topics.PROGRAM_PUBLISHED,
        topics.ELIGIBILITY_CONFIRMED,
        topics.PAYMENT_RECEIVED,
        topics.DAY_STARTED,
    ),
    "notification": (topics.PROGRAM_PUBLISHED, topics.COVERAGE_EXPIRING),
}
SERVICES = tuple(CONSUMES)


def group(service: str, topic: str) -> str:
    return f"lindung-{service}.{topic}"


def consumers_of(topic: str) -> list[str]:
    return [service for service, consumed in CONSUMES.items() if topic in consumed]


def event_id(*parts: object) -> str:
    """Upstream systems' ids are stable: a re-sent request carries the id it had the first time."""
    return str(uuid.uuid5(ID_NAMESPACE, "/".join(str(p) for p in parts)))


def say(line: str) -> None:
    print(line, flush=True)


# --- the workload -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    event_id: str
    event: RegistrationRequested
    kind: str  # "eligible", "underage" (eligibility rejects it) or "invalid" (registration does)


@dataclass
class Workload:
    """N registration requests with known outcomes, and the programme they are for.

    One in 20 has an invalid gender (registration rejects it), one in 25 of the rest was born in
    2010 (eligibility rejects it: under 18), and the quota leaves `over_quota` eligible workers
    without a seat (quota_exhausted): confirmed == quota exactly, whatever crashed meanwhile.
    """

    seed: int
    requests: list[Request]
    quota: int
    over_quota: int

    @classmethod
    def generate(cls, n: int, seed: int, over_quota: int = 40) -> Workload:
        requests = []
        for i in range(n):
            kind = "invalid" if i % 20 == 7 else "underage" if i % 25 == 3 else "eligible"
            requests.append(Request(event_id(seed, "request", i), _request(i, kind), kind))
        eligible = sum(1 for r in requests if r.kind == "eligible")
        return cls(seed, requests, quota=eligible - over_quota, over_quota=over_quota)

    def of_kind(self, kind: str) -> list[Request]:
        return [r for r in self.requests if r.kind == kind]

    @property
    def valid_niks(self) -> set[str]:
        return {r.event.nik for r in self.requests if r.kind != "invalid"}

    @property
    def invalid_ids(self) -> set[str]:
        return {r.event_id for r in self.requests if r.kind == "invalid"}

    @property
    def underage_niks(self) -> set[str]:
        return {r.event.nik for r in self.requests if r.kind == "underage"}

    def program(self) -> ProgramPublished:
        return ProgramPublished(
            program_id=PROGRAM,
            name="Chaos",
            sponsor="Pemerintah Kabupaten Sumba Barat Daya",
            region_code="5318",
            quota=self.quota,
            coverage_start=START,
            coverage_end=END,
            alert_days_before_end=[30],
            staff_emails=STAFF,
        )

    def setup(self) -> list[tuple[str, Event]]:
        """The programme and the first business day, with stable ids (re-sendable)."""
        return [
            (event_id(self.seed, "program"), self.program()),
            (event_id(self.seed, "day", START), DayStarted(date=START)),
        ]

    def payment(self, amount: int) -> tuple[str, PaymentReceived]:
        return event_id(self.seed, "payment"), PaymentReceived(
            invoice_id=f"INV-{PROGRAM}",
            amount_idr=amount,
            paid_at=datetime(2025, 10, 15, 9, 0, tzinfo=UTC),
            reference=f"SP2D-chaos-{self.seed}",
        )

    def alert_day(self) -> tuple[str, DayStarted]:
        return event_id(self.seed, "day", ALERT_DAY), DayStarted(date=ALERT_DAY)


def _request(i: int, kind: str) -> RegistrationRequested:
    """A distinct valid NIK per i < 109,989 (district and serial from i; birth date by kind)."""
    district = f"{i % 11 + 1:02d}"
    serial = (i // 11) % 9999 + 1
    born = (
        date(2010, 3, 1) + timedelta(days=i % 200)
        if kind == "underage"
        else date(1975, 1, 1) + timedelta(days=i % 3000)
    )
    female = i % 2 == 1
    day = born.day + (40 if female else 0)
    nik = f"5318{district}{day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"
    return RegistrationRequested(
        program_id=PROGRAM,
        nik=nik,
        full_name=f"Pekerja Chaos {i}",
        birth_date=born.strftime("%d/%m/%Y"),
        gender="X" if kind == "invalid" else ("P" if female else "L"),
        occupation="Petani",
        village=f"Desa {i % 173}",
        district=f"Kecamatan {district}",
        phone=f"0812{i:08d}" if i % 3 == 0 else None,
    )


async def publish(
    bootstrap: str, events: Sequence[tuple[str, Event]], source: str | None = None
) -> None:
    """Publish with the given CloudEvents ids (as an upstream system re-driving its own events
    does), without waiting on each send; each from `source`, else from a source its topic's
    consumers trust."""
    async with EventClient(bootstrap) as client:
        for start in range(0, len(events), 5000):
            pending = []
            for ce_id, event in events[start : start + 5000]:
                headers = cloudevent_headers(
                    event.ce_type(), source or trusted_source(event.TOPIC, "chaos"), event_id=ce_id
                )
                key = event.key()
                pending.append(
                    await client.producer.send(
                        event.TOPIC,
                        event.model_dump_json().encode(),
                        key=key.encode() if key else None,
                        headers=[(k, v.encode()) for k, v in headers.items()],
                    )
                )
            await asyncio.gather(*pending)


async def publish_requests(bootstrap: str, requests: Sequence[Request]) -> None:
    await publish(bootstrap, [(r.event_id, r.event) for r in requests])


# --- the mail server ----------------------------------------------------------------------------


class Mailbox:
    """aiosmtpd handler: accepts (and keeps) mail, or refuses it with a temporary error."""

    def __init__(self) -> None:
        self.accepted: list[EmailMessage] = []
        self.refused = 0
        self.refusing = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refusing:
            self.refused += 1
            return "451 4.3.0 Mail server busy, try again later"
        self.accepted.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)  # type: ignore[arg-type]
        )
        return "250 Message accepted for delivery"


class MailServer:
    """An SMTP server on a fixed port that can stop listening and come back on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self._controller: Controller | None = None

    @property
    def listening(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        if self._controller is None:
            self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
            self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def digest_rows(self) -> list[list[dict[str, str]]]:
        """The CSV rows of each accepted digest mail, every raw delivery counted."""
        return [rows for _, rows in self.digest_mails()]

    def digest_mails(self) -> list[tuple[str, list[dict[str, str]]]]:
        """(Message-ID, CSV rows) of each accepted digest mail, every raw delivery counted: a
        digest's resend carries its Message-ID, a follow-up digest of the window its own."""
        result = []
        for message in self.mailbox.accepted:
            [attachment] = list(message.iter_attachments())
            content = attachment.get_content()
            text = content.decode() if isinstance(content, bytes) else content
            result.append((str(message["Message-ID"]), list(csv.DictReader(io.StringIO(text)))))
        return result


# --- the system under test ----------------------------------------------------------------------


#: Loaded by every service process of a scaled-out System (PYTHONPATH): it appends each
#: consumer's partition assignment, as the group coordinator handed it out, to
#: $LINDUNG_CHAOS_ASSIGNMENTS/<pid>.jsonl. (Tansu answers DescribeGroups with the members but
#: without their assignments, so the harness asks the consumers themselves.)
ASSIGNMENT_HOOK = '''"""Chaos harness hook (tests/chaos/kit.py): records partition assignments."""
import json, os, time

_dir = os.environ.get("LINDUNG_CHAOS_ASSIGNMENTS")
if _dir:
    from aiokafka.consumer.subscription_state import SubscriptionState

    _assign = SubscriptionState.assign_from_subscribed

    def _recording(self, assignment):
        _assign(self, assignment)
        line = {
            "pid": os.getpid(),
            "consumer": id(self),
            "topics": sorted(self.topics or ()),
            "partitions": sorted([tp.topic, tp.partition] for tp in assignment),
            "at": time.time(),
        }
        with open(os.path.join(_dir, f"{os.getpid()}.jsonl"), "a") as out:
            out.write(json.dumps(line) + "\\n")

    SubscriptionState.assign_from_subscribed = _recording
'''


class System:
    """Broker process + SMTP server + the four services as supervised processes (`instances`
    processes of each; more than one needs a database they can share: run on PostgreSQL)."""

    def __init__(
        self,
        work: Path,
        *,
        services: tuple[str, ...] = SERVICES,
        instances: int = 1,
    ) -> None:
        self.work = work
        self.data_dir = work / "lindung"
        self.broker = EmbeddedKafka(work / "broker.log")
        self.mail = MailServer()
        self.services = services
        self.instances = instances
        self.assignment_dir = work / "assignments"
        self.stack: Stack | None = None
        self.started = time.monotonic()

    def _extra_env(self) -> dict[str, str]:
        """For several instances: the assignment hook (see ASSIGNMENT_HOOK)."""
        if self.instances == 1:
            return {}
        hooks = self.work / "hooks"
        hooks.mkdir(parents=True, exist_ok=True)
        (hooks / "sitecustomize.py").write_text(ASSIGNMENT_HOOK)
        self.assignment_dir.mkdir(parents=True, exist_ok=True)
        path = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH")) if p)
        return {"PYTHONPATH": path, "LINDUNG_CHAOS_ASSIGNMENTS": str(self.assignment_dir)}

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    async def __aenter__(self) -> System:
        await self.broker.start()
        await ensure_topics(self.bootstrap)
        self.mail.start()
        self.stack = Stack(
            StackSettings(
                LINDUNG_DATA_DIR=str(self.data_dir),
                kafka_bootstrap_servers=self.bootstrap,
                smtp_host="127.0.0.1",
                smtp_port=self.mail.port,
                smtp_security="none",  # the test's server speaks plain SMTP
                registration_http_port=0,
            ),
            services=self.services,
            instances=self.instances,
            extra_env=self._extra_env(),
        )
        await self.stack.start()
        await self.wait_ready()
        self.started = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.stack is not None:
            await self.stack.stop()
        self.mail.stop()
        self.broker.stop()
        if exc and exc[0] is not None:
            say(f"(chaos run data and service logs: {self.data_dir})")

    def child(self, name: str) -> Child:
        assert self.stack is not None
        return self.stack.child(name)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def alive_now(self) -> dict[str, bool]:
        assert self.stack is not None
        return self.stack.alive()

    def restarts(self) -> dict[str, int]:
        """Per process label (the service's name when it runs one instance)."""
        assert self.stack is not None
        return {c.label: c.restarts for c in self.stack.children}

    def labels(self, services: Sequence[str] | None = None) -> list[str]:
        """The service processes' labels, e.g. ["billing-1", "billing-2"] for two instances."""
        assert self.stack is not None
        return [c.label for c in self.stack.children if c.name in (services or self.services)]

    # readiness ----------------------------------------------------------------------------------

    async def readyz(self, name: str) -> int | None:
        """The HTTP status of the service's /readyz, or None if nothing answers."""
        assert self.stack is not None
        return await self.stack.readyz(name)

    async def wait_ready(self, names: Sequence[str] | None = None, timeout: float = 90.0) -> None:
        assert self.stack is not None
        await self.stack.wait_ready(names, timeout)

    # faults -------------------------------------------------------------------------------------

    def kill(self, name: str) -> int:
        """SIGKILL the service's process (or the instance labelled `name`; no shutdown hook runs);
        the supervisor restarts it."""
        process = self.child(name).process
        assert process is not None and process.poll() is None, f"{name} is not running"
        os.kill(process.pid, signal.SIGKILL)
        return process.pid

    async def wait_restarted(self, name: str, old_pid: int, timeout: float = 60.0) -> None:
        def respawned() -> bool:
            process = self.child(name).process
            return process is not None and process.pid != old_pid and process.poll() is None

        await until(respawned, timeout=timeout, what=f"{name} restarted by the supervisor")

    def stop_broker(self) -> None:
        self.broker.stop()

    async def start_broker_again(self) -> None:
        """A new broker process on the same port; memory storage starts empty, so the operator
        creates the topics again before the services reach it.

        Production Kafka does not create topics on first use (`auto.create.topics.enable=false`,
        deploy/), so a service cannot write to a topic before the operator has made it. Tansu
        does create them, and a produce racing the operator's CreateTopics gets offsets that
        overlap earlier records (bench/broker_offsets.py: 4,000 acked, end offsets summing to
        3,305-3,905; the broker logs `AlreadyExists` for batch files), so a consumer resuming from
        a committed offset can skip a record. Before this, 1 of the scenario's last 8 runs ended
        with 29 decisions missing from the topics though every service's database was complete.
        So the services are frozen (SIGSTOP) while the broker starts and the topics are made: to
        them, a little more outage.
        """
        assert self.stack is not None
        frozen = [c.process for c in self.stack.children if c.process and c.process.poll() is None]
        for process in frozen:
            os.kill(process.pid, signal.SIGSTOP)
        try:
            self.broker = EmbeddedKafka(self.work / "broker-after.log", port=self.broker.port)
            await self.broker.start()
            await ensure_topics(self.bootstrap)
        finally:
            for process in frozen:
                os.kill(process.pid, signal.SIGCONT)

    # the operator's tools -----------------------------------------------------------------------

    async def lindung(self, *args: str, timeout: float = 120.0) -> str:
        """Run the `lindung` CLI against this system as an operator would; its output (it must
        succeed)."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "LINDUNG_DATA_DIR": str(self.data_dir.resolve()),
        }
        code, text = await run_lindung(*args, env=env, timeout=timeout)
        assert code == 0, f"lindung {' '.join(args)} failed:\n{text}"
        return text

    async def lag(self, service: str, topic: str) -> int:
        async with GroupOffsets(self.bootstrap) as offsets:
            return await offsets.lag(group(service, topic), [topic])

    async def total_lag(self, services: Sequence[str] | None = None) -> dict[str, int]:
        """Lag per consumer group that has any."""
        lags = {}
        async with GroupOffsets(self.bootstrap) as offsets:
            for service in services or self.services:
                for topic in CONSUMES[service]:
                    if lag := await offsets.lag(group(service, topic), [topic]):
                        lags[group(service, topic)] = lag
        return lags

    def db(self, service: str) -> Path:
        return self.data_dir / f"{service}.db"

    def query(self, service: str, sql: str) -> list[tuple[Any, ...]]:
        """Read the service's database: its SQLite file, or the PostgreSQL database its processes
        were given (`<SERVICE>_DATABASE_URL`, set by tests/conftest.py on PostgreSQL runs)."""
        url = os.environ.get(f"{service.upper()}_DATABASE_URL", "")
        if url.startswith("postgresql"):
            return _postgres_query(url, sql)
        with sqlite3.connect(f"file:{self.db(service)}?mode=ro", uri=True, timeout=30) as conn:
            return list(conn.execute(sql).fetchall())

    # scale-out ----------------------------------------------------------------------------------

    def assignments(self) -> dict[str, dict[str, list[int]]]:
        """Per consumer group, the partitions each live process holds now (its latest assignment,
        as recorded by ASSIGNMENT_HOOK): {"lindung-billing.x": {"billing-1": [0, 2], ...}}."""
        assert self.stack is not None
        result: dict[str, dict[str, list[int]]] = defaultdict(dict)
        for child in self.stack.children:
            process = child.process
            if process is None or process.poll() is not None:
                continue
            path = self.assignment_dir / f"{process.pid}.jsonl"
            latest: dict[int, dict[str, Any]] = {}
            if path.exists():
                for line in path.read_text().splitlines():
                    entry = json.loads(line)
                    latest[entry["consumer"]] = entry
            for entry in latest.values():
                for topic in entry["topics"]:
                    result[group(child.name, topic)][child.label] = sorted(
                        p for t, p in entry["partitions"] if t == topic
                    )
        return dict(result)

    async def group_members(self) -> dict[str, int]:
        """Per consumer group of the system, how many members the broker lists (DescribeGroups,
        one group per request: Tansu 0.6.0 answers a request for several with a response aiokafka
        cannot decode)."""
        members: dict[str, int] = {}
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            for service in self.services:
                for topic in CONSUMES[service]:
                    name = group(service, topic)
                    for response in await admin.describe_consumer_groups([name]):
                        for entry in response.groups:
                            members[entry[1]] = len(entry[5])
        finally:
            await admin.close()
        return members

    def acknowledged(self) -> dict[str, set[str]]:
        """Per topic, the ids of the events the services' relays had the broker acknowledge (their
        outbox rows marked sent)."""
        acked: dict[str, set[str]] = defaultdict(set)
        for service in self.services:
            for topic, ce_id in self.query(
                service, "SELECT topic, event_id FROM outbox WHERE published_at IS NOT NULL"
            ):
                acked[topic].add(ce_id)
        return dict(acked)

    def unsent_outbox(self) -> dict[str, int]:
        return {
            name: self.query(name, "SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0]
            for name in self.services
        }


def _postgres_query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """One query on PostgreSQL, from sync code that may run inside the test's event loop."""
    import asyncpg

    async def run() -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(run())).result()


async def until(
    probe: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    every: float = 0.5,
    detail: Callable[[], Any] | None = None,
) -> Any:
    """Poll `probe` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            extra = detail() if detail else None
            if isinstance(extra, Awaitable):
                extra = await extra
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} ({extra})")
        await asyncio.sleep(every)


#: `until`, or something called like it (Redriver.until).
Waiter = Callable[..., Awaitable[Any]]


# --- the census ---------------------------------------------------------------------------------


@dataclass
class Census:
    """Distinct event ids per worker and step, read off the topics (from their start, no group).

    It survives a broker restart: `reset_reader` reads the new (empty, then re-driven) topics from
    their start and the sets simply grow; an event re-published under its own id adds nothing.
    """

    bootstrap: str
    registered: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    nik_of: dict[str, str] = field(default_factory=dict)
    rejected_requests: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    confirmed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    ineligible: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    reasons: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    invoiced: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    amounts: dict[str, int] = field(default_factory=dict)
    activated: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    expiring: dict[tuple[str, int], set[str]] = field(default_factory=lambda: defaultdict(set))
    digests: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    digest_sizes: dict[str, int] = field(default_factory=dict)
    records: Counter[str] = field(default_factory=Counter)
    other_programmes: Counter[str] = field(default_factory=Counter)
    ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    #: (original topic, error code) -> records of the workload (not hostile input) dead-lettered
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)
    _reader: TopicReader | None = None

    async def __aenter__(self) -> Census:
        await self.reset_reader()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close_reader()

    async def close_reader(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            try:
                await asyncio.wait_for(reader.__aexit__(), timeout=10)
            except Exception as error:  # the broker it read from may be gone
                say(f"(census reader did not close cleanly: {error!r})")

    async def reset_reader(self, bootstrap: str | None = None) -> None:
        await self.close_reader()
        self.bootstrap = bootstrap or self.bootstrap
        consumed = sorted({t for names in CONSUMES.values() for t in names})
        reader = TopicReader(
            self.bootstrap, [*FUNNEL_TOPICS, *(topics.dead_letter_topic(t) for t in consumed)]
        )
        await reader.__aenter__()
        self._reader = reader

    async def refresh(self) -> Census:
        assert self._reader is not None
        for record in await self._reader.read_new():
            self._count(record)
        return self

    def _count(self, record: Record) -> None:
        topic = record.topic
        ce_id = record.headers.get("ce_id", "")
        if "x-chaos-id" in record.headers:  # hostile input (test_poison), not the system's
            self.other_programmes[topic] += 1
            return
        if topic.endswith(topics.DLQ_SUFFIX):
            original = topic.removesuffix(topics.DLQ_SUFFIX)
            self.dead_letters[(original, record.headers.get("x-lindung-error-code", ""))] += 1
            return
        body = record.json()
        if body.get("program_id") != PROGRAM or str(body.get("request_id")).startswith(
            HOSTILE_ID_PREFIX
        ):  # e.g. hostile input's rejections (for the chaos programme: it must be known)
            self.other_programmes[topic] += 1
            return
        self.records[topic] += 1
        self.ids[topic].add(ce_id)
        if topic == topics.WORKER_REGISTERED:
            self.registered[body["worker_id"]].add(ce_id)
            self.nik_of[body["worker_id"]] = body["nik"]
        elif topic == topics.REGISTRATION_REJECTED:
            self.rejected_requests[body["request_id"]].add(ce_id)
        elif topic == topics.ELIGIBILITY_CONFIRMED:
            self.confirmed[body["worker_id"]].add(ce_id)
        elif topic == topics.ELIGIBILITY_REJECTED:
            self.ineligible[body["worker_id"]].add(ce_id)
            self.reasons[body["worker_id"]].update(r["code"] for r in body["reasons"])
        elif topic == topics.CONTRIBUTION_INVOICED:
            self.invoiced[body["worker_id"]].add(ce_id)
            self.amounts[body["worker_id"]] = body["amount_idr"]
        elif topic == topics.COVERAGE_ACTIVATED:
            self.activated[body["worker_id"]].add(ce_id)
        elif topic == topics.COVERAGE_EXPIRING:
            self.expiring[(body["worker_id"], body["days_left"])].add(ce_id)
        elif topic == topics.DIGEST_SENT:
            self.digests[body["digest_id"]].add(ce_id)
            self.digest_sizes[body["digest_id"]] = body["worker_count"]

    @property
    def decided(self) -> int:
        return len(self.confirmed.keys() | self.ineligible.keys())

    @property
    def resent_records(self) -> int:
        """Records published again under an id already on the topic (at-least-once)."""
        return sum(self.records[t] - len(self.ids[t]) for t in self.records)

    def progress(self) -> str:
        dead = f", dead-lettered {dict(self.dead_letters)}" if self.dead_letters else ""
        return (
            f"registered {len(self.registered):,}, rejected {len(self.rejected_requests):,}, "
            f"decided {self.decided:,}, invoiced {len(self.invoiced):,}, "
            f"activated {len(self.activated):,}, expiring {len(self.expiring):,}, "
            f"digests {len(self.digests)}{dead}"
        )


@dataclass
class Outcome:
    requests: int
    confirmed: int
    invoice_lines: int
    duplicates: int
    lost: int
    detail: dict[str, int]
    resent: int

    def line(self, scenario: str, seconds: float, extra: str = "") -> str:
        return (
            f"chaos {scenario}: requests sent {self.requests:,}, workers confirmed "
            f"{self.confirmed:,}, invoice lines {self.invoice_lines:,}, duplicates "
            f"{self.duplicates}, lost {self.lost} ({seconds:.0f} s; re-sent records with the same "
            f"id {self.resent:,}{'; ' + extra if extra else ''})"
        )

    def problems(self) -> dict[str, int]:
        return {k: v for k, v in self.detail.items() if v}


def judge(
    census: Census,
    workload: Workload,
    system: System,
    *,
    through: str = "digest",
) -> Outcome:
    """Compare what happened with what the workload must produce. `through`: how far the
    lifecycle ran ("invoice", "activation" or "digest")."""
    steps = ("invoice", "activation", "digest")
    upto = steps.index(through)
    detail: dict[str, int] = {}

    def dup(mapping: dict[Any, set[str]]) -> int:
        return sum(1 for ids in mapping.values() if len(ids) > 1)

    detail["lost: record of the workload dead-lettered"] = sum(census.dead_letters.values())
    registered_niks = set(census.nik_of.values())
    valid = workload.valid_niks
    detail["lost: valid request not registered"] = len(valid - registered_niks)
    detail["dup: unexpected worker registered"] = len(registered_niks - valid)
    detail["dup: worker registered twice"] = dup(census.registered)
    rejected_ids = set(census.rejected_requests)
    detail["lost: invalid request not rejected"] = len(workload.invalid_ids - rejected_ids)
    detail["dup: unexpected rejection"] = len(rejected_ids - workload.invalid_ids)
    detail["dup: request rejected twice"] = dup(census.rejected_requests)

    decided = {
        w: census.confirmed.get(w, set()) | census.ineligible.get(w, set())
        for w in census.registered
    }
    detail["lost: registered worker never decided"] = sum(1 for ids in decided.values() if not ids)
    detail["dup: worker decided twice"] = sum(1 for ids in decided.values() if len(ids) > 1)
    detail["dup: confirmed and rejected"] = len(census.confirmed.keys() & census.ineligible.keys())
    confirmed = set(census.confirmed)
    detail["dup: seats above the quota"] = max(0, len(confirmed) - workload.quota)
    detail["lost: seats below the quota"] = max(0, workload.quota - len(confirmed))
    underage = {w for w, nik in census.nik_of.items() if nik in workload.underage_niks}
    detail["dup: underage worker confirmed"] = len(underage & confirmed)
    exhausted = sum(1 for codes in census.reasons.values() if "quota_exhausted" in codes)
    detail["lost: quota_exhausted rejections missing"] = max(0, workload.over_quota - exhausted)

    invoiced = set(census.invoiced)
    detail["lost: confirmed worker not invoiced"] = len(confirmed - invoiced)
    detail["dup: invoiced without confirmation"] = len(invoiced - confirmed)
    detail["dup: worker invoiced twice"] = dup(census.invoiced)
    lines = system.query(
        "billing", "SELECT count(*), coalesce(sum(amount_idr), 0) FROM invoice_line"
    )
    [(line_count, line_total)] = lines
    invoices = system.query("billing", "SELECT total_idr FROM invoice")
    detail["dup: billing lines != distinct invoiced workers"] = max(0, line_count - len(invoiced))
    detail["lost: billing lines != distinct invoiced workers"] = max(0, len(invoiced) - line_count)
    detail["dup: invoice total != sum of its lines"] = int(
        sum(t for (t,) in invoices) != line_total or line_total != sum(census.amounts.values())
    )
    per_invoice = system.query(
        "billing",
        "SELECT i.invoice_id FROM invoice i LEFT JOIN invoice_line l ON l.invoice_id = "
        "i.invoice_id GROUP BY i.invoice_id, i.total_idr "
        "HAVING i.total_idr != coalesce(sum(l.amount_idr), 0)",
    )
    detail["dup: an invoice's total != the sum of that invoice's lines"] = len(per_invoice)
    [(seats,)] = system.query(
        "eligibility", f"SELECT confirmed_count FROM program WHERE program_id = '{PROGRAM}'"
    )
    detail["dup: eligibility seat count != confirmed"] = int(seats != len(confirmed))

    if upto >= 1:
        activated = set(census.activated)
        detail["lost: invoiced worker not activated"] = len(invoiced - activated)
        detail["dup: activated without invoice"] = len(activated - invoiced)
        detail["dup: worker activated twice"] = dup(census.activated)
    if upto >= 2:
        alerted = {w for (w, _) in census.expiring}
        detail["lost: active worker not alerted"] = len(set(census.activated) - alerted)
        detail["dup: worker alerted twice"] = dup(census.expiring)
        # One window, one digest, unless workers were alerted while it was being mailed: they
        # go out in a follow-up digest (notification's handlers), with its own Message-ID.
        detail["dup: digest announced twice"] = sum(len(ids) - 1 for ids in census.digests.values())
        detail["lost: no digest announced"] = int(not census.digests)
        mails = system.mail.digest_mails()
        distinct = dict(mails)  # Message-ID -> rows
        detail["dup: digest mail accepted twice"] = len(mails) - len(distinct)
        detail["lost: no digest mail"] = int(not mails)
        mailed = [row["worker_id"] for rows in distinct.values() for row in rows]
        detail["lost: confirmed worker missing from the digest mail"] = len(confirmed - set(mailed))
        detail["dup: worker twice in the digest mail"] = len(mailed) - len(set(mailed))
    return Outcome(
        requests=len(workload.requests),
        confirmed=len(confirmed),
        invoice_lines=line_count,
        duplicates=sum(v for k, v in detail.items() if k.startswith("dup")),
        lost=sum(v for k, v in detail.items() if k.startswith("lost")),
        detail=detail,
        resent=census.resent_records,
    )


async def drive_lifecycle_after_invoices(
    system: System,
    census: Census,
    workload: Workload,
    *,
    timeout: float,
    during_alerts: Callable[[], Awaitable[None]] | None = None,
    wait: Waiter | None = None,
) -> None:
    """Pay the invoice, then start the alert day; wait for activation, alerts and the digest
    (with `wait`, e.g. a Redriver's, else `until`)."""
    wait = wait or until
    amount = sum(census.amounts.values())
    await publish(system.bootstrap, [workload.payment(amount)])
    await wait(
        lambda: _refreshed(census, lambda c: len(c.activated) >= len(c.invoiced)),
        timeout=timeout,
        what="every invoiced worker activated",
        every=1.0,
        detail=census.progress,
    )
    await publish(system.bootstrap, [workload.alert_day()])
    if during_alerts is not None:
        await during_alerts()
    await wait(
        lambda: _refreshed(
            census, lambda c: bool(c.digests) and bool(system.mail.mailbox.accepted)
        ),
        timeout=timeout,
        what="the digest to be mailed and announced",
        every=1.0,
        detail=census.progress,
    )


async def pay_alert_and_judge(
    system: System,
    census: Census,
    workload: Workload,
    *,
    timeout: float,
    while_paying: Callable[[], Awaitable[None]],
    during_alerts: Callable[[], Awaitable[None]],
    wait: Waiter,
) -> tuple[Outcome, int, int]:
    """The lifecycle after the invoices with a fault while paying and one during the alerts,
    then settle and judge: (outcome, raw digest deliveries at the SMTP server, digests by
    Message-ID; a follow-up digest has its own id)."""
    paying = asyncio.create_task(while_paying())
    await drive_lifecycle_after_invoices(
        system, census, workload, timeout=timeout, during_alerts=during_alerts, wait=wait
    )
    await paying
    await settle(system)
    await census.refresh()
    outcome = judge(census, workload, system, through="digest")
    mails = system.mail.digest_mails()  # every DATA the SMTP server accepted
    return outcome, len(mails), len({message_id for message_id, _ in mails})


async def _refreshed(census: Census, check: Callable[[Census], bool]) -> bool:
    return check(await census.refresh())


async def wait_for_decisions(
    census: Census, workload: Workload, timeout: float, wait: Waiter | None = None
) -> None:
    """Every request answered (registered or rejected), every worker decided and, if confirmed,
    invoiced (waiting with `wait`, e.g. a Redriver's, else `until`)."""
    valid = len(workload.valid_niks)
    invalid = len(workload.invalid_ids)

    def done(c: Census) -> bool:
        return (
            len(c.registered) >= valid
            and len(c.rejected_requests) >= invalid
            and c.decided >= len(c.registered)
            and len(c.invoiced) >= len(c.confirmed)
        )

    await (wait or until)(
        lambda: _refreshed(census, done),
        timeout=timeout,
        what="every request registered or rejected, decided and invoiced",
        every=1.0,
        detail=census.progress,
    )


async def settle(system: System, timeout: float = 120.0) -> None:
    """Every consumer group has committed past everything and every outbox is drained."""

    async def settled() -> bool:
        return not await system.total_lag() and not any(system.unsent_outbox().values())

    async def why() -> str:
        return f"lag {await system.total_lag()}, unsent {system.unsent_outbox()}"

    await until(settled, timeout=timeout, what="lag 0 and outboxes drained", every=2.0, detail=why)


async def raw_producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **options)
    await producer.start()
    return producer


# --- the broker's own losses (scale-out) -------------------------------------------------------


@dataclass
class BrokerAudit:
    """What the services' relays had acknowledged by the broker against what its topics hold.

    Tansu 0.6.0 can give two acknowledged records one offset when several producers write a
    partition at once (bench/broker_offsets.py), and two instances of a service are two producers:
    a record may then be missing from the topic although the broker acknowledged it (Lindung
    marked it sent), or be read from the start yet skipped by a consumer group that resumes from
    a committed offset. Neither is Lindung's loss; `lindung outbox replay` repairs both.
    """

    acknowledged: int
    records: int
    missing: dict[str, int]  # per topic: acknowledged event ids not on the topic
    shared_offsets: dict[str, int]  # per topic: records read at an offset another record has

    @property
    def lost(self) -> int:
        return sum(self.missing.values())

    @property
    def shared(self) -> int:
        return sum(self.shared_offsets.values())

    def line(self) -> str:
        missing = f" {self.missing}" if self.missing else ""
        shared = f" {self.shared_offsets}" if self.shared_offsets else ""
        return (
            f"broker: {self.acknowledged:,} records acknowledged to the relays, {self.records:,} "
            f"read back; acknowledged but not on the topic {self.lost}{missing}; "
            f"records sharing an offset {self.shared}{shared}"
        )


async def audit_broker(system: System) -> BrokerAudit:
    acked = system.acknowledged()
    on_topic: dict[str, set[str]] = defaultdict(set)
    offsets: Counter[tuple[str, int, int]] = Counter()
    records = 0
    async with TopicReader(system.bootstrap, sorted(acked)) as reader:
        for record in await reader.read_new():
            records += 1
            on_topic[record.topic].add(record.headers.get("ce_id", ""))
            offsets[(record.topic, record.partition, record.offset)] += 1
    shared: Counter[str] = Counter()
    for (topic, _, _), count in offsets.items():
        if count > 1:
            shared[topic] += count - 1
    missing = {t: len(ids - on_topic[t]) for t, ids in acked.items() if ids - on_topic[t]}
    return BrokerAudit(sum(len(i) for i in acked.values()), records, missing, dict(shared))


class Redriver:
    """`until` that repairs the broker's losses: when the system has gone quiet (every group
    committed to the end, every outbox drained, every process up, nothing new on the topics for
    `quiet` seconds) but the awaited state has not come, it audits the broker, then re-drives as
    an operator would: `lindung outbox replay --since` the run's start, and the upstream inputs
    again under their own ids. It re-drives only when the audit finds a loss of the broker's
    (acknowledged records missing from a topic, or two records at one offset); each re-drive is
    kept (`redrives`) with its audit. Any other stall is Lindung's own loss: it times out."""

    def __init__(
        self,
        system: System,
        census: Census,
        workload: Workload,
        since: datetime,
        quiet: float = 30.0,
    ) -> None:
        self.system = system
        self.census = census
        self.workload = workload
        self.since = since
        self.quiet = quiet
        self.redrives: list[tuple[str, BrokerAudit]] = []

    async def quiescent(self) -> bool:
        return (
            all(self.system.alive_now().values())
            and not any(self.system.unsent_outbox().values())
            and not await self.system.total_lag()
        )

    async def redrive(self, what: str) -> None:
        audit = await audit_broker(self.system)
        if not (audit.lost or audit.shared):  # the broker kept everything: the loss is Lindung's
            say(
                f"stalled at {self.system.elapsed():.0f}s waiting for {what} "
                f"({self.census.progress()}); {audit.line()}; not re-driving"
            )
            return
        say(
            f"stalled at {self.system.elapsed():.0f}s waiting for {what} "
            f"({self.census.progress()}); {audit.line()}; re-driving"
        )
        self.redrives.append((what, audit))
        await self.system.lindung(
            "outbox", "replay", "--since", self.since.strftime("%Y-%m-%d %H:%M:%S")
        )
        await publish(self.system.bootstrap, self.workload.setup())
        answered = set(self.census.nik_of.values()) | set(self.census.rejected_requests)
        unanswered = [
            r
            for r in self.workload.requests
            if r.event.nik not in answered and r.event_id not in answered
        ]
        if unanswered:
            await publish_requests(self.system.bootstrap, unanswered)

    async def until(
        self,
        probe: Callable[[], Any],
        *,
        timeout: float,
        what: str,
        every: float = 0.5,
        detail: Callable[[], Any] | None = None,
    ) -> Any:
        last = ""
        changed = time.monotonic()

        async def probe_or_redrive() -> Any:
            nonlocal last, changed
            value = probe()
            if isinstance(value, Awaitable):
                value = await value
            if value:
                return value
            now, state = time.monotonic(), f"{self.census.progress()} {self.census.records}"
            if state != last:
                last, changed = state, now
            elif now - changed > self.quiet and await self.quiescent():
                await self.redrive(what)
                changed = time.monotonic()
            return value

        return await until(probe_or_redrive, timeout=timeout, what=what, every=every, detail=detail)


class Killer:
    """SIGKILLs service instances and waits for the supervisor to restart them; `kills` lists
    each kill as `label@seconds(lag …)` for the scenario's line."""

    def __init__(self, system: System, census: Census, rng: random.Random) -> None:
        self.system = system
        self.census = census
        self.rng = rng
        self.kills: list[str] = []

    async def kill(self, name: str, busy: Callable[[Census], bool]) -> None:
        """Kill `name` once it is up and has records it has not committed yet (mid-batch), or
        after 20 s of waiting for that (then the log says "idle")."""
        await self.system.wait_ready([name])  # killed while working, not while starting
        lag = 0

        async def has_work() -> bool:
            nonlocal lag
            lag = sum((await self.system.total_lag([name])).values())
            return lag > 0

        with contextlib.suppress(AssertionError):  # then it is killed idle, and the log says so
            await until(has_work, timeout=20, what=f"{name} to have work", every=0.2)
        await self.census.refresh()
        await self._kill(name, f"lag {lag:,}, {'busy' if lag and busy(self.census) else 'idle'}")

    async def kill_one_of(self, service: str) -> None:
        """Kill one instance of `service`, picked at random (scaled-out systems)."""
        label = self.rng.choice(self.system.labels([service]))
        await self.system.wait_ready([label])  # killed while working, not while starting
        lag = sum((await self.system.total_lag([service])).values())
        await self.census.refresh()
        await self._kill(label, f"lag {lag:,}")

    async def _kill(self, label: str, state: str) -> None:
        pid = self.system.kill(label)
        moment = f"{label}@{self.system.elapsed():.0f}s({state})"
        self.kills.append(moment)
        say(f"kill -9 {moment}: {self.census.progress()}")
        await self.system.wait_restarted(label, pid)


class DatabaseRestarter:
    """Crashes the PostgreSQL server the services share (`.ci/postgres.sh down`: an immediate
    shutdown, every connection cut mid-transaction) and starts it again on its own data after
    `down` seconds, as a failover or a node restart would; `restarts` lists each as
    `@seconds(down …)` for the scenario's line."""

    def __init__(self, system: System, census: Census, ctl: str) -> None:
        self.system = system
        self.census = census
        self.ctl = ctl
        self.restarts: list[str] = []
        # Two faults may fall due together (while paying, during the alerts): one crash at a
        # time, or the second `down` finds the server already down.
        self._one_at_a_time = asyncio.Lock()

    async def _ctl(self, action: str) -> None:
        process = await asyncio.create_subprocess_exec(
            self.ctl, action, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, f"postgres.sh {action}: {output.decode()[-2000:]}"

    async def restart(self, down: float) -> None:
        async with self._one_at_a_time:
            await self.census.refresh()
            moment = f"@{self.system.elapsed():.0f}s(down {down:.1f} s)"
            say(f"database crash {moment}: {self.census.progress()}")
            await self._ctl("down")
            await asyncio.sleep(down)
            await self._ctl("up")
            self.restarts.append(moment)
