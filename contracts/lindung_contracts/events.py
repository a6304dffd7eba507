"""The events that cross service boundaries, as immutable pydantic models.

Each model knows its topic, its CloudEvents type and the field it is keyed by. Consumers are
tolerant readers (unknown fields are ignored), so producers may add fields without breaking them.
Money is whole Rupiah (`int`, never float); dates are `date`, instants are timezone-aware.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from lindung_contracts import topics

#: The largest amount an event may carry: 2**53 - 1, the largest integer every JSON reader holds
#: exactly (JavaScript's Number.MAX_SAFE_INTEGER; larger ones are silently rounded), well inside
#: the BIGINT columns amounts are stored in (2**63 - 1). Rp 9 quadrillion: no invoice comes close.
RUPIAH_MAX = 2**53 - 1
Rupiah = Annotated[
    int,
    Field(strict=True, ge=0, le=RUPIAH_MAX, description="Whole Rupiah (IDR), never fractional"),
]
PositiveRupiah = Annotated[
    int, Field(strict=True, gt=0, le=RUPIAH_MAX, description="Whole Rupiah (IDR)")
]
Nik = Annotated[
    str, Field(pattern=r"^\d{16}$", description="16-digit NIK (Nomor Induk Kependudukan)")
]
RegionCode = Annotated[
    str, Field(pattern=r"^\d{4}$", description="Kemendagri province+regency code")
]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
CoverageStartPolicy = Literal["next_month", "from_term_start"]
Term = Annotated[
    int, Field(ge=1, description="The programme's PKS term: 1 as published, 2 after a renewal, ...")
]
Period = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="Calendar month")]
ShortText = Annotated[str, Field(max_length=200)]


def _unique_sorted(days: list[int]) -> list[int]:
    return sorted(set(days), reverse=True)


class Event(BaseModel):
    """Base of every event: frozen, tolerant of unknown fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    TOPIC: ClassVar[str]
    KEY_FIELD: ClassVar[str | None] = None
    VERSION: ClassVar[int] = 1

    @classmethod
    def ce_type(cls) -> str:
        """CloudEvents `type`: a stable, versioned name (`id.lindung.WorkerRegistered.v1`)."""
        return f"id.lindung.{cls.__name__}.v{cls.VERSION}"

    def key(self) -> str | None:
        return str(getattr(self, self.KEY_FIELD)) if self.KEY_FIELD else None


class WorkerEvent(Event):
    """An event about one worker in one programme: keyed by NIK."""

    KEY_FIELD: ClassVar[str | None] = "nik"

    worker_id: str
    program_id: str
    nik: Nik


#: Text that goes into a staff mail's headers (the subject names the programme): no control
#: characters (CR/LF would inject headers) nor Unicode line or paragraph separators.
_MAIL_SAFE = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
#: A staff address, one of a comma-joined list in a To header: no separators, quotes or brackets.
_STAFF_EMAIL = (
    r"^[^@\s,;:<>()\[\]\\\"\x00-\x1f\x7f-\x9f\u2028\u2029]+"
    r"@[^@\s,;:<>()\[\]\\\"\x00-\x1f\x7f-\x9f\u2028\u2029]+"
    r"\.[^@\s,;:<>()\[\]\\\"\x00-\x1f\x7f-\x9f\u2028\u2029]+$"
)


class ProgramPublished(Event):
    """A sponsor's programme (one PKS term): who is covered, for how long, and who to alert."""

    TOPIC: ClassVar[str] = topics.PROGRAM_PUBLISHED
    KEY_FIELD: ClassVar[str | None] = "program_id"

    program_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    name: Annotated[ShortText, Field(pattern=_MAIL_SAFE)]
    sponsor: Annotated[ShortText, Field(pattern=_MAIL_SAFE)]
    region_code: RegionCode
    additional_region_codes: list[RegionCode] = Field(
        default_factory=list,
        description="Other regency codes accepted (e.g. 5312 NIKs issued before the 2007 split)",
    )
    quota: Annotated[int, Field(strict=True, gt=0)]
    coverage_start: date
    coverage_end: date
    reported_income_idr: Annotated[int, Field(strict=True, ge=1_000_000, le=RUPIAH_MAX)] = 1_000_000
    min_age: Annotated[int, Field(ge=0, le=120)] = 18
    max_age: Annotated[int, Field(ge=0, le=120)] = 65
    alert_days_before_end: Annotated[
        list[Annotated[int, Field(ge=0, le=366)]], AfterValidator(_unique_sorted)
    ] = Field(default_factory=lambda: [30, 14, 7])
    staff_emails: list[Annotated[Email, Field(pattern=_STAFF_EMAIL)]] = Field(default_factory=list)
    coverage_start_policy: CoverageStartPolicy = Field(
        default="next_month",
        description="`next_month`: a worker confirmed after coverage_start is covered from the "
        "next month's first day. `from_term_start`: confirmed on or before registration_deadline, "
        "covered (and billed) from coverage_start; needs BPJS's approval of backdated cover",
    )
    registration_deadline: date | None = Field(
        default=None,
        description="With `from_term_start`: the last day a confirmation still counts from "
        "coverage_start; later ones start the next month",
    )
    backdating_approval: Annotated[str, Field(max_length=200, pattern=_MAIL_SAFE)] = Field(
        default="",
        description="With `from_term_start`: the reference of BPJS Ketenagakerjaan's approval of "
        "cover from the term's first day (a programme setting, never a default)",
    )

    @model_validator(mode="after")
    def _coherent(self) -> ProgramPublished:
        if self.coverage_end < self.coverage_start:
            raise ValueError("coverage_end is before coverage_start")
        if self.min_age > self.max_age:
            raise ValueError("min_age is above max_age")
        if self.coverage_start_policy == "from_term_start" and (
            self.registration_deadline is None or not self.backdating_approval.strip()
        ):
            raise ValueError(
                "from_term_start needs a registration_deadline and the backdating_approval"
            )
        if self.registration_deadline is not None and not (
            self.coverage_start <= self.registration_deadline <= self.coverage_end
        ):
            raise ValueError("registration_deadline is outside the term")
        return self

    @property
    def region_codes(self) -> frozenset[str]:
        return frozenset([self.region_code, *self.additional_region_codes])


class ProgramRenewed(Event):
    """The next PKS term of a published programme: its workers are carried into it without a new
    upload. A renewal of the same term again changes nothing; one that overlaps a term the
    programme already has is refused (dead-lettered with `term_overlaps`; HTTP answers 409)."""

    TOPIC: ClassVar[str] = topics.PROGRAM_RENEWED
    KEY_FIELD: ClassVar[str | None] = "program_id"

    program_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    term_start: date
    term_end: date
    quota: Annotated[int | None, Field(strict=True, gt=0)] = Field(
        default=None, description="Seats in the new term; the previous term's when absent"
    )
    reported_income_idr: Annotated[int | None, Field(strict=True, ge=1_000_000, le=RUPIAH_MAX)] = (
        Field(default=None, description="The contribution basis; the previous term's when absent")
    )
    registration_deadline: date | None = Field(
        default=None,
        description="With `from_term_start`: the last day a decision still counts from "
        "term_start (default: term_start itself)",
    )
    renewed_at: AwareDatetime

    @model_validator(mode="after")
    def _coherent(self) -> ProgramRenewed:
        if self.term_end < self.term_start:
            raise ValueError("term_end is before term_start")
        if self.registration_deadline is not None and not (
            self.term_start <= self.registration_deadline <= self.term_end
        ):
            raise ValueError("registration_deadline is outside the term")
        return self


class RegistrationRequested(Event):
    """An upstream request to enrol one worker, as given: the registration service validates it.

    Fields are deliberately loose strings so that a bad value gets a per-field rejection instead
    of a dead letter; only a body that is not this shape at all is dead-lettered.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)
    TOPIC: ClassVar[str] = topics.REGISTRATION_REQUESTED
    KEY_FIELD: ClassVar[str | None] = "nik"

    program_id: str
    nik: str
    full_name: str = ""
    birth_date: str = ""
    gender: str = ""
    occupation: str = ""
    village: str = ""
    district: str = ""
    phone: str | None = None


class WorkerRegistered(WorkerEvent):
    TOPIC: ClassVar[str] = topics.WORKER_REGISTERED

    full_name: ShortText
    birth_date: date
    gender: Literal["M", "F"]
    occupation: ShortText = ""
    village: ShortText
    district: ShortText
    phone: str | None = Field(default=None, description="E.164, e.g. +6281234567890")
    registered_at: AwareDatetime


class FieldError(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    code: str = Field(description="Stable identifier, e.g. `nik_invalid_length`")
    message: str = Field(description="Human message in Bahasa Indonesia / English")


class RegistrationRejected(Event):
    TOPIC: ClassVar[str] = topics.REGISTRATION_REJECTED
    KEY_FIELD: ClassVar[str | None] = "nik"

    program_id: str
    nik: str = Field(description="The NIK exactly as given (it may be malformed)")
    errors: list[FieldError]
    request_id: str | None = Field(default=None, description="ce_id of the rejected request")
    village: str = Field(default="", max_length=200, description="Desa/kelurahan as given")
    district: str = Field(default="", max_length=200, description="Kecamatan as given")


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str = Field(description="Stable identifier, e.g. `quota_exhausted`")
    message: str


class EligibilityConfirmed(WorkerEvent):
    TOPIC: ClassVar[str] = topics.ELIGIBILITY_CONFIRMED

    coverage_start: date
    coverage_end: date
    decided_at: AwareDatetime
    term: Term = 1
    carried: bool = Field(default=False, description="Carried from the term before, not new")
    full_name: str = ""
    village: str = ""
    district: str = ""


class EligibilityRejected(WorkerEvent):
    TOPIC: ClassVar[str] = topics.ELIGIBILITY_REJECTED

    reasons: list[Reason]
    decided_at: AwareDatetime
    term: Term = 1
    carried: bool = Field(
        default=False, description="A worker of the term before, not carried into this one"
    )


class ContributionInvoiced(WorkerEvent):
    """One worker's line on the sponsor's invoice for the programme term."""

    TOPIC: ClassVar[str] = topics.CONTRIBUTION_INVOICED

    invoice_id: str
    periods: list[Period]
    monthly_amount_idr: Rupiah
    amount_idr: Rupiah
    components: dict[str, Rupiah] = Field(
        description='Monthly amount per programme, e.g. {"JKK": 10000, "JKM": 6800}'
    )
    term: Term = 1


class PaymentReceived(Event):
    TOPIC: ClassVar[str] = topics.PAYMENT_RECEIVED
    KEY_FIELD: ClassVar[str | None] = "invoice_id"

    invoice_id: str
    amount_idr: PositiveRupiah
    paid_at: AwareDatetime
    reference: ShortText


class CoverageActivated(WorkerEvent):
    TOPIC: ClassVar[str] = topics.COVERAGE_ACTIVATED

    coverage_start: date
    coverage_end: date
    invoice_id: str = ""
    term: Term = 1


class DayStarted(Event):
    """The business clock: services take "today" from this, never from the wall clock."""

    TOPIC: ClassVar[str] = topics.DAY_STARTED

    date: date

    def key(self) -> str | None:
        return "clock"  # one partition: days arrive in order


class CoverageExpiring(WorkerEvent):
    TOPIC: ClassVar[str] = topics.COVERAGE_EXPIRING

    coverage_end: date
    days_left: Annotated[int, Field(ge=0)]
    full_name: str = ""
    village: str = ""
    district: str = ""
    alert_id: str = Field(default="", description="Identifies the programme's alert window")
    alert_size: int = Field(default=0, ge=0, description="How many workers the window alerts")
    term: Term = 1
    renewed_until: date | None = Field(
        default=None, description="The end of the next term when a renewal is published already"
    )


class CoverageEnded(WorkerEvent):
    """A worker's cover ended with its term and nobody renewed it."""

    TOPIC: ClassVar[str] = topics.COVERAGE_ENDED

    coverage_end: date
    term: Term = 1
    reason: Reason
    full_name: str = ""
    village: str = ""
    district: str = ""
    alert_id: str = Field(default="", description="Identifies the programme's ending, for mail")
    alert_size: int = Field(default=0, ge=0, description="How many workers ended with it")


class DigestSent(Event):
    TOPIC: ClassVar[str] = topics.DIGEST_SENT
    KEY_FIELD: ClassVar[str | None] = "program_id"

    digest_id: str
    program_id: str
    coverage_end: date
    days_left: int
    worker_count: int
    recipients: list[str]
    sent_at: AwareDatetime


class MembershipNumberAssigned(Event):
    """BPJS Ketenagakerjaan's membership number (nomor KPJ) of a worker of a programme, issued
    by the branch after it registered the worker from the handover and the first payment
    (PP 44/2015 Ps 11(4)). Sent by the branch's system, or published by registration for the
    rows of an uploaded NIK → KPJ spreadsheet. The same number again changes nothing; a NIK with
    no worker in the programme (`unknown_nik`), or a number that conflicts with the one the
    worker has or that belongs to another worker (`kpj_conflict`), is dead-lettered."""

    TOPIC: ClassVar[str] = topics.MEMBERSHIP_NUMBER_ASSIGNED
    KEY_FIELD: ClassVar[str | None] = "nik"

    program_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    nik: Nik
    kpj: Annotated[
        str,
        Field(
            pattern=r"^\d{11}$",
            description="Nomor KPJ, the worker's BPJS Ketenagakerjaan membership number: 11 "
            "digits (to be checked against the branch's format)",
        ),
    ]
    assigned_on: date = Field(description="The day BPJS Ketenagakerjaan issued the number")
    reference: ShortText = Field(
        default="", description="The sender's reference (a batch, a letter, an upload)"
    )


ALL_EVENTS: tuple[type[Event], ...] = (
    ProgramPublished,
    RegistrationRequested,
    WorkerRegistered,
    RegistrationRejected,
    EligibilityConfirmed,
    EligibilityRejected,
    ContributionInvoiced,
    PaymentReceived,
    CoverageActivated,
    DayStarted,
    CoverageExpiring,
    DigestSent,
    ProgramRenewed,
    CoverageEnded,
    MembershipNumberAssigned,
)

_BY_TOPIC = {event.TOPIC: event for event in ALL_EVENTS}


def event_for_topic(topic: str) -> type[Event]:
    return _BY_TOPIC[topic]
