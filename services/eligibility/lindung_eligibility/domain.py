"""Pure eligibility rules: who a programme may cover, from when, and why not.

Inputs are plain values; "today" is the business date (the latest DayStarted), passed in.
Reason codes are stable identifiers; messages are Bahasa Indonesia / English.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date
from typing import Literal

from lindung_contracts import Reason


@dataclass(frozen=True)
class ProgramRules:
    """A programme's rules for its current term (from `coverage_start` to `coverage_end`)."""

    program_id: str
    region_codes: frozenset[str]
    coverage_start: date
    coverage_end: date
    min_age: int
    max_age: int
    policy: str = "next_month"  # or "from_term_start" (ProgramPublished.coverage_start_policy)
    registration_deadline: date | None = None
    term: int = 1


@dataclass(frozen=True)
class Applicant:
    nik: str
    birth_date: date
    gender: Literal["M", "F"]


@dataclass(frozen=True)
class CoverageTerm:
    start: date
    end: date

    def overlaps(self, start: date, end: date) -> bool:
        return self.start <= end and start <= self.end


@dataclass(frozen=True)
class Assessment:
    """The verdict before the quota: reasons to refuse, or the term to cover."""

    term: CoverageTerm
    reasons: list[Reason]

    @property
    def eligible(self) -> bool:
        return not self.reasons


def reason(code: str, message: str) -> Reason:
    return Reason(code=code, message=message)


ALREADY_ENROLLED = reason(
    "already_enrolled",
    "Sudah menjadi peserta aktif pada periode yang sama / "
    "Already enrolled for an overlapping period",
)
QUOTA_EXHAUSTED = reason(
    "quota_exhausted",
    "Kuota program sudah penuh / The programme's quota is exhausted",
)


def coverage_term(program: ProgramRules, business_date: date | None) -> CoverageTerm:
    """From the term's first day if decided on or before it, or, under `from_term_start`, on or
    before the registration deadline (cover backdated with BPJS's approval); otherwise from the
    next month's first day."""
    if business_date is None or business_date <= program.coverage_start:
        return CoverageTerm(program.coverage_start, program.coverage_end)
    deadline = program.registration_deadline or program.coverage_start
    if program.policy == "from_term_start" and business_date <= deadline:
        return CoverageTerm(program.coverage_start, program.coverage_end)
    return CoverageTerm(first_of_next_month(business_date), program.coverage_end)


def first_of_next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def age_on(birth_date: date, day: date) -> int:
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def nik_birth_parts(nik: str) -> tuple[int, int, int, Literal["M", "F"]]:
    """(day, month, two-digit year, gender) embedded in a NIK: women have 40 added to the day."""
    day, month, year = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    return (day - 40, month, year, "F") if day > 40 else (day, month, year, "M")


def assess(
    program: ProgramRules,
    applicant: Applicant,
    business_date: date | None,
    enrolled_terms: list[CoverageTerm],
) -> Assessment:
    """Every rule but the quota, which needs the programme's seats (see `decide_batch`)."""
    term = coverage_term(program, business_date)
    reasons: list[Reason] = []
    region = applicant.nik[:4]
    if region not in program.region_codes:
        reasons.append(
            reason(
                "region_mismatch",
                f"NIK terdaftar di wilayah {region}, bukan wilayah program "
                f"({', '.join(sorted(program.region_codes))}) / NIK region {region} is outside "
                "the programme's region",
            )
        )
    day, month, yy, nik_gender = nik_birth_parts(applicant.nik)
    born = applicant.birth_date
    if (day, month, yy) != (born.day, born.month, born.year % 100):
        reasons.append(
            reason(
                "birth_date_mismatch",
                "Tanggal lahir tidak sesuai dengan NIK / Birth date does not match the NIK",
            )
        )
    if nik_gender != applicant.gender:
        reasons.append(
            reason(
                "gender_mismatch",
                "Jenis kelamin tidak sesuai dengan NIK / Gender does not match the NIK",
            )
        )
    if term.start > term.end:
        reasons.append(
            reason(
                "program_ended",
                "Masa program berakhir sebelum kepesertaan dapat dimulai / "
                "The programme ends before cover could start",
            )
        )
    age = age_on(born, min(term.start, program.coverage_end))
    if age < program.min_age:
        reasons.append(
            reason(
                "age_below_minimum",
                f"Usia {age} tahun di bawah batas minimum {program.min_age} / "
                f"Age {age} is below the minimum {program.min_age}",
            )
        )
    elif age > program.max_age:
        reasons.append(
            reason(
                "age_above_maximum",
                f"Usia {age} tahun di atas batas maksimum {program.max_age} / "
                f"Age {age} is above the maximum {program.max_age}",
            )
        )
    if any(enrolled.overlaps(term.start, term.end) for enrolled in enrolled_terms):
        reasons.append(ALREADY_ENROLLED)
    return Assessment(term=term, reasons=reasons)


@dataclass(frozen=True)
class Registration:
    """A registered worker to decide."""

    worker_id: str
    program_id: str
    applicant: Applicant


@dataclass(frozen=True)
class Seats:
    quota: int
    taken: int


@dataclass(frozen=True)
class Decided:
    """A worker's decision: confirmed for `term` unless there are reasons to reject."""

    registration: Registration
    term: CoverageTerm
    reasons: list[Reason]

    @property
    def confirmed(self) -> bool:
        return not self.reasons


def decide_batch(
    registrations: list[Registration],
    programs: Mapping[str, ProgramRules],
    seats: Mapping[str, Seats],
    business_date: date | None,
    enrolled: Mapping[str, list[CoverageTerm]],
    decided: AbstractSet[str] = frozenset(),
) -> list[Decided]:
    """Decide each worker once, in order, first come first served against its programme's
    seats. Skipped: workers in `decided` (decided before) and a worker's later records. A
    confirmation takes a seat and enrols the NIK (`enrolled`: confirmed terms by NIK), so the
    batch's later workers see it, as if decided one by one. The inputs are left as they are."""
    taken = {program_id: s.taken for program_id, s in seats.items()}
    terms = {nik: list(t) for nik, t in enrolled.items()}
    seen = set(decided)
    verdicts = []
    for registration in registrations:
        if registration.worker_id in seen:
            continue
        seen.add(registration.worker_id)
        program_id, nik = registration.program_id, registration.applicant.nik
        nik_terms = terms.setdefault(nik, [])
        assessment = assess(programs[program_id], registration.applicant, business_date, nik_terms)
        reasons = assessment.reasons
        if not reasons:
            if taken[program_id] < seats[program_id].quota:
                taken[program_id] += 1
                nik_terms.append(assessment.term)
            else:
                reasons = [QUOTA_EXHAUSTED]
        verdicts.append(Decided(registration, assessment.term, reasons))
    return verdicts


@dataclass(frozen=True)
class Member:
    """A worker confirmed for a programme's term, as the next term's carry reads it."""

    worker_id: str
    nik: str
    birth_date: date


def reason_passes_maximum_age(max_age: int, term_end: date) -> Reason:
    return reason(
        "age_above_maximum_in_term",
        f"Usia melewati batas maksimum {max_age} tahun sebelum {term_end.isoformat()}, akhir "
        f"masa program berikutnya / Passes the maximum age {max_age} before the next term ends",
    )


RENEWAL_QUOTA_EXHAUSTED = reason(
    "renewal_quota_exhausted",
    "Kuota perpanjangan sudah penuh (peserta dilanjutkan menurut urutan pendaftaran) / The "
    "renewal's quota is taken (workers are carried in registration order)",
)


def carry_into_term(
    members: list[Member],
    term: ProgramRules,
    quota: int,
    business_date: date | None,
    enrolled_elsewhere: AbstractSet[str] = frozenset(),
) -> list[tuple[Member, CoverageTerm, list[Reason]]]:
    """Carry a term's workers (in registration order) into the next `term`: each is checked
    against the new term's dates (a worker older than the maximum age before the term ends, or
    covered by another programme then: `enrolled_elsewhere`, worker ids, is not carried) and
    takes one of its `quota` seats; the rest keep a reason each. The new cover starts as
    `coverage_term` says: the term's first day when renewed in time, so no gap."""
    cover = coverage_term(term, business_date)
    carried = 0
    verdicts = []
    for member in members:
        reasons: list[Reason] = []
        if cover.start > cover.end:
            reasons.append(reason("program_ended", "Masa program berakhir / The term is over"))
        elif age_on(member.birth_date, term.coverage_end) > term.max_age:
            reasons.append(reason_passes_maximum_age(term.max_age, term.coverage_end))
        elif member.worker_id in enrolled_elsewhere:
            reasons.append(ALREADY_ENROLLED)
        elif carried >= quota:
            reasons.append(RENEWAL_QUOTA_EXHAUSTED)
        else:
            carried += 1
        verdicts.append((member, cover, reasons))
    return verdicts


def latest_day(known: date | None, announced: list[date]) -> date | None:
    """The business day after some DayStarted events: days only move forward, so a late or
    repeated one does not turn the clock back."""
    return max([*announced, *([known] if known else [])], default=None)
