"""Deciding a batch of registrations: once per worker, first come first served against each
programme's seats, and a confirmation earlier in the batch counts for the later ones."""

from __future__ import annotations

from datetime import date

from lindung_eligibility.domain import (
    Applicant,
    CoverageTerm,
    Decided,
    ProgramRules,
    Registration,
    Seats,
    decide_batch,
    latest_day,
)

START, END = date(2025, 10, 1), date(2025, 12, 31)
SBD, NTT = "sbd-pekerja-rentan-2025q4", "ntt-provinsi-2025h2"
PROGRAMS = {
    SBD: ProgramRules(SBD, frozenset({"5318"}), START, END, min_age=18, max_age=60),
    NTT: ProgramRules(NTT, frozenset({"5318"}), date(2025, 7, 1), END, min_age=18, max_age=60),
}


def registration(
    serial: int,
    program_id: str = SBD,
    *,
    born: date = date(1990, 1, 1),
    region: str = "5318",
) -> Registration:
    nik = f"{region}01{born.day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"
    return Registration(f"{program_id}/{nik}", program_id, Applicant(nik, born, "M"))


def decide(
    registrations: list[Registration],
    seats: dict[str, Seats] | None = None,
    enrolled: dict[str, list[CoverageTerm]] | None = None,
    decided: set[str] | None = None,
    business_date: date | None = None,
) -> list[Decided]:
    return decide_batch(
        registrations,
        PROGRAMS,
        seats or {SBD: Seats(quota=10, taken=0), NTT: Seats(quota=10, taken=0)},
        business_date,
        enrolled or {},
        decided or set(),
    )


def outcome(verdicts: list[Decided]) -> list[tuple[str, list[str]]]:
    return [(v.registration.worker_id, [r.code for r in v.reasons]) for v in verdicts]


def test_eligible_workers_are_confirmed_for_the_programme_term() -> None:
    workers = [registration(1), registration(2)]
    verdicts = decide(workers)
    assert outcome(verdicts) == [(w.worker_id, []) for w in workers]
    assert all(v.confirmed and v.term == CoverageTerm(START, END) for v in verdicts)


def test_quota_exhausted_mid_batch_rejects_the_later_workers() -> None:
    workers = [registration(n) for n in range(1, 5)]
    seats = {SBD: Seats(quota=3, taken=1)}
    verdicts = decide(workers, seats=seats)
    assert outcome(verdicts) == [
        (workers[0].worker_id, []),
        (workers[1].worker_id, []),
        (workers[2].worker_id, ["quota_exhausted"]),
        (workers[3].worker_id, ["quota_exhausted"]),
    ]
    assert seats == {SBD: Seats(quota=3, taken=1)}  # the caller's state is left alone


def test_each_programme_counts_its_own_seats() -> None:
    workers = [registration(1, SBD), registration(2, NTT), registration(3, SBD)]
    verdicts = decide(workers, seats={SBD: Seats(1, 0), NTT: Seats(1, 0)})
    assert [v.confirmed for v in verdicts] == [True, True, False]


def test_a_rejected_worker_takes_no_seat() -> None:
    outsider, child, local = (
        registration(1, region="5311"),
        registration(2, born=date(2010, 5, 5)),
        registration(3),
    )
    verdicts = decide([outsider, child, local], seats={SBD: Seats(quota=1, taken=0)})
    assert outcome(verdicts) == [
        (outsider.worker_id, ["region_mismatch"]),
        (child.worker_id, ["age_below_minimum"]),
        (local.worker_id, []),
    ]


def test_rejections_keep_every_reason_and_never_reach_the_quota() -> None:
    old_outsider = registration(1, born=date(1950, 1, 1), region="5311")
    [verdict] = decide([old_outsider], seats={SBD: Seats(quota=0, taken=0)})
    assert [r.code for r in verdict.reasons] == ["region_mismatch", "age_above_maximum"]


def test_a_worker_twice_in_the_batch_is_decided_once() -> None:
    worker, other = registration(1), registration(2)
    verdicts = decide([worker, other, worker], seats={SBD: Seats(quota=5, taken=0)})
    assert outcome(verdicts) == [(worker.worker_id, []), (other.worker_id, [])]


def test_a_worker_decided_before_is_not_decided_again() -> None:
    worker, other = registration(1), registration(2)
    decided = {worker.worker_id}
    verdicts = decide([worker, other], seats={SBD: Seats(quota=1, taken=1)}, decided=decided)
    assert outcome(verdicts) == [(other.worker_id, ["quota_exhausted"])]
    assert decided == {worker.worker_id}


def test_a_confirmation_earlier_in_the_batch_enrols_the_nik_for_the_later_ones() -> None:
    first, overlapping = registration(1, SBD), registration(1, NTT)
    verdicts = decide([first, overlapping])
    assert outcome(verdicts) == [
        (first.worker_id, []),
        (overlapping.worker_id, ["already_enrolled"]),
    ]


def test_a_rejection_earlier_in_the_batch_does_not_enrol_the_nik() -> None:
    first, second = registration(1, SBD), registration(1, NTT)
    verdicts = decide([first, second], seats={SBD: Seats(0, 0), NTT: Seats(1, 0)})
    assert outcome(verdicts) == [
        (first.worker_id, ["quota_exhausted"]),
        (second.worker_id, []),
    ]


def test_terms_enrolled_before_the_batch_count() -> None:
    worker = registration(1)
    enrolled = {worker.applicant.nik: [CoverageTerm(date(2025, 7, 1), END)]}
    [verdict] = decide([worker], enrolled=enrolled)
    assert [r.code for r in verdict.reasons] == ["already_enrolled"]
    assert enrolled == {worker.applicant.nik: [CoverageTerm(date(2025, 7, 1), END)]}


def test_business_date_after_the_start_moves_every_term_to_next_month() -> None:
    verdicts = decide([registration(1), registration(2)], business_date=date(2025, 10, 15))
    assert [v.term for v in verdicts] == [CoverageTerm(date(2025, 11, 1), END)] * 2
    assert all(v.confirmed for v in verdicts)


def test_business_days_only_move_forward() -> None:
    oct1, oct2, oct3 = date(2025, 10, 1), date(2025, 10, 2), date(2025, 10, 3)
    assert latest_day(None, []) is None
    assert latest_day(None, [oct2, oct1]) == oct2  # late in the batch: ignored
    assert latest_day(oct3, [oct1, oct2]) == oct3  # late or repeated: the clock stays
    assert latest_day(oct1, [oct3]) == oct3
