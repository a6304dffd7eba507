"""The enrolment funnel per programme, rebuilt from the events themselves.

The CLI owns no database and reads no service's tables: it reads the topics (from the start, with
no consumer group) and counts distinct workers at each step, so duplicates on the wire do not
inflate anything.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rich.table import Table

from lindung_contracts import topics
from lindung_registration.domain import CoverageStatus, coverage_rank, coverage_status
from lindung_runtime.kafka import EventClient, Record, TopicReader


@dataclass
class Funnel:
    program_id: str
    registered: set[str] = field(default_factory=set)
    registration_rejected: dict[str, list[str]] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)
    eligibility_rejected: dict[str, list[str]] = field(default_factory=dict)
    invoice_lines: dict[tuple[str, str], int] = field(default_factory=dict)
    activated: set[str] = field(default_factory=set)
    expiring: set[tuple[str, int]] = field(default_factory=set)
    digests: dict[str, dict[str, object]] = field(default_factory=dict)
    # Terms after the first: workers carried into term N, those not carried (with reasons),
    # activations per term; and the workers whose cover ended unrenewed (with the reason).
    carried: dict[int, set[str]] = field(default_factory=dict)
    not_carried: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    activated_in: dict[int, set[str]] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)
    coverage: dict[str, int] = field(default_factory=dict)  # worker: coverage rank

    @property
    def invoiced_idr(self) -> int:
        return sum(self.invoice_lines.values())

    def invoices(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (invoice_id, _), amount in self.invoice_lines.items():
            totals[invoice_id] += amount
        return dict(totals)

    def reason_counts(self, rejected: dict[str, list[str]]) -> Counter[str]:
        return Counter(code for codes in rejected.values() for code in codes)

    def advance(self, worker_id: str, term: int, status: CoverageStatus) -> None:
        """A worker's coverage moves only forward, whatever order the topics arrive in: the
        registration service's rule (`coverage_rank`), so both count alike."""
        rank = coverage_rank(term, status)
        self.coverage[worker_id] = max(self.coverage.get(worker_id, 0), rank)

    def coverage_counts(self) -> Counter[str]:
        """Workers per coverage status of their latest term: `awaiting_payment`, `active`,
        `ended`, `not_carried` and `carried` (into a term, not yet paid), with the term."""
        counts: Counter[str] = Counter()
        for rank in self.coverage.values():
            if known := coverage_status(rank):
                counts[f"{known[0]} (term {known[1]})"] += 1
        return counts


FUNNEL_TOPICS = (
    topics.WORKER_REGISTERED,
    topics.REGISTRATION_REJECTED,
    topics.ELIGIBILITY_CONFIRMED,
    topics.ELIGIBILITY_REJECTED,
    topics.CONTRIBUTION_INVOICED,
    topics.COVERAGE_ACTIVATED,
    topics.COVERAGE_EXPIRING,
    topics.DIGEST_SENT,
    topics.COVERAGE_ENDED,
)


def rupiah(amount: int) -> str:
    return f"Rp {amount:,}"


def funnel_table(funnel: Funnel, title: str) -> Table:
    """One programme's funnel, a step per row (readable in an 80-column terminal)."""

    def reasons(rejected: dict[str, list[str]]) -> str:
        counts = funnel.reason_counts(rejected)
        return ", ".join(f"{code} {n}" for code, n in sorted(counts.items()))

    digests = "; ".join(
        f"{d['days_left']} hari sebelum {d['coverage_end']}: {d['worker_count']:,} peserta"
        for d in funnel.digests.values()
    )
    table = Table(title=title)
    table.add_column("Tahap / Step")
    table.add_column("Jumlah / Count", justify="right")
    table.add_column("Rincian / Detail")
    table.add_row("Terdaftar / registered", f"{len(funnel.registered):,}", "")
    table.add_row(
        "Ditolak saat pendaftaran / rejected",
        f"{len(funnel.registration_rejected):,}",
        reasons(funnel.registration_rejected),
    )
    table.add_row("Memenuhi syarat / confirmed", f"{len(funnel.confirmed):,}", "")
    table.add_row(
        "Tidak memenuhi syarat / not eligible",
        f"{len(funnel.eligibility_rejected):,}",
        reasons(funnel.eligibility_rejected),
    )
    table.add_row(
        "Tagihan iuran / invoiced",
        rupiah(funnel.invoiced_idr),
        f"{len(funnel.invoice_lines):,} lines on {', '.join(funnel.invoices()) or '-'}",
    )
    table.add_row("Kepesertaan aktif / activated", f"{len(funnel.activated):,}", "after payment")
    table.add_row("Peringatan / expiry alerts", f"{len(funnel.expiring):,}", "")
    table.add_row("Digest masa berakhir / expiry digests", f"{len(funnel.digests)}", digests)
    for term, carried in sorted(funnel.carried.items()):
        not_carried = funnel.not_carried.get(term, {})
        table.add_row(
            f"Diperpanjang ke periode {term} / carried into term {term}",
            f"{len(carried):,}",
            f"not carried {len(not_carried):,}: {reasons(not_carried)}" if not_carried else "",
        )
    if funnel.ended:
        table.add_row(
            "Kepesertaan berakhir / cover ended",
            f"{len(funnel.ended):,}",
            ", ".join(f"{c} {n}" for c, n in sorted(Counter(funnel.ended.values()).items())),
        )
    counts = funnel.coverage_counts()
    table.add_row(
        "Status kepesertaan / coverage status",
        "",
        ", ".join(f"{name} {n:,}" for name, n in sorted(counts.items())),
    )
    return table


class FunnelWatcher:
    """Keeps the funnels up to date by reading only what arrived since the last refresh."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.reader = TopicReader(bootstrap_servers, FUNNEL_TOPICS)
        self.funnels: dict[str, Funnel] = {}

    async def __aenter__(self) -> FunnelWatcher:
        await self.reader.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.reader.__aexit__(*exc)

    async def refresh(self) -> dict[str, Funnel]:
        for record in await self.reader.read_new():
            self._count(record)
        return self.funnels

    def _count(self, record: Record) -> None:
        try:
            body = record.json()
        except ValueError:
            return
        program_id = body.get("program_id", "")
        funnel = self.funnels.setdefault(program_id, Funnel(program_id))
        topic, term = record.topic, body.get("term", 1)
        if topic == topics.WORKER_REGISTERED:
            funnel.registered.add(body["worker_id"])
        elif topic == topics.REGISTRATION_REJECTED:
            funnel.registration_rejected[body["nik"]] = [e["code"] for e in body["errors"]]
        elif topic == topics.ELIGIBILITY_CONFIRMED:
            if body.get("carried"):
                funnel.carried.setdefault(term, set()).add(body["worker_id"])
                funnel.advance(body["worker_id"], term, "carried")
            else:
                funnel.confirmed.add(body["worker_id"])
        elif topic == topics.ELIGIBILITY_REJECTED:
            codes = [r["code"] for r in body["reasons"]]
            if body.get("carried"):
                funnel.not_carried.setdefault(term, {})[body["worker_id"]] = codes
                funnel.advance(body["worker_id"], term, "not_carried")
            else:
                funnel.eligibility_rejected[body["worker_id"]] = codes
        elif topic == topics.CONTRIBUTION_INVOICED:
            funnel.invoice_lines[(body["invoice_id"], body["worker_id"])] = body["amount_idr"]
            funnel.advance(body["worker_id"], term, "awaiting_payment")
        elif topic == topics.COVERAGE_ACTIVATED:
            funnel.activated.add(body["worker_id"])
            funnel.activated_in.setdefault(term, set()).add(body["worker_id"])
            funnel.advance(body["worker_id"], term, "active")
        elif topic == topics.COVERAGE_ENDED:
            funnel.ended[body["worker_id"]] = body["reason"]["code"]
            funnel.advance(body["worker_id"], term, "ended")
        elif topic == topics.COVERAGE_EXPIRING:
            funnel.expiring.add((body["worker_id"], body["days_left"]))
        elif topic == topics.DIGEST_SENT:
            funnel.digests[body["digest_id"]] = body


async def read_funnels(bootstrap_servers: str) -> dict[str, Funnel]:
    async with FunnelWatcher(bootstrap_servers) as watcher:
        return await watcher.refresh()


async def dead_letter_counts(client: EventClient) -> Counter[str]:
    counts: Counter[str] = Counter()
    async for record in client.read_all([topics.dead_letter_topic(t) for t in topics.ALL]):
        counts[record.topic] += 1
    return counts
