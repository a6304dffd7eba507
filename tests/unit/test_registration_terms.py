"""Programme terms in registration: the terms it keeps (`program.renewed`, numbered like every
service numbers them), each worker's coverage status (whatever order the topics arrive in),
and the API that shows it and publishes renewals (`POST /programs/{id}/renewals`).

The API is driven in-process without a broker, as in test_api_auth: what a renewal publishes
is read from the outbox, and handed back to the service's own consumer to stand for Kafka.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from itertools import permutations
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from structlog.testing import capture_logs

from lindung_contracts import (
    ContributionInvoiced,
    CoverageActivated,
    CoverageEnded,
    EligibilityConfirmed,
    EligibilityRejected,
    Event,
    ProgramRenewed,
    Reason,
    topics,
)
from lindung_registration.app import create_service
from lindung_registration.db import KnownTerm, TimelineEntry, WorkerStatus
from lindung_registration.domain import (
    STAGES,
    coverage_dates,
    coverage_rank,
    coverage_status,
    worker_id_for,
)
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import FixedClock, Service
from tests.programmes import publish_known
from tests.unit.handler_kit import (
    PROGRAM,
    QUICK_GIVE_UP,
    DeadLetters,
    emitted,
    founding_program,
    handle_now,
    outbox,
    publish,
    rows,
    with_tables,
)
from tests.unit.test_api_auth import (
    HOME_DISTRICT,
    HOME_VILLAGE,
    OTHER_DISTRICT,
    OTHER_PROGRAM,
    OTHER_VILLAGE,
    Keys,
    api,
    bearer,
    keys,
    nik,
    worker,
)

__all__ = ["api", "keys"]  # the fixtures, shared with test_api_auth

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
TERM_1 = (date(2025, 10, 1), date(2025, 12, 31))  # the founding programme's coverage
TERM_2 = (date(2026, 1, 1), date(2026, 3, 31))


@pytest.fixture
async def service(data_dir: Path) -> AsyncIterator[Service]:
    """Registration without a broker, its clock standing still, two programmes published."""
    settings = RegistrationSettings(LINDUNG_DATA_DIR=str(data_dir), kafka_bootstrap_servers=None)
    async with with_tables(create_service(settings, clock=FixedClock(NOW))) as svc:
        await publish_known(svc, PROGRAM, OTHER_PROGRAM)
        yield svc


# --- events -------------------------------------------------------------------------------------


def about(serial: int) -> dict[str, Any]:
    return {
        "worker_id": worker_id_for(PROGRAM, nik(serial)),
        "program_id": PROGRAM,
        "nik": nik(serial),
    }


def confirmed(serial: int, term: int = 1, carried: bool = False) -> EligibilityConfirmed:
    start, end = TERM_1 if term == 1 else TERM_2
    return EligibilityConfirmed(
        coverage_start=start,
        coverage_end=end,
        decided_at=NOW,
        term=term,
        carried=carried,
        **about(serial),
    )


def not_carried(serial: int, term: int = 2) -> EligibilityRejected:
    reason = Reason(code="age_above_maximum_in_term", message="Usia / Age")
    return EligibilityRejected(
        reasons=[reason], decided_at=NOW, term=term, carried=True, **about(serial)
    )


def invoiced(serial: int, term: int = 1) -> ContributionInvoiced:
    return ContributionInvoiced(
        invoice_id=f"INV-{PROGRAM}-{term}",
        periods=["2026-01", "2026-02", "2026-03"] if term == 2 else ["2025-10", "2025-11"],
        monthly_amount_idr=16_800,
        amount_idr=50_400,
        components={"JKK": 10_000, "JKM": 6_800},
        term=term,
        **about(serial),
    )


def activated(serial: int, term: int = 1) -> CoverageActivated:
    start, end = TERM_1 if term == 1 else TERM_2
    return CoverageActivated(
        coverage_start=start,
        coverage_end=end,
        invoice_id=f"INV-{PROGRAM}-{term}",
        term=term,
        **about(serial),
    )


def ended(serial: int, term: int = 1, code: str = "term_ended_unpaid") -> CoverageEnded:
    return CoverageEnded(
        coverage_end=(TERM_1 if term == 1 else TERM_2)[1],
        term=term,
        reason=Reason(code=code, message="Berakhir / Ended"),
        **about(serial),
    )


def renewal(start: date, end: date, **fields: Any) -> ProgramRenewed:
    return ProgramRenewed(
        program_id=PROGRAM, term_start=start, term_end=end, renewed_at=NOW, **fields
    )


async def status_of(service: Service, serial: int) -> WorkerStatus:
    [status] = [s for s in await rows(service, WorkerStatus) if s.nik == nik(serial)]
    return status


async def project(service: Service, *events: Event) -> None:
    """Each event through its topic's consumer, one batch each, in the order given."""
    for event in events:
        await handle_now(service, [event])


# --- the rule: a rank that only rises -----------------------------------------------------------


def test_a_rank_is_the_term_then_the_stage_and_reads_back_as_its_status() -> None:
    for term in (1, 2, 7):
        for status in STAGES:
            assert coverage_status(coverage_rank(term, status)) == (status, term)
    assert coverage_status(0) is None  # no coverage event yet
    with pytest.raises(ValueError):
        coverage_rank(0, "active")


def test_any_event_of_a_later_term_outranks_every_event_of_an_earlier_one() -> None:
    order = [
        ("awaiting_payment", 1),
        ("active", 1),
        ("ended", 1),
        ("carried", 2),
        ("awaiting_payment", 2),
        ("active", 2),
        ("not_carried", 3),
    ]
    ranks = [coverage_rank(term, status) for status, term in order]  # type: ignore[arg-type]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)
    # A worker a renewal did not carry outranks anything of the term before it.
    assert coverage_rank(2, "not_carried") > coverage_rank(1, "ended")


def test_coverage_dates_prefer_the_activation_then_the_confirmation_of_that_term() -> None:
    confirmation = {"coverage_start": "2026-01-01", "coverage_end": "2026-03-31", "term": 2}
    activation = {"coverage_start": "2026-02-01", "coverage_end": "2026-03-31", "term": 2}
    old = {"coverage_start": "2025-10-01", "coverage_end": "2025-12-31"}  # before terms: term 1
    ending: dict[str, Any] = {"coverage_end": "2025-12-31", "term": 1, "reason": {"code": "x"}}
    entries: list[tuple[str, dict[str, Any]]] = [
        ("eligibility_confirmed", confirmation),
        ("coverage_activated", activation),
        ("coverage_activated", old),
        ("invoiced", {"term": 2}),
    ]
    assert coverage_dates(entries, 2) == (date(2026, 2, 1), date(2026, 3, 31))
    assert coverage_dates(entries, 1) == (date(2025, 10, 1), date(2025, 12, 31))
    assert coverage_dates([("coverage_ended", ending)], 1) == (None, date(2025, 12, 31))
    assert coverage_dates(entries, 3) == (None, None)


# --- projections: the status whatever order the topics come in ----------------------------------


COVERAGE_EVENTS: dict[str, Callable[[int], Event]] = {
    "invoiced in term 1": lambda serial: invoiced(serial, 1),
    "activated in term 1": lambda serial: activated(serial, 1),
    "carried into term 2": lambda serial: confirmed(serial, 2, carried=True),
    "activated in term 2": lambda serial: activated(serial, 2),
}


async def test_carried_and_activated_in_term_2_is_active_in_term_2_in_any_order(
    service: Service,
) -> None:
    """Every order of the four topics (one worker per order) ends in the same status."""
    orders = list(permutations(COVERAGE_EVENTS))
    for serial, order in enumerate(orders, start=1):
        await project(service, *(COVERAGE_EVENTS[name](serial) for name in order))
    # And all four at once, the activations of both terms in one batch.
    last = len(orders) + 1
    await handle_now(service, [activated(last, 2), activated(last, 1)])
    await project(service, confirmed(last, 2, carried=True), invoiced(last, 1))

    statuses = await rows(service, WorkerStatus)
    assert len(statuses) == len(orders) + 1 == 25
    assert {coverage_status(s.coverage_rank) for s in statuses} == {("active", 2)}
    assert all(s.activated and s.eligibility == "" for s in statuses)


async def test_a_carry_alone_is_carried_and_its_invoice_awaits_payment(service: Service) -> None:
    await project(service, confirmed(1), invoiced(1), activated(1))
    await project(service, confirmed(1, 2, carried=True))
    assert coverage_status((await status_of(service, 1)).coverage_rank) == ("carried", 2)
    await project(service, invoiced(1, 2))
    status = await status_of(service, 1)
    assert coverage_status(status.coverage_rank) == ("awaiting_payment", 2)
    assert status.invoiced_idr == 2 * 50_400  # both terms' lines
    assert status.eligibility == "confirmed"


async def test_coverage_ended_is_ended_and_a_late_activation_does_not_undo_it(
    service: Service,
) -> None:
    await project(service, confirmed(1), invoiced(1))
    assert coverage_status((await status_of(service, 1)).coverage_rank) == (
        "awaiting_payment",
        1,
    )
    await project(service, ended(1), activated(1))

    assert coverage_status((await status_of(service, 1)).coverage_rank) == ("ended", 1)
    [entry] = [e for e in await rows(service, TimelineEntry) if e.kind == "coverage_ended"]
    assert entry.worker_id == about(1)["worker_id"]
    assert '"code": "term_ended_unpaid"' in entry.details
    assert '"term": 1' in entry.details


async def test_a_worker_not_carried_keeps_their_decision_and_is_not_carried(
    service: Service,
) -> None:
    await project(service, not_carried(1), confirmed(1), invoiced(1), activated(1))

    status = await status_of(service, 1)
    assert coverage_status(status.coverage_rank) == ("not_carried", 2)
    assert (status.eligibility, status.ineligible_reasons) == ("confirmed", "")
    [entry] = [e for e in await rows(service, TimelineEntry) if e.kind == "eligibility_rejected"]
    assert '"carried": true' in entry.details


async def test_a_batch_mixing_a_carry_and_a_new_decision_applies_each_its_own_way(
    service: Service,
) -> None:
    """A newcomer confirmed in term 2 gets the decision; a carried worker the status only."""
    await handle_now(service, [confirmed(1, 2, carried=True), confirmed(2, 2)])

    carried, newcomer = await status_of(service, 1), await status_of(service, 2)
    assert (carried.eligibility, coverage_status(carried.coverage_rank)) == ("", ("carried", 2))
    assert (newcomer.eligibility, newcomer.coverage_rank) == ("confirmed", 0)


# --- projections: the programme's terms ---------------------------------------------------------


async def terms(service: Service, program_id: str = PROGRAM) -> list[tuple[int, date, date]]:
    return sorted(
        (t.term, t.term_start, t.term_end)
        for t in await rows(service, KnownTerm)
        if t.program_id == program_id
    )


async def test_a_renewal_is_the_next_term_a_repeat_changes_nothing_an_overlap_is_left_out(
    service: Service,
) -> None:
    assert await terms(service) == [(1, *TERM_1)]  # as published
    await handle_now(service, [renewal(*TERM_2)])
    await handle_now(service, [renewal(*TERM_2, quota=9)])  # the same term again
    with capture_logs() as logs:
        await handle_now(service, [renewal(date(2026, 3, 1), date(2026, 6, 30))])

    assert await terms(service) == [(1, *TERM_1), (2, *TERM_2)]
    by_term = {t.term: t for t in await rows(service, KnownTerm) if t.program_id == PROGRAM}
    assert by_term[2].quota == by_term[1].quota == 5600  # the previous term's, when not given
    assert by_term[2].renewed_at.replace(tzinfo=UTC) == NOW
    [overlap] = [entry for entry in logs if entry["event"] == "renewal_overlaps"]
    assert (overlap["program_id"], overlap["term"]) == (PROGRAM, 2)


async def test_renewals_in_one_batch_number_on_in_their_order(service: Service) -> None:
    q2 = (date(2026, 4, 1), date(2026, 6, 30))
    q3 = (date(2026, 7, 1), date(2026, 9, 30))
    await handle_now(
        service, [renewal(*TERM_2), renewal(*q2, quota=7000), renewal(*q2), renewal(*q3)]
    )

    assert await terms(service) == [(1, *TERM_1), (2, *TERM_2), (3, *q2), (4, *q3)]
    quotas = {t.term: t.quota for t in await rows(service, KnownTerm) if t.program_id == PROGRAM}
    assert quotas == {1: 5600, 2: 5600, 3: 7000, 4: 7000}


async def test_an_amended_programme_amends_its_first_term(service: Service) -> None:
    await handle_now(service, [founding_program(coverage_end=date(2025, 11, 30), quota=10)])

    assert await terms(service) == [(1, TERM_1[0], date(2025, 11, 30))]


async def test_a_renewal_of_a_programme_never_published_is_dead_lettered(data_dir: Path) -> None:
    settings = RegistrationSettings(LINDUNG_DATA_DIR=str(data_dir), **QUICK_GIVE_UP)
    async with with_tables(create_service(settings, clock=FixedClock(NOW))) as service:
        dlq = DeadLetters(service, topics.PROGRAM_RENEWED)
        async with TestKafkaBroker(service.broker) as br:
            await publish(br, renewal(*TERM_2))

        assert [h["x-lindung-error-code"] for _, h in dlq.records] == ["not_ready"]
        assert await rows(service, KnownTerm) == []


# --- POST /programs/{id}/renewals ---------------------------------------------------------------


def renewal_body(start: date, end: date, **fields: Any) -> dict[str, Any]:
    return {"term_start": start.isoformat(), "term_end": end.isoformat(), **fields}


async def test_a_new_renewal_is_published_through_the_outbox_as_the_next_term(
    api: httpx.AsyncClient, keys: Keys, service: Service
) -> None:
    url = f"/programs/{PROGRAM}/renewals"
    ops = bearer(keys.operator)
    answer = await api.post(url, json=renewal_body(*TERM_2, quota=6000), headers=ops)

    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "program_id": PROGRAM,
        "term": 2,
        "status": "accepted",
        "term_start": "2026-01-01",
        "term_end": "2026-03-31",
    }
    [row] = await outbox(service, topics.PROGRAM_RENEWED)
    assert row.key == PROGRAM
    assert '"ce_source": "/lindung/registration"' in row.headers
    [published] = await emitted(service, ProgramRenewed)
    assert (published.term_start, published.term_end, published.quota) == (*TERM_2, 6000)
    assert published.renewed_at == NOW  # the service's clock
    # Recorded when read back from the topic, as every service records it.
    assert await terms(service) == [(1, *TERM_1)]
    await handle_now(service, [published])
    assert await terms(service) == [(1, *TERM_1), (2, *TERM_2)]

    # The same term again: its number, and nothing published.
    again = await api.post(url, json=renewal_body(*TERM_2), headers=ops)
    first = await api.post(url, json=renewal_body(*TERM_1), headers=ops)
    assert (again.status_code, again.json()["term"], again.json()["status"]) == (
        200,
        2,
        "repeated",
    )
    assert (first.status_code, first.json()["term"]) == (200, 1)
    # A gap between terms is allowed: the term after the last.
    later = await api.post(url, json=renewal_body(date(2026, 5, 1), date(2026, 7, 31)), headers=ops)
    assert (later.status_code, later.json()["term"]) == (202, 3)
    assert len(await outbox(service, topics.PROGRAM_RENEWED)) == 2


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(date(2026, 3, 1), date(2026, 6, 30), id="overlaps-term-2"),
        pytest.param(date(2025, 12, 1), date(2025, 12, 31), id="inside-term-1"),
        pytest.param(date(2025, 6, 1), date(2025, 9, 30), id="before-term-1"),
    ],
)
async def test_a_term_overlapping_a_known_one_is_a_409_with_its_reason(
    api: httpx.AsyncClient, keys: Keys, service: Service, start: date, end: date
) -> None:
    await handle_now(service, [renewal(*TERM_2)])
    answer = await api.post(
        f"/programs/{PROGRAM}/renewals",
        json=renewal_body(start, end),
        headers=bearer(keys.operator),
    )

    assert answer.status_code == 409, answer.text
    [error] = answer.json()["errors"]
    assert error["code"] == "term_overlaps"
    assert " / " in error["message"]
    assert await outbox(service, topics.PROGRAM_RENEWED) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(renewal_body(TERM_2[1], TERM_2[0]), "term_invalid", id="ends-before-start"),
        pytest.param(
            renewal_body(*TERM_2, registration_deadline="2026-05-01"),
            "term_invalid",
            id="deadline-outside",
        ),
        pytest.param(renewal_body(*TERM_2, quota=0), "invalid_value", id="no-seats"),
        pytest.param(renewal_body(*TERM_2, quotaa=10), "invalid_value", id="misspelt-field"),
        pytest.param({"term_start": "2026-01-01"}, "invalid_value", id="no-end"),
    ],
)
async def test_a_term_that_is_not_one_is_a_422_with_its_reason(
    api: httpx.AsyncClient, keys: Keys, service: Service, body: dict[str, Any], code: str
) -> None:
    answer = await api.post(
        f"/programs/{PROGRAM}/renewals", json=body, headers=bearer(keys.operator)
    )

    assert answer.status_code == 422, answer.text
    assert {e["code"] for e in answer.json()["errors"]} == {code}
    assert all(" / " in e["message"] for e in answer.json()["errors"])
    assert await outbox(service, topics.PROGRAM_RENEWED) == []


async def test_only_an_operator_renews_and_only_a_published_programme(
    api: httpx.AsyncClient, keys: Keys, service: Service
) -> None:
    body = renewal_body(*TERM_2)
    village = await api.post(
        f"/programs/{PROGRAM}/renewals", json=body, headers=bearer(keys.village)
    )
    anonymous = await api.post(f"/programs/{PROGRAM}/renewals", json=body)
    unknown = await api.post(
        "/programs/sbd-never-2030/renewals", json=body, headers=bearer(keys.operator)
    )

    assert village.status_code == 403, village.text
    assert anonymous.status_code == 401
    assert unknown.status_code == 404
    assert "Unknown programme" in unknown.json()["detail"]
    assert await outbox(service, topics.PROGRAM_RENEWED) == []


# --- a worker's coverage status in the API ------------------------------------------------------


@pytest.fixture
async def three_workers(api: httpx.AsyncClient, keys: Keys, service: Service) -> None:
    """Worker 1 active in term 2 (carried); worker 2's term 1 ended unpaid; worker 3 (another
    desa) awaiting payment in term 1."""
    ops = bearer(keys.operator)
    other_place = {"village": OTHER_VILLAGE, "district": OTHER_DISTRICT}
    for serial, place in ((1, {}), (2, {}), (3, other_place)):
        answer = await api.post(
            f"/programs/{PROGRAM}/workers", json=worker(serial, **place), headers=ops
        )
        assert answer.status_code == 201, answer.text
    await handle_now(service, [confirmed(1), confirmed(2), confirmed(3)])
    await handle_now(service, [invoiced(1), invoiced(2), invoiced(3)])
    await project(service, activated(1, 2), confirmed(1, 2, carried=True), ended(2))


async def test_a_programmes_worker_shows_their_coverage_status_term_and_dates(
    api: httpx.AsyncClient, keys: Keys, three_workers: None
) -> None:
    url = f"/programs/{PROGRAM}/workers/{about(1)['worker_id']}"
    answer = await api.get(url, headers=bearer(keys.operator))
    own_desa = await api.get(url, headers=bearer(keys.village))
    ended_one = await api.get(
        f"/programs/{PROGRAM}/workers/{about(2)['worker_id']}", headers=bearer(keys.operator)
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["coverage"] == {
        "status": "active",
        "term": 2,
        "coverage_start": "2026-01-01",
        "coverage_end": "2026-03-31",
    }
    assert (body["nik"], body["village"], body["district"]) == (nik(1), HOME_VILLAGE, HOME_DISTRICT)
    assert (body["eligibility"], body["timeline_url"]) == ("confirmed", f"/workers/{nik(1)}")
    assert own_desa.status_code == 200
    assert own_desa.json() == body
    assert ended_one.json()["coverage"] == {
        "status": "ended",
        "term": 1,
        "coverage_start": "2025-10-01",
        "coverage_end": "2025-12-31",
    }


async def test_another_desas_worker_is_the_same_404_as_one_never_registered(
    api: httpx.AsyncClient, keys: Keys, three_workers: None
) -> None:
    elsewhere = await api.get(
        f"/programs/{PROGRAM}/workers/{about(3)['worker_id']}", headers=bearer(keys.village)
    )
    nobody = await api.get(
        f"/programs/{PROGRAM}/workers/{worker_id_for(PROGRAM, nik(99))}",
        headers=bearer(keys.village),
    )
    other_programme = await api.get(
        f"/programs/{OTHER_PROGRAM}/workers/{about(1)['worker_id']}",
        headers=bearer(keys.operator),
    )
    operator = await api.get(
        f"/programs/{PROGRAM}/workers/{about(3)['worker_id']}", headers=bearer(keys.operator)
    )
    malformed = await api.get(
        f"/programs/{PROGRAM}/workers/not-a-worker%00", headers=bearer(keys.operator)
    )

    for answer in (elsewhere, nobody, other_programme, malformed):
        assert answer.status_code == 404, answer.text
        assert answer.json() == nobody.json()
    assert operator.json()["coverage"]["status"] == "awaiting_payment"


async def test_the_timeline_shows_each_workers_coverage(
    api: httpx.AsyncClient, keys: Keys, three_workers: None
) -> None:
    timeline = (await api.get(f"/workers/{nik(1)}", headers=bearer(keys.village))).json()

    [ref] = timeline["workers"]
    assert ref["coverage"] == {
        "status": "active",
        "term": 2,
        "coverage_start": "2026-01-01",
        "coverage_end": "2026-03-31",
    }
    kinds = [e["kind"] for e in timeline["entries"]]
    assert kinds.count("coverage_activated") == 1 and "eligibility_confirmed" in kinds


async def test_the_summary_counts_each_coverage_status_per_desa(
    api: httpx.AsyncClient, keys: Keys, three_workers: None
) -> None:
    statuses = ("awaiting_payment", "active", "carried", "not_carried", "ended")
    url = f"/programs/{PROGRAM}/summary"
    everyone = (await api.get(url, headers=bearer(keys.operator))).json()
    own_desa = (await api.get(url, headers=bearer(keys.village))).json()

    assert {s: everyone["totals"][s] for s in statuses} == {
        "awaiting_payment": 1,
        "active": 1,
        "carried": 0,
        "not_carried": 0,
        "ended": 1,
    }
    assert everyone["totals"]["invoiced_idr"] == 3 * 50_400
    assert {s: own_desa["totals"][s] for s in statuses} == {
        "awaiting_payment": 0,
        "active": 1,
        "carried": 0,
        "not_carried": 0,
        "ended": 1,
    }
    by_village = {v["village"]: v["awaiting_payment"] for v in everyone["by_village"]}
    assert by_village == {HOME_VILLAGE: 0, OTHER_VILLAGE: 1}
