"""Registration's batch rules: deciding a batch of requests, merging a batch's funnel changes,
and reading a timeline entry's trace and time from a message."""

from __future__ import annotations

from datetime import UTC, datetime

from lindung_contracts import RegistrationRequested
from lindung_registration.domain import (
    NEW_STATUS,
    StatusChange,
    candidate_worker_id,
    decide_registrations,
    merge_status_changes,
    registration,
    rejection,
    status_row,
    worker_id_for,
)

PROGRAM = "sbd-pekerja-rentan-2025q4"
NIK = "5318010101900001"
NIK_WOMAN = "5318054507850042"
WORKER = worker_id_for(PROGRAM, NIK)


def request(**overrides: str | None) -> RegistrationRequested:
    fields: dict[str, str | None] = {
        "program_id": PROGRAM,
        "nik": NIK,
        "full_name": "Yohanes Bili",
        "birth_date": "1990-01-01",
        "gender": "L",
        "occupation": "petani",
        "village": "Kalembu Ndara Mane",
        "district": "Wewewa Barat",
        "phone": None,
    }
    fields.update(overrides)
    return RegistrationRequested(**fields)  # type: ignore[arg-type]


# --- decide_registrations ---------------------------------------------------------------------


def test_a_valid_request_for_a_known_programme_is_registered() -> None:
    [decision] = decide_registrations([request()], {PROGRAM}, set())
    assert decision.status == "registered"
    assert decision.valid is not None and decision.valid.worker_id == WORKER
    assert decision.errors == []


def test_a_worker_registered_before_is_repeated() -> None:
    [decision] = decide_registrations([request()], {PROGRAM}, {WORKER})
    assert decision.status == "repeated"


def test_the_same_worker_twice_in_a_batch_is_registered_once_the_first_wins() -> None:
    decisions = decide_registrations(
        [request(), request(nik="5318 0101 0190 0001", full_name="YOHANES BILI")], {PROGRAM}, ()
    )
    assert [d.status for d in decisions] == ["registered", "repeated"]
    assert decisions[0].valid is not None and decisions[0].valid.full_name == "Yohanes Bili"


def test_other_workers_of_a_batch_are_each_registered() -> None:
    decisions = decide_registrations([request(), request(nik=NIK_WOMAN)], {PROGRAM}, ())
    assert [d.status for d in decisions] == ["registered", "registered"]


def test_an_unknown_programme_comes_first_among_every_error() -> None:
    [decision] = decide_registrations([request(program_id="typo", gender="X")], {PROGRAM}, ())
    assert decision.status == "rejected"
    assert [(e.field, e.code) for e in decision.errors] == [
        ("program_id", "program_unknown"),
        ("gender", "gender_invalid"),
    ]


def test_a_rejected_request_does_not_count_as_its_worker() -> None:
    decisions = decide_registrations([request(gender="X"), request()], {PROGRAM}, ())
    assert [d.status for d in decisions] == ["rejected", "registered"]


def test_a_missing_programme_is_required_not_unknown() -> None:
    [decision] = decide_registrations([request(program_id="  ")], {PROGRAM}, ())
    assert [e.code for e in decision.errors] == ["program_id_required"]


def test_candidate_worker_id_is_the_id_a_valid_request_registers() -> None:
    assert candidate_worker_id(request(nik="5318 0101 0190 0001", program_id=f" {PROGRAM} ")) == (
        WORKER
    )


def test_rejection_echoes_the_values_printable_and_registration_the_normal_form() -> None:
    bad = request(nik="12\x0045", gender="X")
    [decision] = decide_registrations([bad], {PROGRAM}, ())
    answer = rejection(bad, decision.errors, "ce-1")
    assert (answer.nik, answer.request_id) == ("12\ufffd45", "ce-1")
    [ok] = decide_registrations([request()], {PROGRAM}, ())
    assert ok.valid is not None
    at = datetime(2025, 10, 1, tzinfo=UTC)
    registered = registration(ok.valid, at)
    assert (registered.worker_id, registered.gender, registered.registered_at) == (WORKER, "M", at)


# --- merge_status_changes / status_row ----------------------------------------------------------


def change(worker: str = "w1", **kinds: dict[str, object]) -> StatusChange:
    return StatusChange(worker, PROGRAM, NIK, **kinds)  # type: ignore[arg-type]


def test_one_change_per_worker_in_first_seen_order() -> None:
    merged = merge_status_changes([change("w2"), change("w1"), change("w2")])
    assert [c.worker_id for c in merged] == ["w2", "w1"]


def test_a_later_value_wins_the_first_place_stays_counters_add_up() -> None:
    [merged] = merge_status_changes(
        [
            change(sets={"invoice_id": "INV-1"}, fills={"village": ""}, adds={"expiry_alerts": 1}),
            change(sets={"invoice_id": "INV-2"}, fills={"village": "A"}, adds={"expiry_alerts": 1}),
            change(sets={"invoice_id": "INV-3"}, fills={"village": "B"}, adds={"expiry_alerts": 1}),
        ]
    )
    assert merged.sets == {"invoice_id": "INV-3"}
    assert merged.fills == {"village": "A"}
    assert merged.adds == {"expiry_alerts": 3}


def test_a_new_row_is_the_empty_row_with_the_change_applied() -> None:
    row = status_row(
        change(sets={"activated": True}, fills={"village": "A"}, adds={"expiry_alerts": 2})
    )
    assert row == {
        **NEW_STATUS,
        "worker_id": "w1",
        "program_id": PROGRAM,
        "nik": NIK,
        "activated": True,
        "village": "A",
        "expiry_alerts": 2,
    }


def test_a_raised_column_keeps_the_highest_value_of_the_batch() -> None:
    """A coverage rank only rises: the batch's highest wins, whatever order it came in."""
    [merged] = merge_status_changes(
        [
            change(raises={"coverage_rank": 22}),
            change(raises={"coverage_rank": 11}),
            change(sets={"activated": True}),
        ]
    )
    assert merged.raises == {"coverage_rank": 22}
    assert merged.sets == {"activated": True}
    assert status_row(change(raises={"coverage_rank": 14}))["coverage_rank"] == 14


def test_changes_alike_have_the_same_columns_and_a_carry_has_fewer() -> None:
    confirmed = change(sets={"eligibility": "confirmed"}, fills={"village": "A"})
    carried = change(fills={"village": "A"}, raises={"coverage_rank": 20})
    assert confirmed.columns() == change(sets={"eligibility": "x"}, fills={"village": ""}).columns()
    assert confirmed.columns() != carried.columns()
