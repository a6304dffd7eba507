"""Membership numbers (nomor KPJ) in registration: the rule that decides each NIK → KPJ pair
(`domain.assign_numbers`), the `membership.number-assigned` consumer (stored once, on the
timeline; a repeat changes nothing; an unknown NIK or a conflicting number is dead-lettered with
its code), the workers of a term the handover lists (`worker_term`, from `eligibility.confirmed`),
and migration 0008, which fills that table from the confirmations projected before it.

The HTTP side (the handover export, the upload): tests/integration/test_membership_numbers_api.py.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from structlog.testing import capture_logs

from lindung_contracts import (
    EligibilityConfirmed,
    MembershipNumberAssigned,
    RegistrationRequested,
    topics,
)
from lindung_contracts.access import ACCESS, BPJS_BRANCH, UPSTREAM_PRINCIPALS
from lindung_registration.app import create_service
from lindung_registration.db import MembershipNumber, TimelineEntry, WorkerTerm
from lindung_registration.domain import (
    KnownNumbers,
    NumberRow,
    assign_numbers,
    normalise_kpj,
    worker_id_for,
)
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import FixedClock, Service
from lindung_runtime.migrations import upgrade
from tests.programmes import publish_known
from tests.unit.handler_kit import (
    PROGRAM,
    QUICK_GIVE_UP,
    DeadLetters,
    deliver_batch,
    emitted,
    handle_now,
    publish,
    rows,
    with_tables,
)

OTHER_PROGRAM = "sbd-pekerja-rentan-2026q1"
NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
KPJ_1, KPJ_2, KPJ_3 = "13012345671", "13012345672", "13012345673"


def nik(serial: int) -> str:
    """A valid NIK of Sumba Barat Daya (5318 01), born 01-01-90, a man."""
    return f"531801010190{serial:04d}"


# --- the rule -----------------------------------------------------------------------------------


def known(
    workers: dict[tuple[str, str], str | None], holders: dict[str, str] | None = None
) -> KnownNumbers:
    return KnownNumbers(workers=workers, holders=holders or {})


def statuses(rows: list[NumberRow], state: KnownNumbers) -> list[tuple[str, str]]:
    return [(d.status, d.code) for d in assign_numbers(rows, state)]


def test_a_number_for_a_worker_without_one_is_assigned_and_the_same_again_is_repeated() -> None:
    state = known({(PROGRAM, nik(1)): None})
    rows = [NumberRow(PROGRAM, nik(1), KPJ_1), NumberRow(PROGRAM, nik(1), KPJ_1)]

    first, again = assign_numbers(rows, state)

    assert (first.status, first.nik, first.kpj, first.errors) == ("assigned", nik(1), KPJ_1, [])
    assert (again.status, again.errors) == ("repeated", [])
    # Known before: repeated at once.
    assert statuses(rows[:1], known({(PROGRAM, nik(1)): KPJ_1}, {KPJ_1: nik(1)})) == [
        ("repeated", "repeated")
    ]


def test_a_nik_without_a_worker_in_the_programme_is_unknown() -> None:
    state = known({(OTHER_PROGRAM, nik(1)): None})

    [decision] = assign_numbers([NumberRow(PROGRAM, nik(1), KPJ_1)], state)

    assert (decision.status, decision.code) == ("unknown_nik", "unknown_nik")
    [error] = decision.errors
    assert (error.field, error.code) == ("nik", "unknown_nik")
    assert " / " in error.message  # Bahasa Indonesia / English


def test_another_number_for_a_worker_or_another_workers_number_is_a_conflict() -> None:
    state = known(
        {(PROGRAM, nik(1)): KPJ_1, (PROGRAM, nik(2)): None},
        {KPJ_1: nik(1)},
    )
    has_one, taken = assign_numbers(
        [NumberRow(PROGRAM, nik(1), KPJ_2), NumberRow(PROGRAM, nik(2), KPJ_1)], state
    )

    assert (has_one.status, taken.status) == ("kpj_conflict", "kpj_conflict")
    assert [e.code for e in has_one.errors + taken.errors] == ["kpj_conflict", "kpj_conflict"]
    assert "another KPJ number" in has_one.errors[0].message
    assert "belongs to another worker" in taken.errors[0].message


def test_rows_see_the_rows_before_them() -> None:
    """Two numbers for one worker, or one number for two workers, in the same file or batch:
    the first is assigned, the second a conflict."""
    state = known({(PROGRAM, nik(1)): None, (PROGRAM, nik(2)): None})
    rows = [
        NumberRow(PROGRAM, nik(1), KPJ_1),
        NumberRow(PROGRAM, nik(1), KPJ_2),
        NumberRow(PROGRAM, nik(2), KPJ_1),
        NumberRow(PROGRAM, nik(2), KPJ_3),
    ]

    assert [s for s, _ in statuses(rows, state)] == [
        "assigned",
        "kpj_conflict",
        "kpj_conflict",
        "assigned",
    ]


def test_the_same_person_may_hold_the_same_number_in_another_programme() -> None:
    state = known({(PROGRAM, nik(1)): None}, {KPJ_1: nik(1)})  # held in another programme

    assert statuses([NumberRow(PROGRAM, nik(1), KPJ_1)], state) == [("assigned", "assigned")]


@pytest.mark.parametrize(
    ("given_nik", "given_kpj", "codes"),
    [
        pytest.param(nik(1), "1301234567", ["kpj_invalid"], id="kpj-10-digits"),
        pytest.param(nik(1), "130123456789", ["kpj_invalid"], id="kpj-12-digits"),
        pytest.param(nik(1), "1301234567X", ["kpj_invalid"], id="kpj-letter"),
        pytest.param(nik(1), "１３０１２３４５６７１", ["kpj_invalid"], id="kpj-fullwidth-digits"),
        pytest.param(nik(1), " ", ["kpj_required"], id="kpj-empty"),
        pytest.param("53180101019", KPJ_1, ["nik_invalid_length"], id="nik-short"),
        pytest.param("5318013201900001", KPJ_1, ["nik_invalid_component"], id="nik-birth-day"),
        pytest.param("", "", ["nik_required", "kpj_required"], id="both-empty"),
    ],
)
def test_a_malformed_nik_or_number_is_invalid_with_every_error(
    given_nik: str, given_kpj: str, codes: list[str]
) -> None:
    state = known({(PROGRAM, nik(1)): None})

    [decision] = assign_numbers([NumberRow(PROGRAM, given_nik, given_kpj)], state)

    assert decision.status == "invalid"
    assert [e.code for e in decision.errors] == codes
    assert decision.code == codes[0]
    assert all(" / " in e.message for e in decision.errors)


def test_a_number_is_read_with_the_separators_people_write() -> None:
    assert normalise_kpj("130 1234 5671") == KPJ_1
    assert normalise_kpj("13.012.345.671") == KPJ_1
    assert normalise_kpj("1301-2345-671") == KPJ_1
    state = known({(PROGRAM, nik(1)): None})
    [decision] = assign_numbers(
        [NumberRow(f" {PROGRAM} ", "5318 0101 0190 0001", "13 0123 45671")], state
    )
    assert (decision.status, decision.nik, decision.kpj) == ("assigned", nik(1), KPJ_1)


# --- the contract ---------------------------------------------------------------------------------


def test_the_event_takes_eleven_digits_and_the_branch_may_write_it() -> None:
    fields = {"program_id": PROGRAM, "nik": nik(1), "assigned_on": date(2026, 1, 5)}
    assert MembershipNumberAssigned(kpj=KPJ_1, **fields).key() == nik(1)
    for bad in ("1301234567", "130123456712", "1301234567a"):
        with pytest.raises(ValueError):
            MembershipNumberAssigned(kpj=bad, **fields)
    access = ACCESS[topics.MEMBERSHIP_NUMBER_ASSIGNED]
    assert BPJS_BRANCH == "lindung-bpjs" and BPJS_BRANCH in UPSTREAM_PRINCIPALS
    assert set(access.writers) == {"lindung-bpjs", "lindung-operator", "lindung-registration"}
    assert access.sources == ("/upstream/bpjs", "/lindung/cli", "/lindung/registration")
    assert access.readers == ("registration",)


# --- the consumer -------------------------------------------------------------------------------


@pytest.fixture
async def service(data_dir: Path) -> AsyncIterator[Service]:
    """Registration with two programmes published and workers 1-3 registered in the first,
    worker 1 also in the second; it gives up quickly (dead letters are seen within a test)."""
    settings = RegistrationSettings(LINDUNG_DATA_DIR=str(data_dir), **QUICK_GIVE_UP)
    async with with_tables(create_service(settings, clock=FixedClock(NOW))) as svc:
        await publish_known(svc, PROGRAM, OTHER_PROGRAM)
        await handle_now(svc, [request(serial) for serial in (1, 2, 3)])
        await handle_now(svc, [request(1, OTHER_PROGRAM)])
        yield svc


def request(serial: int, program_id: str = PROGRAM) -> RegistrationRequested:
    return RegistrationRequested(
        program_id=program_id,
        nik=nik(serial),
        full_name=f"Pekerja {serial}",
        birth_date="01/01/1990",
        gender="L",
        village="Kalena Wanno",
        district="Kota Tambolaka",
    )


def assigned(serial: int, kpj: str, program_id: str = PROGRAM) -> MembershipNumberAssigned:
    return MembershipNumberAssigned(
        program_id=program_id,
        nik=nik(serial),
        kpj=kpj,
        assigned_on=date(2026, 1, 3),
        reference="BPJS-KC-TAMBOLAKA-2026-001",
    )


async def numbers(service: Service) -> dict[tuple[str, str], str]:
    return {(n.program_id, n.nik): n.kpj for n in await rows(service, MembershipNumber)}


async def number_entries(service: Service) -> list[TimelineEntry]:
    return [e for e in await rows(service, TimelineEntry) if e.kind == "membership_number_assigned"]


async def test_a_number_is_stored_once_with_its_timeline_entry(service: Service) -> None:
    await handle_now(service, [assigned(1, KPJ_1), assigned(2, KPJ_2)])
    await handle_now(service, [assigned(1, KPJ_1)])  # the same number again: nothing changes

    assert await numbers(service) == {(PROGRAM, nik(1)): KPJ_1, (PROGRAM, nik(2)): KPJ_2}
    entries = await number_entries(service)
    assert len(entries) == 2
    first = next(e for e in entries if e.nik == nik(1))
    assert first.worker_id == worker_id_for(PROGRAM, nik(1))
    assert first.program_id == PROGRAM
    assert json.loads(first.details) == {
        "kpj": KPJ_1,
        "assigned_on": "2026-01-03",
        "reference": "BPJS-KC-TAMBOLAKA-2026-001",
    }
    # Registration does not publish again what it was told.
    assert await emitted(service, MembershipNumberAssigned) == []
    [stored] = [n for n in await rows(service, MembershipNumber) if n.nik == nik(1)]
    assert (stored.assigned_on, stored.worker_id) == (date(2026, 1, 3), first.worker_id)


async def test_the_same_person_in_another_programme_may_get_the_same_number(
    service: Service,
) -> None:
    await handle_now(service, [assigned(1, KPJ_1)])
    await handle_now(service, [assigned(1, KPJ_1, OTHER_PROGRAM)])

    assert await numbers(service) == {(PROGRAM, nik(1)): KPJ_1, (OTHER_PROGRAM, nik(1)): KPJ_1}


@pytest.mark.parametrize(
    ("event", "code"),
    [
        pytest.param(assigned(9, KPJ_3), "unknown_nik", id="nik-not-registered"),
        pytest.param(assigned(2, KPJ_3, OTHER_PROGRAM), "unknown_nik", id="not-in-programme"),
        pytest.param(assigned(1, KPJ_2), "kpj_conflict", id="worker-has-another"),
        pytest.param(assigned(3, KPJ_1), "kpj_conflict", id="anothers-number"),
        pytest.param(assigned(2, KPJ_1, OTHER_PROGRAM), "unknown_nik", id="unknown-first"),
        pytest.param(
            assigned(1, KPJ_1).model_copy(update={"nik": "5318013201900001"}),
            "nik_invalid",
            id="not-a-nik",
        ),
    ],
)
async def test_an_unknown_nik_or_a_conflicting_number_is_dead_lettered_with_its_code(
    service: Service, event: MembershipNumberAssigned, code: str
) -> None:
    await handle_now(service, [assigned(1, KPJ_1)])
    dlq = DeadLetters(service, topics.MEMBERSHIP_NUMBER_ASSIGNED)
    with capture_logs() as logs:
        async with TestKafkaBroker(service.broker) as br:
            await publish(br, event)

    [(body, headers)] = dlq.records
    assert MembershipNumberAssigned.model_validate_json(body) == event
    assert headers["x-lindung-error-code"] == code
    assert headers["x-lindung-service"] == "registration"
    assert event.nik not in headers["x-lindung-error"]  # never a whole NIK
    assert await numbers(service) == {(PROGRAM, nik(1)): KPJ_1}
    assert len(await number_entries(service)) == 1
    refused = [entry for entry in logs if entry["event"] == "membership_number_refused"]
    assert refused and all(event.nik not in str(entry) for entry in logs)


async def test_a_poison_event_is_dead_lettered_and_the_rest_of_its_batch_applied(
    service: Service,
) -> None:
    dlq = DeadLetters(service, topics.MEMBERSHIP_NUMBER_ASSIGNED)
    async with TestKafkaBroker(service.broker):
        await deliver_batch(
            service,
            [assigned(1, KPJ_1), assigned(9, KPJ_2), assigned(2, KPJ_1), assigned(3, KPJ_3)],
        )

    assert [h["x-lindung-error-code"] for _, h in dlq.records] == ["unknown_nik", "kpj_conflict"]
    assert await numbers(service) == {(PROGRAM, nik(1)): KPJ_1, (PROGRAM, nik(3)): KPJ_3}
    assert len(await number_entries(service)) == 2


# --- the workers of a term (worker_term) --------------------------------------------------------


def confirmed(serial: int, term: int = 1, **fields: Any) -> EligibilityConfirmed:
    start, end = (
        (date(2025, 10, 1), date(2025, 12, 31))
        if term == 1
        else (
            date(2026, 1, 1),
            date(2026, 3, 31),
        )
    )
    return EligibilityConfirmed(
        worker_id=worker_id_for(PROGRAM, nik(serial)),
        program_id=PROGRAM,
        nik=nik(serial),
        coverage_start=fields.pop("coverage_start", start),
        coverage_end=end,
        decided_at=NOW,
        term=term,
        **fields,
    )


async def test_each_confirmation_puts_the_worker_on_its_terms_handover(service: Service) -> None:
    await handle_now(service, [confirmed(1), confirmed(2, coverage_start=date(2025, 11, 1))])
    await handle_now(service, [confirmed(1, 2, carried=True)])
    # In one batch, the last confirmation of a worker's term wins.
    await handle_now(
        service,
        [
            confirmed(3, coverage_start=date(2025, 11, 1)),
            confirmed(3, coverage_start=date(2025, 12, 1)),
        ],
    )

    terms = {
        (t.worker_id, t.term): (t.program_id, t.coverage_start)
        for t in await rows(service, WorkerTerm)
    }
    assert terms == {
        (worker_id_for(PROGRAM, nik(1)), 1): (PROGRAM, date(2025, 10, 1)),
        (worker_id_for(PROGRAM, nik(2)), 1): (PROGRAM, date(2025, 11, 1)),
        (worker_id_for(PROGRAM, nik(1)), 2): (PROGRAM, date(2026, 1, 1)),
        (worker_id_for(PROGRAM, nik(3)), 1): (PROGRAM, date(2025, 12, 1)),
    }


def test_migration_0008_lists_the_confirmations_projected_before_it(tmp_path: Path) -> None:
    """Confirmations projected before the table existed (term 1's without a `term`) are put on
    their terms' handover, the later one of a worker's term winning; other entries are not."""
    path = tmp_path / "registration.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade("registration", url, "0007")

    def entry(
        event_id: str, kind: str, worker: str, at: str, details: dict[str, Any]
    ) -> tuple[Any, ...]:
        return (event_id, kind, nik(1), PROGRAM, worker, at, json.dumps(details))

    old = {"coverage_start": "2025-10-01", "coverage_end": "2025-12-31"}
    with closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT INTO timeline_entry (event_id, kind, nik, program_id, worker_id, occurred_at,"
            " details) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                entry("e1", "eligibility_confirmed", "w1", "2025-10-02 00:00:00.000000", old),
                entry(
                    "e2",
                    "eligibility_confirmed",
                    "w1",
                    "2025-10-03 00:00:00.000000",
                    {**old, "coverage_start": "2025-11-01", "term": 1},
                ),
                entry(
                    "e3",
                    "eligibility_confirmed",
                    "w1",
                    "2026-01-01 00:00:00.000000",
                    {"coverage_start": "2026-01-01", "coverage_end": "2026-03-31", "term": 2},
                ),
                entry("e4", "coverage_activated", "w2", "2025-10-05 00:00:00.000000", old),
            ],
        )
    upgrade("registration", url)

    with closing(sqlite3.connect(path)) as db:
        found = sorted(
            db.execute(
                "SELECT worker_id, term, program_id, coverage_start, coverage_end FROM worker_term"
            )
        )
    assert found == [
        ("w1", 1, PROGRAM, "2025-11-01", "2025-12-31"),
        ("w1", 2, PROGRAM, "2026-01-01", "2026-03-31"),
    ]
