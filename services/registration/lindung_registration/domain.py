"""Pure rules for a registration request: what makes it acceptable, and its normal form.

No I/O and no clock. Every error is a stable code with a message in Bahasa Indonesia and English.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import date, datetime
from functools import cached_property
from typing import Any, Literal

import phonenumbers
from stdnum.exceptions import InvalidComponent, InvalidFormat, InvalidLength, ValidationError
from stdnum.id import nik as stdnum_nik

from lindung_contracts import (
    FieldError,
    RegistrationRejected,
    RegistrationRequested,
    WorkerRegistered,
)

MAX_NAME_LENGTH = 100
MAX_PLACE_LENGTH = 100
WORKER_NAMESPACE = uuid.UUID("4f1c9c55-6a57-4c8e-9a86-3b1f3c1d2a10")
#: BPJS Ketenagakerjaan's membership numbers (nomor KPJ) have 11 digits (as the contract says:
#: to be checked against the branch's format).
KPJ_DIGITS = 11

_MESSAGES: dict[str, str] = {
    "nik_required": "NIK wajib diisi / NIK is required",
    "nik_invalid_format": "NIK hanya boleh berisi angka / NIK must contain digits only",
    "nik_invalid_length": "NIK harus 16 digit / NIK must be 16 digits",
    "nik_invalid_component": (
        "NIK tidak valid: kode wilayah atau tanggal lahir di dalamnya salah / "
        "NIK is not valid: its region code or embedded birth date is wrong"
    ),
    "name_required": "Nama lengkap wajib diisi / Full name is required",
    "name_too_long": (
        f"Nama maksimal {MAX_NAME_LENGTH} karakter / Name is at most {MAX_NAME_LENGTH} characters"
    ),
    "birth_date_required": "Tanggal lahir wajib diisi / Birth date is required",
    "birth_date_invalid": (
        "Tanggal lahir tidak valid (format YYYY-MM-DD atau DD/MM/YYYY) / "
        "Birth date is not valid (use YYYY-MM-DD or DD/MM/YYYY)"
    ),
    "gender_invalid": (
        "Jenis kelamin harus M/L (laki-laki) atau F/P (perempuan) / Gender must be M or F"
    ),
    "village_required": "Desa/Kelurahan wajib diisi / Village is required",
    "district_required": "Kecamatan wajib diisi / District is required",
    "place_too_long": (
        f"Nama tempat maksimal {MAX_PLACE_LENGTH} karakter / "
        f"Place name is at most {MAX_PLACE_LENGTH} characters"
    ),
    "phone_invalid": "Nomor HP tidak valid / Phone number is not valid",
    "occupation_too_long": "Pekerjaan maksimal 100 karakter / Occupation is at most 100 characters",
    "program_id_required": "Program wajib diisi / Programme is required",
    "program_unknown": (
        "Program tidak dikenal: belum diterbitkan atau salah tulis / "
        "Unknown programme: not published (yet), or misspelt"
    ),
    "text_invalid_characters": (
        "Isian mengandung karakter yang tidak sah / The value contains characters that are "
        "not allowed"
    ),
    "kpj_required": "Nomor KPJ wajib diisi / The KPJ number is required",
    "kpj_invalid": (
        f"Nomor KPJ harus {KPJ_DIGITS} digit angka / The KPJ number must be {KPJ_DIGITS} digits"
    ),
    "unknown_nik": (
        "Tidak ada peserta dengan NIK ini di program ini / No worker with this NIK in the programme"
    ),
    "kpj_conflict": (
        "Peserta ini sudah memiliki nomor KPJ lain / The worker already has another KPJ number"
    ),
    "kpj_taken": (
        "Nomor KPJ ini sudah dimiliki peserta lain / The KPJ number belongs to another worker"
    ),
}

_GENDERS: dict[str, Literal["M", "F"]] = {
    "M": "M",
    "L": "M",
    "LAKI-LAKI": "M",
    "LAKI LAKI": "M",
    "MALE": "M",
    "PRIA": "M",
    "F": "F",
    "P": "F",
    "PEREMPUAN": "F",
    "FEMALE": "F",
    "WANITA": "F",
}


def field_error(field: str, code: str) -> FieldError:
    return FieldError(field=field, code=code, message=_MESSAGES[code])


@dataclass(frozen=True)
class ValidRegistration:
    program_id: str
    nik: str
    full_name: str
    birth_date: date
    gender: Literal["M", "F"]
    occupation: str
    village: str
    district: str
    phone: str | None

    @cached_property
    def worker_id(self) -> str:
        return worker_id_for(self.program_id, self.nik)


def worker_id_for(program_id: str, nik: str) -> str:
    """Deterministic: the same NIK in the same programme is the same worker, even on replay."""
    return str(uuid.uuid5(WORKER_NAMESPACE, f"{program_id}/{nik}"))


def validate_registration(
    request: RegistrationRequested,
) -> ValidRegistration | list[FieldError]:
    """The normalised registration, or every field error at once (staff fix a row in one go)."""
    errors: list[FieldError] = []
    program_id = request.program_id.strip()
    if not program_id:
        errors.append(field_error("program_id", "program_id_required"))

    nik = normalise_nik(request.nik)
    if isinstance(nik, FieldError):
        errors.append(nik)

    full_name = " ".join(request.full_name.split())
    if not full_name:
        errors.append(field_error("full_name", "name_required"))
    elif len(full_name) > MAX_NAME_LENGTH:
        errors.append(field_error("full_name", "name_too_long"))

    birth_date = parse_date(request.birth_date)
    if not request.birth_date.strip():
        errors.append(field_error("birth_date", "birth_date_required"))
    elif birth_date is None:
        errors.append(field_error("birth_date", "birth_date_invalid"))

    gender = _GENDERS.get(request.gender.strip().upper())
    if gender is None:
        errors.append(field_error("gender", "gender_invalid"))

    village = " ".join(request.village.split())
    district = " ".join(request.district.split())
    for field, value, required in (
        ("village", village, "village_required"),
        ("district", district, "district_required"),
    ):
        if not value:
            errors.append(field_error(field, required))
        elif len(value) > MAX_PLACE_LENGTH:
            errors.append(field_error(field, "place_too_long"))

    occupation = " ".join(request.occupation.split())
    if len(occupation) > 100:
        errors.append(field_error("occupation", "occupation_too_long"))

    phone = normalise_phone(request.phone) if request.phone and request.phone.strip() else None
    if isinstance(phone, FieldError):
        errors.append(phone)

    for field, text in (
        ("full_name", full_name),
        ("village", village),
        ("district", district),
        ("occupation", occupation),
    ):
        if has_invalid_characters(text):
            errors = [e for e in errors if e.field != field]
            errors.append(field_error(field, "text_invalid_characters"))

    if errors:
        return errors
    assert isinstance(nik, str) and birth_date is not None and gender is not None
    assert phone is None or isinstance(phone, str)
    return ValidRegistration(
        program_id=program_id,
        nik=nik,
        full_name=full_name,
        birth_date=birth_date,
        gender=gender,
        occupation=occupation,
        village=village,
        district=district,
        phone=phone,
    )


def has_invalid_characters(text: str) -> bool:
    """Control characters (NUL, escape codes) or lone surrogates: no name or place has them, and
    PostgreSQL cannot store NUL."""
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def printable(text: str, limit: int) -> str:
    """A value as given, made safe to echo back in an event (lone surrogates and controls
    replaced)."""
    return "".join(
        "\ufffd" if unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in text[:limit]
    )


def normalise_nik(raw: str) -> str | FieldError:
    """A NIK as 16 digits, checked by python-stdnum (length, region, embedded birth date)."""
    if not raw or not raw.strip():
        return field_error("nik", "nik_required")
    if len(raw) > 64:
        return field_error("nik", "nik_invalid_length")
    try:
        nik = str(stdnum_nik.validate(raw))
    except InvalidLength:  # a subclass of InvalidFormat in stdnum: test it first
        return field_error("nik", "nik_invalid_length")
    except InvalidFormat:
        return field_error("nik", "nik_invalid_format")
    except (InvalidComponent, ValidationError):
        return field_error("nik", "nik_invalid_component")
    day = int(nik[6:8])
    if not (1 <= day <= 31 or 41 <= day <= 71):  # stdnum reads the day modulo 40: 81-99 pass it
        return field_error("nik", "nik_invalid_component")
    return nik


_DMY = re.compile(r"^([0-9]{1,2})[/.-]([0-9]{1,2})[/.-]([0-9]{4})$")
_ISO = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]00:00(?::00(?:\.0+)?)?)?$")


def parse_date(raw: str) -> date | None:
    """ISO `YYYY-MM-DD` (also with a midnight time, as spreadsheets export dates) or Indonesian
    `DD/MM/YYYY`; anything else is not a date."""
    text = raw.strip()
    try:
        if match := _DMY.match(text):
            day, month, year = (int(g) for g in match.groups())
            return date(year, month, day)
        if match := _ISO.match(text):
            year, month, day = (int(g) for g in match.groups())
            return date(year, month, day)
    except ValueError:
        return None
    return None


def normalise_phone(raw: str) -> str | FieldError:
    """Indonesian numbers in any common form (0812..., 62812..., +62 812-...) as E.164."""
    # Only digits and the usual separators: phonenumbers would read letters as keypad digits.
    if len(raw) > 32 or not re.fullmatch(r"\+?[0-9 ().-]+", raw.strip()):
        return field_error("phone", "phone_invalid")
    try:
        number = phonenumbers.parse(raw, "ID")
    except phonenumbers.NumberParseException:
        return field_error("phone", "phone_invalid")
    if not phonenumbers.is_valid_number(number):
        return field_error("phone", "phone_invalid")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- a batch of requests --------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What one request comes to: `valid` to register, `errors` to answer, or nothing new
    (`repeated`: the worker is registered already)."""

    request: RegistrationRequested
    status: Literal["registered", "repeated", "rejected"]
    valid: ValidRegistration | None = None
    errors: list[FieldError] = dataclass_field(default_factory=list)


def candidate_worker_id(request: RegistrationRequested) -> str:
    """The worker a request would register, before validation (to look it up with the batch)."""
    return worker_id_for(request.program_id.strip(), stdnum_nik.compact(request.nik))


def decide_registrations(
    requests: Sequence[RegistrationRequested],
    known_programs: Collection[str],
    registered: Collection[str],
) -> list[Decision]:
    """Each request's decision, in order: every field error at once (a programme not published
    among them), else registered once: a worker in `registered` (by id), or earlier in
    `requests`, is `repeated`."""
    seen = set(registered)
    decisions = []
    for request in requests:
        result = validate_registration(request)
        program_id = request.program_id.strip()
        if program_id and program_id not in known_programs:
            unknown = field_error("program_id", "program_unknown")
            result = [unknown, *(result if isinstance(result, list) else [])]
        if isinstance(result, list):
            decisions.append(Decision(request, "rejected", errors=result))
        elif result.worker_id in seen:
            decisions.append(Decision(request, "repeated", valid=result))
        else:
            seen.add(result.worker_id)
            decisions.append(Decision(request, "registered", valid=result))
    return decisions


def rejection(
    request: RegistrationRequested, errors: list[FieldError], request_id: str | None
) -> RegistrationRejected:
    """The answer to a refused request: its values as given (made printable), every error."""
    return RegistrationRejected(
        program_id=printable(request.program_id, 64),
        nik=printable(request.nik, 64),
        errors=errors,
        request_id=request_id,
        village=printable(request.village, 200),
        district=printable(request.district, 200),
    )


def registration(valid: ValidRegistration, registered_at: datetime) -> WorkerRegistered:
    return WorkerRegistered(
        worker_id=valid.worker_id,
        program_id=valid.program_id,
        nik=valid.nik,
        full_name=valid.full_name,
        birth_date=valid.birth_date,
        gender=valid.gender,
        occupation=valid.occupation,
        village=valid.village,
        district=valid.district,
        phone=valid.phone,
        registered_at=registered_at,
    )


# --- the funnel (worker_status) ------------------------------------------------------------------


@dataclass(frozen=True)
class StatusChange:
    """What one event changes in its worker's funnel row: columns it `sets`, columns it `fills`
    only while they are empty (a place), counters it `adds` to. Events of a kind change the same
    columns, so a batch of them is one statement."""

    worker_id: str
    program_id: str
    nik: str
    sets: Mapping[str, Any] = dataclass_field(default_factory=dict)
    fills: Mapping[str, str] = dataclass_field(default_factory=dict)
    adds: Mapping[str, int] = dataclass_field(default_factory=dict)
    raises: Mapping[str, int] = dataclass_field(default_factory=dict)  # only ever up (a rank)

    def columns(self) -> tuple[frozenset[str], ...]:
        """The columns it changes, by how: changes alike are one statement (`projection.save`)."""
        return tuple(frozenset(c) for c in (self.sets, self.fills, self.adds, self.raises))


#: A worker's funnel row before any event: the columns an event does not change on insert.
NEW_STATUS: Mapping[str, Any] = {
    "village": "",
    "district": "",
    "registered": False,
    "eligibility": "",
    "ineligible_reasons": "",
    "invoice_id": None,
    "invoiced_idr": 0,
    "activated": False,
    "expiry_alerts": 0,
    "coverage_rank": 0,
}


def merge_status_changes(changes: Sequence[StatusChange]) -> list[StatusChange]:
    """One change per worker (in first-seen order), as if the batch's events were applied one
    after the other: a later value set wins, the first non-empty fill wins, counters add up, the
    highest raise wins."""
    merged: dict[str, StatusChange] = {}
    for change in changes:
        before = merged.get(change.worker_id)
        if before is None:
            merged[change.worker_id] = change
            continue
        merged[change.worker_id] = StatusChange(
            worker_id=before.worker_id,
            program_id=before.program_id,
            nik=before.nik,
            sets={**before.sets, **change.sets},
            fills={
                name: before.fills.get(name) or change.fills.get(name, "")
                for name in {**before.fills, **change.fills}
            },
            adds={
                name: before.adds.get(name, 0) + change.adds.get(name, 0)
                for name in {**before.adds, **change.adds}
            },
            raises={
                name: max(before.raises.get(name, 0), change.raises.get(name, 0))
                for name in {**before.raises, **change.raises}
            },
        )
    return list(merged.values())


def status_row(change: StatusChange) -> dict[str, Any]:
    """The row to insert for a worker without one yet: a new row with the change applied."""
    return {
        **NEW_STATUS,
        "worker_id": change.worker_id,
        "program_id": change.program_id,
        "nik": change.nik,
        **change.fills,
        **change.sets,
        **{name: NEW_STATUS[name] + n for name, n in change.adds.items()},
        **{name: max(NEW_STATUS[name], n) for name, n in change.raises.items()},
    }


# --- coverage status ----------------------------------------------------------------------------

CoverageStatus = Literal["carried", "awaiting_payment", "active", "not_carried", "ended"]

#: How far a worker got within one term. A worker's coverage rank is `term * 10 + stage`: the
#: events of a later term outrank every event of an earlier one, and within a term a later
#: stage outranks an earlier one. Topics arrive in any order, so the rank is only ever raised:
#: an activation projected before its invoice, or term 1's invoice after term 2's carry, changes
#: nothing. `not_carried` (a renewal's refusal in term N) ranks above what happened in term N-1.
STAGES: dict[CoverageStatus, int] = {
    "carried": 0,
    "awaiting_payment": 1,
    "active": 2,
    "not_carried": 3,
    "ended": 4,
}
_BY_STAGE = {stage: name for name, stage in STAGES.items()}


def coverage_rank(term: int, status: CoverageStatus) -> int:
    """The rank of `status` in `term` (see STAGES)."""
    if term < 1:
        raise ValueError("terms are numbered from 1")
    return term * 10 + STAGES[status]


def coverage_status(rank: int) -> tuple[CoverageStatus, int] | None:
    """The status and term a rank stands for; None for a worker no coverage event reached yet
    (0: registered, or decided, but not invoiced)."""
    status = _BY_STAGE.get(rank % 10) if rank >= 10 else None
    return None if status is None else (status, rank // 10)


#: Timeline kinds that carry a worker's coverage dates, most telling first: the activation
#: states the cover, the confirmation the cover planned, the end and alerts only its last day.
COVERAGE_KINDS = (
    "coverage_activated",
    "eligibility_confirmed",
    "coverage_ended",
    "coverage_expiring",
)


def coverage_dates(
    entries: Iterable[tuple[str, Mapping[str, Any]]], term: int
) -> tuple[date | None, date | None]:
    """A worker's coverage start and end in `term`, from their timeline entries (kind, details)
    in any order; (None, None) when no entry of that term has them. Entries projected before
    terms existed carry no `term`: they are term 1's."""
    best: dict[str, Mapping[str, Any]] = {}
    for kind, details in entries:
        if kind in COVERAGE_KINDS and details.get("term", 1) == term:
            best.setdefault(kind, details)
    start: date | None = None
    end: date | None = None
    for kind in COVERAGE_KINDS:
        if (found := best.get(kind)) is not None:
            start = start or _iso_date(found.get("coverage_start"))
            end = end or _iso_date(found.get("coverage_end"))
    return start, end


def _iso_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


# --- the timeline ------------------------------------------------------------------------------


# --- membership numbers (nomor KPJ) -------------------------------------------------------------

NumberStatus = Literal["assigned", "repeated", "unknown_nik", "kpj_conflict", "invalid"]


@dataclass(frozen=True)
class NumberRow:
    """One NIK → KPJ pair, as given (by an event or a spreadsheet row), for a programme."""

    program_id: str
    nik: str
    kpj: str


@dataclass(frozen=True)
class KnownNumbers:
    """What registration has, for the NIKs and numbers of the rows: each registered worker
    (programme, NIK) with their number if they have one, and the NIK holding each number."""

    workers: Mapping[tuple[str, str], str | None]
    holders: Mapping[str, str]


@dataclass(frozen=True)
class NumberDecision:
    """What one row comes to: `assigned` (store it), `repeated` (the worker has this number
    already: nothing changes), or refused with its errors: `unknown_nik`, `kpj_conflict`,
    `invalid`. `nik` and `kpj` are the normal forms, once valid."""

    row: NumberRow
    status: NumberStatus
    nik: str | None = None
    kpj: str | None = None
    errors: list[FieldError] = dataclass_field(default_factory=list)

    @property
    def code(self) -> str:
        """The reason of a refusal, e.g. for a dead letter: `unknown_nik`, `kpj_conflict`, or
        the first error of an invalid row."""
        return self.status if self.status != "invalid" else self.errors[0].code


def normalise_kpj(raw: str) -> str | FieldError:
    """A KPJ as its digits: spaces, dots and dashes between them are dropped."""
    text = re.sub(r"[\s.\-]", "", raw or "")
    if not text:
        return field_error("kpj", "kpj_required")
    if len(text) != KPJ_DIGITS or not text.isascii() or not text.isdigit():
        return field_error("kpj", "kpj_invalid")
    return text


def assign_numbers(rows: Sequence[NumberRow], known: KnownNumbers) -> list[NumberDecision]:
    """Each row's decision, in order, each row seeing the ones before it assigned. A worker has
    one number and a number one worker, for good: another number for a worker, or a number
    another NIK holds (in any programme), is a `kpj_conflict`. The same NIK in two programmes is
    one person, who may hold the same number in both."""
    workers = dict(known.workers)
    holders = dict(known.holders)
    decisions = []
    for row in rows:
        nik = normalise_nik(row.nik)
        kpj = normalise_kpj(row.kpj)
        errors = [e for e in (nik, kpj) if isinstance(e, FieldError)]
        if errors:
            decisions.append(NumberDecision(row, "invalid", errors=errors))
            continue
        assert isinstance(nik, str) and isinstance(kpj, str)
        worker = (row.program_id.strip(), nik)
        if worker not in workers:
            refusal = field_error("nik", "unknown_nik")
            decisions.append(NumberDecision(row, "unknown_nik", nik, kpj, [refusal]))
            continue
        held = workers[worker]
        if held == kpj:
            decisions.append(NumberDecision(row, "repeated", nik, kpj))
            continue
        if held is not None:
            conflict = field_error("kpj", "kpj_conflict")
            decisions.append(NumberDecision(row, "kpj_conflict", nik, kpj, [conflict]))
            continue
        if holders.get(kpj, nik) != nik:
            taken = FieldError(field="kpj", code="kpj_conflict", message=_MESSAGES["kpj_taken"])
            decisions.append(NumberDecision(row, "kpj_conflict", nik, kpj, [taken]))
            continue
        workers[worker] = kpj
        holders[kpj] = nik
        decisions.append(NumberDecision(row, "assigned", nik, kpj))
    return decisions
