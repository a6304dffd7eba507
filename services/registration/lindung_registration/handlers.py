"""Registration's handlers: load, ask the domain, save, emit (and project what was emitted into
the worker timeline, in the same transaction).

`register` is the one registration use case of the HTTP API and spreadsheet imports;
the Kafka intake is its batch form (`on_registration_requested`). Both decide with the same pure
rule (`domain.decide_registrations`), so they validate and deduplicate the same way. A worker is
registered only for a programme the operator has published (`program.published`), whose terms
(`program.renewed`) registration keeps as every service numbers them.

Membership numbers (nomor KPJ) come back from BPJS Ketenagakerjaan the same two ways: the
`membership.number-assigned` consumer and the spreadsheet upload both decide with
`domain.assign_numbers` (`decide_numbers`) and store with `record_numbers`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import SimpleNamespace
from typing import Any, Literal

from sqlalchemy import insert
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from stdnum.id import nik as stdnum_nik

from lindung_contracts import (
    FieldError,
    MembershipNumberAssigned,
    ProgramPublished,
    ProgramRenewed,
    RegistrationRequested,
    renewal_outcome,
)
from lindung_registration import projection
from lindung_registration.db import (
    KnownProgram,
    KnownTerm,
    MembershipNumber,
    RejectedRequest,
    TimelineEntry,
    Worker,
)
from lindung_registration.domain import (
    KnownNumbers,
    NumberDecision,
    NumberRow,
    assign_numbers,
    candidate_worker_id,
    decide_registrations,
    normalise_kpj,
    printable,
    registration,
    rejection,
    worker_id_for,
)
from lindung_runtime import NotReadyYet
from lindung_runtime.errors import PermanentError, waited_out
from lindung_runtime.logging import get_logger
from lindung_runtime.messages import (
    Message,
    Outgoing,
    Transaction,
    columns,
    latest,
    trace_id_in,
)
from lindung_runtime.privacy import mask_nik

log = get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: Literal["registered", "repeated", "rejected"]
    worker_id: str | None = None
    errors: list[FieldError] = field(default_factory=list)


@dataclass(frozen=True)
class Intake:
    """A registration request from any intake, with what its answer cites and continues."""

    event: RegistrationRequested
    request_id: str | None  # cited by a rejection: the Kafka event's id, an import row
    trace: Mapping[str, str]  # the trace the answer continues


async def register_all(
    requests: list[Intake], tx: Transaction, *, wait_for_programs: bool = False
) -> list[tuple[Outcome, Outgoing | None]]:
    """Register each valid request once; answer an invalid one with every field error. Each
    request's outcome, and the event that answers it (none for a repeat).

    One query for the known programmes and one for the workers registered before; the pure
    rule decides; then one insert per table (workers, refusals, timeline) and one upsert of the
    funnel rows. A worker another instance registered meanwhile fails the insert: the caller
    retries, and the request is then a repeat."""
    program_ids = {r.event.program_id.strip() for r in requests} - {""}
    known = set(
        (
            await tx.connection.execute(
                select(KnownProgram.program_id).where(col(KnownProgram.program_id).in_(program_ids))
            )
        ).scalars()
    )
    if wait_for_programs and (missing := sorted(program_ids - known)) and not waited_out():
        raise NotReadyYet(f"programme {printable(missing[0], 64)!r} not published (yet)")
    registered = set(
        (
            await tx.connection.execute(
                select(Worker.worker_id).where(
                    col(Worker.worker_id).in_({candidate_worker_id(r.event) for r in requests})
                )
            )
        ).scalars()
    )
    decisions = decide_registrations([r.event for r in requests], known, registered)
    now = tx.now()
    workers, entries, changes, refused = [], [], [], []
    results: list[tuple[Outcome, Outgoing | None]] = []
    for request, decision in zip(requests, decisions, strict=True):
        trace_id = trace_id_in(request.trace)
        if decision.status == "rejected":
            rejected = rejection(request.event, decision.errors, request.request_id)
            out = Outgoing(rejected, request.trace)  # its id keys the timeline entry
            entries.append(projection.rejected_entry(rejected, out.event_id, trace_id, now))
            refused.append(projection.rejected_row(rejected, out.event_id))
            results.append((Outcome("rejected", errors=decision.errors), out))
            log.info(
                "registration_rejected",
                nik=mask_nik(rejected.nik),
                codes=[e.code for e in decision.errors],
            )
            continue
        assert decision.valid is not None
        if decision.status == "repeated":
            results.append((Outcome("repeated", worker_id=decision.valid.worker_id), None))
            continue
        event = registration(decision.valid, now)
        out = Outgoing(event, request.trace)
        workers.append(_worker_row(event))
        entries.append(projection.registered_entry(event, out.event_id, trace_id))
        changes.append(projection.registered_change(out.event_id, event))
        results.append((Outcome("registered", worker_id=event.worker_id), out))
    if workers:
        await tx.connection.execute(insert(Worker), workers)
    await tx.insert_new(RejectedRequest, refused)
    await projection.save(tx, entries, changes)
    log.debug(
        "registrations_decided",
        registered=len(workers),
        rejected=len(refused),
        repeated=len(requests) - len(workers) - len(refused),
    )
    return results


def _worker_row(event: Any) -> dict[str, Any]:
    """The worker's row, from its WorkerRegistered."""
    return {
        name: getattr(event, name)
        for name in (
            "worker_id",
            "program_id",
            "nik",
            "full_name",
            "birth_date",
            "gender",
            "occupation",
            "village",
            "district",
            "phone",
            "registered_at",
        )
    }


async def on_program_published(
    batch: list[Message[ProgramPublished]], tx: Transaction
) -> list[Outgoing]:
    """A new or amended programme: from now on workers may be registered for it (the batch's
    last word on each programme wins)."""
    programs = latest(batch, lambda p: p.program_id)
    await tx.upsert(
        KnownProgram,
        [
            {
                "program_id": p.program_id,
                "name": p.name,
                "sponsor": p.sponsor,
                "coverage_start": p.coverage_start,
                "coverage_end": p.coverage_end,
                "published_at": tx.now(),
            }
            for p in programs
        ],
        keys=["program_id"],
    )
    # The published coverage is term 1 (amended with the programme); renewals number on from it.
    await tx.upsert(
        KnownTerm,
        [
            {
                "program_id": p.program_id,
                "term": 1,
                "term_start": p.coverage_start,
                "term_end": p.coverage_end,
                "quota": p.quota,
                "renewed_at": tx.now(),
            }
            for p in programs
        ],
        keys=["program_id", "term"],
    )
    for p in programs:
        log.info("program_known", program_id=p.program_id)
    return []


async def known_terms(tx: Transaction, program_ids: Collection[str]) -> dict[str, list[Any]]:
    """Each programme's known terms (rows of `known_term`), in order; a programme not published
    (yet) has none."""
    term = columns(KnownTerm)
    terms: dict[str, list[Any]] = {}
    for row in await tx.rows(
        sa_select(*term)
        .where(term.program_id.in_(sorted(program_ids)))
        .order_by(term.program_id, term.term)
    ):
        terms.setdefault(row.program_id, []).append(row)
    return terms


async def on_program_renewed(
    batch: list[Message[ProgramRenewed]], tx: Transaction
) -> list[Outgoing]:
    """Record a programme's next term, numbered by the rule every service applies
    (`renewal_outcome`), so registration's term N is everyone's term N. A repeat changes
    nothing; an overlapping renewal is logged and left out (the services that act on it
    dead-letter it). A renewal of a programme not published yet waits for it, as they do."""
    terms = await known_terms(tx, {m.event.program_id for m in batch})
    if missing := sorted({m.event.program_id for m in batch} - set(terms)):
        raise NotReadyYet(f"programme {missing[0]!r} not published (yet)")
    new = []
    for message in batch:  # a programme's renewals come in order (one key, one partition)
        renewal = message.event
        known = terms[renewal.program_id]
        outcome = renewal_outcome(known, renewal.term_start, renewal.term_end)
        if outcome.kind == "overlaps":
            log.warning(
                "renewal_overlaps",
                program_id=renewal.program_id,
                term=outcome.term,
                term_start=renewal.term_start.isoformat(),
                term_end=renewal.term_end.isoformat(),
                event_id=message.id,
            )
            continue
        if outcome.kind == "same":
            log.info("renewal_repeated", program_id=renewal.program_id, term=outcome.term)
            continue
        row = {
            "program_id": renewal.program_id,
            "term": outcome.term,
            "term_start": renewal.term_start,
            "term_end": renewal.term_end,
            "quota": renewal.quota or known[-1].quota,
            "renewed_at": renewal.renewed_at,
        }
        known.append(SimpleNamespace(**row))  # the batch's next renewal numbers on from it
        new.append(row)
        log.info("program_renewed", program_id=renewal.program_id, term=outcome.term)
    await tx.insert_new(KnownTerm, new)
    return []


async def on_registration_requested(
    batch: list[Message[RegistrationRequested]], tx: Transaction
) -> list[Outgoing]:
    """Register a valid request once; answer an invalid one with every field error.

    A request for a programme not (yet) published waits for it, as the other services do: an
    operator who publishes a programme and its registrations at once expects them to succeed,
    and the two topics are consumed independently. Once the wait runs out
    (CONSUMER_NOT_READY_MAX_WAIT_SECONDS) the request is rejected as `program_unknown`, so the
    village system hears why, rather than dead-lettered."""
    results = await register_all(
        [Intake(m.event, m.id, m.trace) for m in batch], tx, wait_for_programs=True
    )
    return [out for _, out in results if out is not None]


# --- membership numbers (nomor KPJ) -------------------------------------------------------------


class UnknownNik(PermanentError):
    """A number for a NIK with no worker in the programme."""

    code = "unknown_nik"


class KpjConflict(PermanentError):
    """A number other than the one the worker has, or one another worker holds."""

    code = "kpj_conflict"


class InvalidNik(PermanentError):
    """A NIK of the right shape that is no NIK (its region or birth date is wrong)."""

    code = "nik_invalid"


REFUSALS: dict[str, type[PermanentError]] = {
    "unknown_nik": UnknownNik,
    "kpj_conflict": KpjConflict,
    "invalid": InvalidNik,
}


@dataclass(frozen=True)
class NumberIntake:
    """A NIK → KPJ pair from either path, with what its record needs."""

    row: NumberRow
    assigned_on: date
    reference: str
    trace: Mapping[str, str]  # the trace its timeline entry (and event) continue
    event_id: str | None = None  # the event it came in; None: an upload, which publishes one
    at: datetime | None = None  # when it was announced (the event's time); None: now


async def decide_numbers(intakes: list[NumberIntake], tx: Transaction) -> list[NumberDecision]:
    """Each pair's decision by the one rule (`assign_numbers`), against the workers of the pairs'
    NIKs and the holders of their numbers: two queries."""
    rows = [i.row for i in intakes]
    worker = columns(Worker)
    number = columns(MembershipNumber)
    candidates = {worker_id_for(r.program_id.strip(), stdnum_nik.compact(r.nik)[:64]) for r in rows}
    found = await tx.rows(
        sa_select(worker.program_id, worker.nik, number.kpj)
        .select_from(Worker)
        .outerjoin(MembershipNumber, number.worker_id == worker.worker_id)
        .where(worker.worker_id.in_(sorted(candidates)))
    )
    kpjs = {kpj for kpj in (normalise_kpj(r.kpj) for r in rows) if isinstance(kpj, str)}
    holders = await tx.rows(sa_select(number.kpj, number.nik).where(number.kpj.in_(sorted(kpjs))))
    known = KnownNumbers(
        workers={(f.program_id, f.nik): f.kpj for f in found},
        holders={h.kpj: h.nik for h in holders},
    )
    return assign_numbers(rows, known)


async def record_numbers(
    intakes: list[NumberIntake], decisions: list[NumberDecision], tx: Transaction
) -> list[Outgoing | None]:
    """Store each assigned number with its timeline entry. An upload's number is published
    (the event it returns, keyed by its id like the entry); an event's number is not published
    again. The others change nothing. A number another instance stored meanwhile fails the
    insert (a worker has one row, a programme's number one worker): the caller retries."""
    now = tx.now()
    numbers, entries = [], []
    published: list[Outgoing | None] = []
    for intake, decision in zip(intakes, decisions, strict=True):
        if decision.status != "assigned":
            published.append(None)
            continue
        assert decision.nik is not None and decision.kpj is not None
        event = MembershipNumberAssigned(
            program_id=intake.row.program_id.strip(),
            nik=decision.nik,
            kpj=decision.kpj,
            assigned_on=intake.assigned_on,
            reference=intake.reference,
        )
        out = Outgoing(event, intake.trace) if intake.event_id is None else None
        event_id = out.event_id if out is not None else intake.event_id
        assert event_id is not None
        worker_id = worker_id_for(event.program_id, event.nik)
        numbers.append(
            {
                "worker_id": worker_id,
                "program_id": event.program_id,
                "nik": event.nik,
                "kpj": event.kpj,
                "assigned_on": event.assigned_on,
                "reference": event.reference,
                "event_id": event_id,
                "recorded_at": now,
            }
        )
        entries.append(
            projection.number_entry(
                event, event_id, trace_id_in(intake.trace), worker_id, intake.at or now
            )
        )
        published.append(out)
    if numbers:
        await tx.connection.execute(insert(MembershipNumber), numbers)
    await tx.insert_new(TimelineEntry, entries)
    return published


async def on_membership_number_assigned(
    batch: list[Message[MembershipNumberAssigned]], tx: Transaction
) -> list[Outgoing]:
    """BPJS Ketenagakerjaan's numbers: each stored once, on the worker's timeline; the same
    number again changes nothing (an upload's own, read back, among them). A number for a NIK
    with no worker in the programme (`unknown_nik`), or a conflicting one (`kpj_conflict`), fails
    the batch: the runtime replays it one event at a time and dead-letters that event with its
    code, the others pass."""
    intakes = [
        NumberIntake(
            NumberRow(m.event.program_id, m.event.nik, m.event.kpj),
            m.event.assigned_on,
            m.event.reference,
            m.trace,
            event_id=m.id,
            at=m.time,
        )
        for m in batch
    ]
    decisions = await decide_numbers(intakes, tx)
    for decision in decisions:
        if (refusal := REFUSALS.get(decision.status)) is not None:
            log.warning(
                "membership_number_refused",
                nik=mask_nik(decision.row.nik),
                program_id=decision.row.program_id,
                code=decision.code,
            )
            raise refusal(
                f"{decision.errors[0].message} (NIK {mask_nik(decision.row.nik)}, "
                f"programme {decision.row.program_id!r})"
            )
    await record_numbers(intakes, decisions, tx)
    assigned = sum(d.status == "assigned" for d in decisions)
    log.info("membership_numbers_assigned", assigned=assigned, repeated=len(batch) - assigned)
    return []
