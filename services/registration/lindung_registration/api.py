"""Registration's HTTP API: the front door for people (spreadsheets) and upstream systems.

Every route but health needs a bearer API key (see auth.py). Errors carry per-field messages in
Bahasa Indonesia and English, in the same shape as the `RegistrationRejected` event.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    HTTPException,
    Path,
    Query,
    Request,
    Security,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry.trace import SpanKind
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import and_, case
from sqlalchemy import exc as sa_exc
from sqlmodel import col, func, select

from lindung_contracts import FieldError, ProgramRenewed, RegistrationRequested, renewal_outcome
from lindung_contracts.events import RUPIAH_MAX
from lindung_registration.auth import ApiKey, KeyStore
from lindung_registration.db import (
    ImportJob,
    KnownProgram,
    MembershipNumber,
    PaymentRecord,
    RejectedRequest,
    TimelineEntry,
    Worker,
    WorkerStatus,
)
from lindung_registration.domain import (
    COVERAGE_KINDS,
    STAGES,
    CoverageStatus,
    coverage_dates,
    coverage_status,
    normalise_nik,
    printable,
)
from lindung_registration.handlers import (
    Intake,
    Outcome,
    known_terms,
    register_all,
)
from lindung_registration.handover import (
    apply_numbers,
    handover_csv,
    handover_xlsx,
    spool,
)
from lindung_registration.imports import Importer, UploadTooLarge
from lindung_registration.spreadsheet import (
    FORMATS,
    SpreadsheetError,
    format_of,
    rejected_csv_header,
    rejected_csv_line,
    template_csv,
)
from lindung_registration.uploads import FilePart, UploadError, file_part
from lindung_runtime import Service
from lindung_runtime.clock import as_utc
from lindung_runtime.limits import BodySizeLimit, too_large_message
from lindung_runtime.logging import get_logger
from lindung_runtime.messages import Transaction
from lindung_runtime.privacy import mask_nik
from lindung_runtime.tracing import current_trace_headers

log = get_logger(__name__)

ProgramId = Annotated[
    str,
    Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Programme id, e.g. sbd-2025q4"),
]
Text = Annotated[str, Field(max_length=1000)]
IMPORT_ID = re.compile(r"[0-9a-f]{32}")
WORKER_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
IMPORT_PATH = r"(/ui)?/programs/[^/]+/imports"
NUMBERS_PATH = r"/programs/[^/]+/membership-numbers"
UPLOAD_FRAMING_BYTES = 64 * 1024
UPLOAD_BODY: dict[str, Any] = {  # documented by hand: the route reads its body itself
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "The spreadsheet (CSV or XLSX), at most IMPORT_MAX_BYTES",
                    }
                },
            }
        }
    },
}
TermNumber = Annotated[int, Path(ge=1, le=10_000, description="The term: 1 as published, ...")]
CSV_ANSWER: dict[str, Any] = {"content": {"text/csv": {}}}
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


Instant = Annotated[datetime, AfterValidator(as_utc)]


# --- bodies and answers -------------------------------------------------------------------------


class WorkerIn(BaseModel):
    """One worker, as an upstream system or a form sends it. Values are judged by the same rules
    as the Kafka intake: dates `YYYY-MM-DD` or `DD/MM/YYYY`, gender `L/P` or `M/F`, phone in any
    Indonesian form (stored as E.164)."""

    model_config = ConfigDict(
        extra="ignore",
        coerce_numbers_to_str=True,
        json_schema_extra={
            "example": {
                "nik": "5318010101900001",
                "full_name": "Yohanes Bili",
                "birth_date": "01/01/1990",
                "gender": "L",
                "occupation": "Petani",
                "village": "Kalena Wanno",
                "district": "Kota Tambolaka",
                "phone": "0812-3456-7890",
            }
        },
    )

    nik: Text
    full_name: Text = ""
    birth_date: Text = ""
    gender: Text = ""
    occupation: Text = ""
    village: Text = ""
    district: Text = ""
    phone: Text | None = None


class RegistrationAnswer(BaseModel):
    worker_id: str
    status: Literal["registered", "repeated"]


class ErrorAnswer(BaseModel):
    detail: str
    errors: list[FieldError] = Field(default_factory=list)


class ProgramOut(BaseModel):
    program_id: str
    name: str
    sponsor: str
    coverage_start: date
    coverage_end: date


class ImportAccepted(BaseModel):
    import_id: str
    status: str
    progress_url: str
    errors_url: str


class ImportRowReport(BaseModel):
    row: int = Field(description="Row number as the spreadsheet shows it (header is row 1)")
    status: Literal["registered", "repeated", "rejected"]
    worker_id: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


class ImportReport(BaseModel):
    import_id: str
    program_id: str
    filename: str
    status: Literal["queued", "running", "done", "failed"]
    rows_total: int | None = Field(description="Non-empty data rows in the file, once counted")
    rows_done: int
    registered: int
    repeated: int
    rejected: int
    error: str | None
    created_at: Instant
    finished_at: Instant | None
    rows_matching: int = Field(description="Rows of the report matching `status` (all if unset)")
    offset: int
    rows: list[ImportRowReport]


class TimelineItem(BaseModel):
    kind: str = Field(
        description="registered, registration_rejected, eligibility_confirmed, "
        "eligibility_rejected, invoiced, payment_received, coverage_activated, "
        "coverage_expiring, coverage_ended, membership_number_assigned"
    )
    occurred_at: Instant
    program_id: str | None = None
    worker_id: str | None = None
    event_id: str
    trace_id: str | None = None
    details: dict[str, Any]


class CoverageOut(BaseModel):
    status: CoverageStatus = Field(
        description="In the worker's latest term: awaiting_payment (invoiced, not yet active), "
        "active, ended (the term ended unrenewed), carried (into a renewal's term, not yet "
        "invoiced), not_carried (a renewal did not carry the worker into its term)"
    )
    term: int = Field(description="The programme term the status is about (1 as published)")
    coverage_start: date | None = Field(description="First covered day in that term, if known")
    coverage_end: date | None = Field(description="Last covered day in that term, if known")


class WorkerRef(BaseModel):
    worker_id: str
    program_id: str
    village: str
    district: str
    coverage: CoverageOut | None = Field(
        default=None, description="None until the worker is invoiced or carried into a term"
    )
    kpj: str | None = Field(
        default=None,
        description="BPJS Ketenagakerjaan's membership number (nomor KPJ), once it is known",
    )


class WorkerOut(BaseModel):
    worker_id: str
    program_id: str
    nik: str
    full_name: str
    village: str
    district: str
    registered_at: Instant
    eligibility: str = Field(
        description="The eligibility decision on registration: confirmed, rejected, or empty "
        "until it is made"
    )
    ineligible_reasons: list[str]
    coverage: CoverageOut | None
    kpj: str | None = Field(
        default=None,
        description="BPJS Ketenagakerjaan's membership number (nomor KPJ), once it is known",
    )
    timeline_url: str


class RenewalIn(BaseModel):
    """The programme's next PKS term. Quota and contribution basis are the previous term's
    unless given."""

    model_config = ConfigDict(
        extra="forbid",  # a misspelt optional field must not be dropped silently
        json_schema_extra={
            "example": {
                "term_start": "2026-01-01",
                "term_end": "2026-03-31",
                "quota": 6000,
            }
        },
    )

    term_start: date
    term_end: date
    quota: Annotated[int | None, Field(strict=True, gt=0)] = None
    reported_income_idr: Annotated[
        int | None, Field(strict=True, ge=1_000_000, le=RUPIAH_MAX, description="Whole Rupiah")
    ] = None
    registration_deadline: date | None = None


class RenewalAnswer(BaseModel):
    program_id: str
    term: int = Field(description="The term's number (1 as published, 2 after one renewal, ...)")
    status: Literal["accepted", "repeated"] = Field(
        description="accepted: published, to become this term; repeated: this term already"
    )
    term_start: date
    term_end: date


class NumberRowError(BaseModel):
    row: int = Field(description="Row number as the spreadsheet shows it (header is row 1)")
    nik: str = Field(description="The NIK as given, masked (its first and last four digits)")
    code: str = Field(
        description="unknown_nik, kpj_conflict, kpj_invalid, or the NIK's (nik_invalid_length, ...)"
    )
    message: str = Field(description="Bahasa Indonesia / English")


class NumbersAnswer(BaseModel):
    program_id: str
    rows: int = Field(description="Data rows read")
    assigned: int = Field(description="Numbers stored (and published)")
    repeated: int = Field(description="The worker had this number already: nothing changed")
    without_kpj: int = Field(description="Rows with an empty NOMOR_KPJ, left alone")
    rejected: int = Field(description="Rows refused, each with its errors")
    error: str | None = Field(
        description="Why reading stopped before the file's end (a limit), if it did"
    )
    errors: list[NumberRowError] = Field(
        description="The refused rows' errors, in row order: the first 1,000 at most"
    )


class Timeline(BaseModel):
    nik: str
    workers: list[WorkerRef]
    entries: list[TimelineItem]


class FunnelCounts(BaseModel):
    requests_rejected: int = 0
    registered: int = 0
    confirmed: int = 0
    ineligible: int = 0
    invoiced: int = 0
    invoiced_idr: int = Field(default=0, description="Whole Rupiah")
    paid: int = Field(default=0, description="Invoiced, and that invoice paid (latest term)")
    activated: int = 0
    expiry_alerted: int = 0
    awaiting_payment: int = Field(default=0, description="Coverage status now: invoiced, unpaid")
    active: int = Field(default=0, description="Coverage status now: covered")
    carried: int = Field(default=0, description="Coverage status now: carried into a new term")
    not_carried: int = Field(default=0, description="Coverage status now: not carried")
    ended: int = Field(default=0, description="Coverage status now: ended unrenewed")


class VillageSummary(FunnelCounts):
    district: str
    village: str


class DistrictSummary(FunnelCounts):
    district: str


class ProgramSummary(BaseModel):
    program_id: str
    totals: FunnelCounts
    ineligible_by_reason: dict[str, int]
    by_district: list[DistrictSummary]
    by_village: list[VillageSummary]


#: What the two spreadsheet uploads (workers, membership numbers) may answer besides 2xx.
UPLOAD_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorAnswer, "description": "No such programme published"},
    413: {"model": ErrorAnswer, "description": "File larger than IMPORT_MAX_BYTES"},
    415: {"model": ErrorAnswer, "description": "Neither CSV nor XLSX"},
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorAnswer, "description": "The body cannot be parsed (not JSON/multipart)"},
    413: {"model": ErrorAnswer, "description": "The body is larger than API_MAX_BODY_BYTES"},
    401: {"model": ErrorAnswer, "description": "No API key, or an unknown one"},
    403: {"model": ErrorAnswer, "description": "The key's role does not allow this"},
    422: {"model": ErrorAnswer, "description": "Per-field errors (Bahasa Indonesia / English)"},
}


# --- the API ------------------------------------------------------------------------------------


def install_api(
    service: Service,
    keys: KeyStore,
    importer: Importer,
    page: Callable[[str, int], str | None] | None = None,
) -> None:
    """The API's routes and limits; `page` renders a too-large upload's answer for the staff
    pages (see BodySizeLimit)."""
    app = service.http
    app.title = "Lindung registration API"
    app.description = (
        "Register pekerja rentan for a sponsored BPJS Ketenagakerjaan programme, one by one or "
        "from a spreadsheet, and follow each worker's enrolment. Send `Authorization: Bearer "
        "<API key>` (create one with `lindung apikey create`)."
    )
    app.state.api_keys = keys
    app.add_exception_handler(RequestValidationError, validation_error)
    app.include_router(_router(service, importer))
    settings = importer.settings
    app.add_middleware(
        BodySizeLimit,
        page=page,
        max_bytes=settings.api_max_body_bytes,
        # An upload is its file plus the multipart framing around it.
        per_path=[
            (path, settings.import_max_bytes + UPLOAD_FRAMING_BYTES)
            for path in (IMPORT_PATH, NUMBERS_PATH)
        ],
    )


async def validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [
        FieldError(
            field=str(e["loc"][-1]) if e.get("loc") else "body",
            code="invalid_value",
            message=f"Isian tidak valid / Invalid value: {e.get('msg', '')}"[:300],
        )
        for e in error.errors()[:50]
    ]
    answer = ErrorAnswer(detail="Permintaan tidak valid / The request is not valid", errors=errors)
    return JSONResponse(answer.model_dump(), status_code=422)


_bearer = HTTPBearer(auto_error=False, description="API key (`lindung apikey create`)")


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> ApiKey:
    keys: KeyStore = request.app.state.api_keys
    key = keys.find(credentials.credentials) if credentials else None
    if key is None:
        raise HTTPException(
            401,
            "Kunci API tidak ada atau tidak dikenal / Missing or unknown API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key


Caller = Annotated[ApiKey, Depends(caller)]


def _router(service: Service, importer: Importer) -> APIRouter:
    router = APIRouter(responses=ERRORS)

    @router.post(
        "/programs/{program_id}/workers",
        status_code=201,
        response_model=RegistrationAnswer,
        tags=["registration"],
        summary="Register one worker",
        responses={
            200: {"model": RegistrationAnswer, "description": "Already registered"},
            404: {"model": ErrorAnswer, "description": "No such programme published"},
        },
    )
    async def register_worker(program_id: ProgramId, worker: WorkerIn, key: Caller) -> JSONResponse:
        """201 with the new worker id; 200 with the existing one when the NIK is already
        registered in this programme; 422 with every field error at once."""
        if not key.covers(worker.village, worker.district):
            raise HTTPException(
                403,
                "Kunci API desa hanya untuk warga desanya / A village key registers only its "
                "own village's workers",
            )
        await require_program(service, program_id)
        request = RegistrationRequested(program_id=program_id, **worker.model_dump())
        outcome = await _register_one(service, request)
        if outcome.status == "rejected":
            answer = ErrorAnswer(
                detail="Data peserta tidak valid / The worker's data is not valid",
                errors=outcome.errors,
            )
            return JSONResponse(answer.model_dump(), status_code=422)
        assert outcome.worker_id is not None
        body = RegistrationAnswer(worker_id=outcome.worker_id, status=outcome.status)
        return JSONResponse(
            body.model_dump(), status_code=201 if outcome.status == "registered" else 200
        )

    @router.post(
        "/programs/{program_id}/imports",
        status_code=202,
        response_model=ImportAccepted,
        tags=["imports"],
        summary="Import a CSV or XLSX spreadsheet of workers",
        responses=UPLOAD_ANSWERS,
        openapi_extra={"requestBody": UPLOAD_BODY},
    )
    async def start_import(program_id: ProgramId, request: Request, key: Caller) -> ImportAccepted:
        """Accepted at once and registered in the background: follow `progress_url`. Columns
        as in `GET /imports/template.csv` (Indonesian or English headers)."""
        await require_program(service, program_id)  # before reading a file meant for nothing
        job = await accept_spreadsheet(importer, request, program_id, key)
        return ImportAccepted(
            import_id=job.import_id,
            status=job.status,
            progress_url=f"/imports/{job.import_id}",
            errors_url=f"/imports/{job.import_id}/errors.csv",
        )

    @router.get(
        "/imports/template.csv",
        response_class=Response,  # errors stay documented as JSON; the 200 is text/csv
        tags=["imports"],
        summary="The empty spreadsheet template",
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def import_template(key: Caller) -> PlainTextResponse:
        return PlainTextResponse(
            template_csv(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="template-pendaftaran.csv"'},
        )

    @router.get(
        "/imports/{import_id}",
        response_model=ImportReport,
        tags=["imports"],
        summary="Progress and the per-row report of an import",
        responses={404: {"model": ErrorAnswer}},
    )
    async def import_report(
        import_id: str,
        key: Caller,
        status: Literal["registered", "repeated", "rejected"] | None = None,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=0, le=1000)] = 100,
    ) -> ImportReport:
        job = await visible_import(importer, import_id, key)
        matching, rows = await importer.rows(
            job.import_id, status=status, offset=offset, limit=limit
        )
        return ImportReport(
            import_id=job.import_id,
            program_id=job.program_id,
            filename=job.filename,
            status=job.status,  # type: ignore[arg-type]
            rows_total=job.rows_total,
            rows_done=job.rows_done,
            registered=job.registered,
            repeated=job.repeated,
            rejected=job.rejected,
            error=job.error,
            created_at=job.created_at,
            finished_at=job.finished_at,
            rows_matching=matching,
            offset=offset,
            rows=[
                ImportRowReport(
                    row=r.row_number,
                    status=r.status,  # type: ignore[arg-type]
                    worker_id=r.worker_id,
                    errors=[FieldError(**e) for e in json.loads(r.errors or "[]")],
                )
                for r in rows
            ],
        )

    @router.get(
        "/imports/{import_id}/errors.csv",
        tags=["imports"],
        summary="The rejected rows, with the reason beside each, ready to fix and upload again",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}}}, 404: {"model": ErrorAnswer}},
    )
    async def import_errors(import_id: str, key: Caller) -> StreamingResponse:
        return errors_csv(importer, await visible_import(importer, import_id, key))

    @router.get(
        "/workers/{nik}",
        response_model=Timeline,
        tags=["workers"],
        summary="A worker's enrolment timeline across all services",
        responses={404: {"model": ErrorAnswer}},
    )
    async def worker_timeline(
        nik: Annotated[str, Path(max_length=64)], key: Caller
    ) -> Timeline | JSONResponse:
        """Registered, eligibility decision and reasons, invoice line, payment, activation and
        expiry alerts, each with the id of the event it comes from and its trace id."""
        normal = normalise_nik(nik)
        if isinstance(normal, FieldError):
            return JSONResponse(
                ErrorAnswer(detail=normal.message, errors=[normal]).model_dump(), status_code=422
            )
        return await timeline_of(service, normal, key)

    @router.get(
        "/programs/{program_id}",
        response_model=ProgramOut,
        tags=["programmes"],
        summary="A published programme, as registration knows it",
        responses={404: {"model": ErrorAnswer, "description": "No such programme published"}},
    )
    async def program(program_id: ProgramId, key: Caller) -> ProgramOut:
        """Registration learns programmes from `program.published`: a client that publishes one
        and uploads at once asks here first, instead of racing the event."""
        known = await require_program(service, program_id)
        return ProgramOut.model_validate(known, from_attributes=True)

    @router.get(
        "/programs/{program_id}/summary",
        response_model=ProgramSummary,
        tags=["programmes"],
        summary="The programme's funnel, in total and per kecamatan and desa",
    )
    async def program_summary(program_id: ProgramId, key: Caller) -> ProgramSummary:
        """A village key sees its own desa only. `awaiting_payment` to `ended` count each
        worker once, by the coverage status of their latest term."""
        return await summarise(service, program_id, key)

    @router.get(
        "/programs/{program_id}/workers/{worker_id}",
        response_model=WorkerOut,
        tags=["workers"],
        summary="A worker of the programme: place, eligibility and coverage status",
        responses={404: {"model": ErrorAnswer, "description": "No such worker in the programme"}},
    )
    async def program_worker(
        program_id: ProgramId, worker_id: Annotated[str, Path(max_length=36)], key: Caller
    ) -> WorkerOut:
        """A village key sees the workers of its own desa only: another desa's worker is the
        same 404 as one never registered."""
        return await worker_of(service, program_id, worker_id, key)

    @router.post(
        "/programs/{program_id}/renewals",
        status_code=202,
        response_model=RenewalAnswer,
        tags=["programmes"],
        summary="Renew a programme for its next PKS term (operator keys only)",
        responses={
            200: {"model": RenewalAnswer, "description": "The programme has this term already"},
            404: {"model": ErrorAnswer, "description": "No such programme published"},
            409: {"model": ErrorAnswer, "description": "Overlaps a term of the programme"},
        },
    )
    async def renew_program(program_id: ProgramId, renewal: RenewalIn, key: Caller) -> JSONResponse:
        """202: published on `program.renewed`, with the number the term will have. Every
        service (registration too) numbers terms from that topic in its order, so a renewal
        published meanwhile by another operator may take the number first. 200 with the term's
        number when the programme has this very term (nothing is published); 409
        `term_overlaps` when it overlaps one, or starts before the last one ends."""
        if key.role != "operator":
            raise HTTPException(
                403,
                "Hanya kunci operator yang dapat memperpanjang program / Only an operator key "
                "may renew a programme",
            )
        status, answer = await renew(service, program_id, renewal)
        return JSONResponse(answer.model_dump(mode="json"), status_code=status)

    @router.get(
        "/programs/{program_id}/terms/{term}/handover.csv",
        tags=["handover"],
        summary="The workers confirmed for a term, for BPJS Ketenagakerjaan (CSV; operator)",
        response_class=StreamingResponse,
        responses={200: CSV_ANSWER, 404: {"model": ErrorAnswer}},
    )
    async def handover_csv_route(
        program_id: ProgramId, term: TermNumber, key: Caller
    ) -> StreamingResponse:
        """Columns as docs/api.md lists them (NIK, NAMA_LENGKAP, ..., NOMOR_KPJ), one row per
        worker confirmed for the term, by kecamatan, desa and name. Cells that would start a
        formula are written with a leading apostrophe."""
        await handover_term(service, program_id, term, key)
        return handover_csv_answer(service, program_id, term)

    @router.get(
        "/programs/{program_id}/terms/{term}/handover.xlsx",
        tags=["handover"],
        summary="The workers confirmed for a term, for BPJS Ketenagakerjaan (XLSX; operator)",
        response_class=Response,
        responses={200: {"content": {XLSX_TYPE: {}}}, 404: {"model": ErrorAnswer}},
    )
    async def handover_xlsx_route(program_id: ProgramId, term: TermNumber, key: Caller) -> Response:
        """The same rows and columns as the CSV, every cell a text cell."""
        await handover_term(service, program_id, term, key)
        body = await handover_xlsx(service, program_id, term)
        log.info("handover_exported", program_id=program_id, term=term, format="xlsx")
        return Response(
            body,
            media_type=XLSX_TYPE,
            headers=attachment(f"serah-terima-{program_id}-T{term}.xlsx"),
        )

    @router.post(
        "/programs/{program_id}/membership-numbers",
        response_model=NumbersAnswer,
        tags=["handover"],
        summary="Upload BPJS Ketenagakerjaan's membership numbers: NIK → NOMOR_KPJ (operator)",
        responses=UPLOAD_ANSWERS,
        openapi_extra={"requestBody": UPLOAD_BODY},
    )
    async def upload_numbers(program_id: ProgramId, request: Request, key: Caller) -> NumbersAnswer:
        """Applied at once: each number is stored and published on
        `membership.number-assigned`; the same number again changes nothing; rows with an empty
        NOMOR_KPJ are left alone (so the handover file, filled in, may be uploaded); every
        other row comes back with its errors (`unknown_nik`, `kpj_conflict`, `kpj_invalid`, an
        invalid NIK). 422 when the file has no NIK or NOMOR_KPJ column."""
        if key.role != "operator":
            raise HTTPException(
                403,
                "Hanya kunci operator yang dapat mengunggah nomor KPJ / Only an operator key may "
                "upload membership numbers",
            )
        await require_program(service, program_id)  # before reading a file meant for nothing
        return await _upload_numbers(service, importer, program_id, request, key)

    return router


async def spreadsheet_part(request: Request) -> tuple[FilePart, str]:
    """The request's `file` part and its format; 415 unless it is CSV or XLSX (by its name).
    Read from the stream here, after the key was checked (a body parameter is read first)."""
    upload = await file_part(request.stream(), request.headers.get("content-type"), "file")
    return upload, spreadsheet_format(upload)


async def accept_spreadsheet(
    importer: Importer,
    request: Request,
    program_id: str,
    key: ApiKey,
    check: Callable[[FilePart], None] | None = None,
) -> ImportJob:
    """Read the request's spreadsheet into an import, with the answers of `upload_answers`.
    The body is read here, after the key was checked (a body parameter is read first);
    `check` sees the form's fields before the file is read (the staff pages' CSRF token)."""
    with upload_answers(importer.settings.import_max_bytes):
        upload = await file_part(request.stream(), request.headers.get("content-type"), "file")
        if check is not None:
            check(upload)
        file_format = spreadsheet_format(upload)
        return await importer.accept(
            upload.chunks,
            program_id=program_id,
            filename=upload.filename or f"upload.{file_format}",
            file_format=file_format,
            key=key,
        )


def handover_csv_answer(service: Service, program_id: str, term: int) -> StreamingResponse:
    """A term's handover as a CSV download (the caller checked `handover_term`)."""
    log.info("handover_exported", program_id=program_id, term=term, format="csv")
    return StreamingResponse(
        handover_csv(service, program_id, term),
        media_type="text/csv; charset=utf-8",
        headers=attachment(f"serah-terima-{program_id}-T{term}.csv"),
    )


def spreadsheet_format(upload: FilePart) -> str:
    """csv or xlsx, by the file's name (or type); 415 for anything else."""
    file_format = format_of(upload.filename, upload.content_type)
    if file_format not in FORMATS:
        raise HTTPException(
            415, "Berkas harus CSV atau XLSX / The file must be CSV or XLSX (by its name)"
        )
    return file_format


@contextmanager
def upload_answers(max_bytes: int) -> Iterator[None]:
    """An upload's failures as the HTTP answers the spreadsheet routes give: a malformed body
    with its status and reason, a file past `max_bytes` with 413."""
    try:
        yield
    except UploadError as error:
        raise HTTPException(error.status, error.reason) from None
    except UploadTooLarge:
        raise HTTPException(413, too_large_message(max_bytes)) from None


async def visible_import(importer: Importer, import_id: str, key: ApiKey) -> ImportJob:
    """The import, if `key` may see it: an operator sees every one, another key its own."""
    # Ids are 32 hex digits; anything else (a NUL byte, say, which PostgreSQL cannot even
    # compare) is simply not an import.
    job = await importer.job(import_id) if IMPORT_ID.fullmatch(import_id) else None
    if job is None:
        raise HTTPException(404, "Impor tidak ditemukan / No such import")
    if key.role != "operator" and job.submitted_by != key.name:
        raise HTTPException(403, "Impor milik kunci lain / The import belongs to another key")
    return job


def errors_csv(importer: Importer, job: ImportJob) -> StreamingResponse:
    """An import's rejected rows with the reason beside each, streamed a page at a time."""

    async def body() -> AsyncIterator[str]:
        yield rejected_csv_header()
        async for number, values, reason in importer.rejected_rows(job.import_id):
            yield rejected_csv_line(number, values, reason)

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers=attachment(f"ditolak-{job.import_id}.csv"),
    )


def attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


async def _upload_numbers(
    service: Service, importer: Importer, program_id: str, request: Request, key: ApiKey
) -> NumbersAnswer:
    settings = importer.settings
    with service.tracer.start_as_current_span(
        "POST /programs/{program_id}/membership-numbers",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "POST", "lindung.program.id": program_id},
    ):
        with upload_answers(settings.import_max_bytes):
            upload, file_format = await spreadsheet_part(request)
            path = await spool(
                upload.chunks, settings.import_path, file_format, settings.import_max_bytes
            )
        try:
            report = await apply_numbers(
                service,
                path,
                file_format,
                importer.limits,
                chunk_rows=settings.import_chunk_rows,
                program_id=program_id,
                assigned_on=service.clock.now().date(),
                reference=printable(f"upload {key.name}: {upload.filename}", 200),
                trace=current_trace_headers(),
            )
        except SpreadsheetError as error:
            raise HTTPException(422, str(error)) from None
        finally:
            path.unlink(missing_ok=True)
    log.info(
        "membership_numbers_uploaded",
        program_id=program_id,
        rows=report.rows,
        assigned=report.assigned,
        repeated=report.repeated,
        rejected=report.rejected,
        key=key.name,
    )
    return NumbersAnswer(
        program_id=program_id,
        rows=report.rows,
        assigned=report.assigned,
        repeated=report.repeated,
        without_kpj=report.without_kpj,
        rejected=report.rejected,
        error=report.error,
        errors=[NumberRowError(**vars(e)) for e in report.errors],
    )


async def handover_term(service: Service, program_id: str, term: int, key: ApiKey) -> None:
    """403 for any key but the operator's; 404 for a programme or term registration does not
    know."""
    if key.role != "operator":
        raise HTTPException(
            403,
            "Hanya kunci operator yang dapat mengunduh serah terima / Only an operator key "
            "may download a handover",
        )
    async with service.database.read_session() as session:
        reading = Transaction(await session.connection(), service.clock)
        terms = (await known_terms(reading, {program_id})).get(program_id)
    if not terms:
        raise HTTPException(404, UNKNOWN_PROGRAM)
    if term > len(terms):
        raise HTTPException(
            404,
            f"Program ini belum memiliki masa ke-{term} / The programme has no term {term} (yet)",
        )


UNKNOWN_PROGRAM = (
    "Program tidak dikenal: belum diterbitkan atau salah tulis / "
    "Unknown programme: not published (yet), or misspelt"
)
NO_SUCH_WORKER = "Peserta tidak ditemukan / No such worker in this programme"


async def require_program(service: Service, program_id: str) -> KnownProgram:
    """The published programme, or 404: the caller has the id wrong, or is too early."""
    async with service.database.read_session() as session:
        known = await session.get(KnownProgram, program_id)
    if known is None:
        raise HTTPException(404, UNKNOWN_PROGRAM)
    return known


async def renew(
    service: Service, program_id: str, body: RenewalIn
) -> tuple[int, RenewalAnswer | ErrorAnswer]:
    """Judge the renewal by the rule every service applies (`renewal_outcome`) against the
    terms registration knows, and publish a new one through the outbox (registration records
    the term when it reads the event back, like everyone else)."""
    with service.tracer.start_as_current_span(
        "POST /programs/{program_id}/renewals",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "POST", "lindung.program.id": program_id},
    ):
        async with service.unit_of_work() as uow:
            terms = (await known_terms(await uow.transaction(), {program_id})).get(program_id)
            if not terms:
                raise HTTPException(404, UNKNOWN_PROGRAM)
            try:
                renewal = ProgramRenewed(
                    program_id=program_id, **body.model_dump(), renewed_at=service.clock.now()
                )
            except ValidationError as error:
                return 422, _invalid_term(error)
            outcome = renewal_outcome(terms, renewal.term_start, renewal.term_end)
            if outcome.kind == "overlaps":
                overlap = FieldError(
                    field="term_start",
                    code="term_overlaps",
                    message=f"Masa ini bertumpang tindih dengan masa ke-{outcome.term} program "
                    f"/ The term overlaps the programme's term {outcome.term} (a new term starts "
                    "after the last one ends)",
                )
                return 409, ErrorAnswer(detail=overlap.message, errors=[overlap])
            accepted = RenewalAnswer(
                program_id=program_id,
                term=outcome.term,
                status="accepted" if outcome.kind == "new" else "repeated",
                term_start=renewal.term_start,
                term_end=renewal.term_end,
            )
            if outcome.kind == "same":
                return 200, accepted
            uow.emit(renewal)
            await uow.commit()
    log.info("renewal_published", program_id=program_id, term=outcome.term)
    return 202, accepted


def _invalid_term(error: ValidationError) -> ErrorAnswer:
    """422 in the API's bilingual shape, for a term that is not one (it ends before it starts,
    its registration deadline is outside it)."""
    errors = [
        FieldError(
            field=str(e["loc"][-1]) if e.get("loc") else "term_end",
            code="term_invalid",
            message=f"Masa program tidak valid / The term is not valid: {e.get('msg', '')}"[:300],
        )
        for e in error.errors()[:10]
    ]
    return ErrorAnswer(detail="Masa program tidak valid / The term is not valid", errors=errors)


def _coverage(
    status: WorkerStatus | None, entries: Iterable[tuple[str, Mapping[str, Any]]]
) -> CoverageOut | None:
    """A worker's coverage status (from their funnel row) with its dates (from their timeline
    entries of that term)."""
    found = coverage_status(status.coverage_rank) if status is not None else None
    if found is None:
        return None
    name, term = found
    start, end = coverage_dates(entries, term)
    return CoverageOut(status=name, term=term, coverage_start=start, coverage_end=end)


async def worker_of(service: Service, program_id: str, worker_id: str, key: ApiKey) -> WorkerOut:
    if not WORKER_ID.fullmatch(worker_id):  # e.g. a NUL byte, which PostgreSQL cannot compare
        raise HTTPException(404, NO_SUCH_WORKER)
    async with service.database.read_session() as session:
        worker = await session.get(Worker, worker_id)
        # Another desa's worker is not there for a village key: it must not learn that it exists.
        if (
            worker is None
            or worker.program_id != program_id
            or not key.covers(worker.village, worker.district)
        ):
            raise HTTPException(404, NO_SUCH_WORKER)
        status = await session.get(WorkerStatus, worker_id)
        number = await session.get(MembershipNumber, worker_id)
        entries = (
            await session.exec(
                select(TimelineEntry.kind, TimelineEntry.details).where(
                    TimelineEntry.nik == worker.nik,
                    TimelineEntry.worker_id == worker_id,
                    col(TimelineEntry.kind).in_(COVERAGE_KINDS),
                )
            )
        ).all()
    return WorkerOut(
        worker_id=worker.worker_id,
        program_id=worker.program_id,
        nik=worker.nik,
        full_name=worker.full_name,
        village=worker.village,
        district=worker.district,
        registered_at=worker.registered_at,
        eligibility=status.eligibility if status else "",
        ineligible_reasons=list(
            filter(None, (status.ineligible_reasons if status else "").split(","))
        ),
        coverage=_coverage(status, [(kind, json.loads(details)) for kind, details in entries]),
        kpj=number.kpj if number else None,
        timeline_url=f"/workers/{worker.nik}",
    )


async def _register_one(service: Service, request: RegistrationRequested) -> Outcome:
    with service.tracer.start_as_current_span(
        "POST /programs/{program_id}/workers",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "POST", "lindung.program.id": request.program_id},
    ):
        for attempt in range(3):
            try:
                async with service.unit_of_work() as uow:
                    [(outcome, answer)] = await register_all(
                        [Intake(request, None, current_trace_headers())],
                        await uow.transaction(),
                    )
                    uow.emit_all([answer])
                    await uow.commit()
                break
            except sa_exc.IntegrityError:
                # The same worker registered by another intake at this very moment: ask again,
                # and the answer is "repeated".
                if attempt == 2:
                    raise
    return outcome


async def timeline_of(service: Service, nik: str, key: ApiKey) -> Timeline:
    async with service.database.read_session() as session:
        workers = (await session.exec(select(Worker).where(Worker.nik == nik))).all()
        entries = list(
            (
                await session.exec(
                    select(TimelineEntry)
                    .where(TimelineEntry.nik == nik)
                    .order_by(col(TimelineEntry.occurred_at))
                )
            ).all()
        )
        visible = [w for w in workers if key.covers(w.village, w.district)]
        allowed = {w.worker_id for w in visible}
        statuses = {
            status.worker_id: status
            for status in (
                await session.exec(select(WorkerStatus).where(WorkerStatus.nik == nik))
            ).all()
            if status.worker_id in allowed
        }
        numbers = {
            number.worker_id: number.kpj
            for number in (
                await session.exec(select(MembershipNumber).where(MembershipNumber.nik == nik))
            ).all()
        }
        # Payments only of the invoices on entries the caller may see (a village key: its own).
        invoices = {
            e.invoice_id
            for e in entries
            if e.invoice_id and (key.role == "operator" or e.worker_id in allowed)
        }
        payments = (
            (
                await session.exec(
                    select(PaymentRecord).where(col(PaymentRecord.invoice_id).in_(invoices))
                )
            ).all()
            if invoices
            else []
        )
    # A NIK outside the caller's desa gets the very answer of one never registered: a village key
    # must not learn that a NIK exists elsewhere.
    if (not workers and not entries) or (not visible and key.role != "operator"):
        raise HTTPException(404, "NIK tidak ditemukan / No worker with this NIK")
    details = {e.event_id: json.loads(e.details) for e in entries}
    items = [
        TimelineItem(
            kind=e.kind,
            occurred_at=e.occurred_at,
            program_id=e.program_id,
            worker_id=e.worker_id,
            event_id=e.event_id,
            trace_id=e.trace_id,
            details=details[e.event_id],
        )
        for e in entries
        if key.role == "operator" or e.worker_id in allowed
    ]
    items += [
        TimelineItem(
            kind="payment_received",
            occurred_at=p.announced_at,  # on the same clock as the other entries
            event_id=p.event_id,
            trace_id=p.trace_id,
            details={
                "invoice_id": p.invoice_id,
                "amount_idr": p.amount_idr,
                "reference": p.reference,
                "paid_at": as_utc(p.paid_at).isoformat(),
            },
        )
        for p in payments
    ]
    items.sort(key=lambda i: i.occurred_at)  # all UTC-aware after validation
    log.info("timeline_read", nik=mask_nik(nik), entries=len(items), key=key.name)
    return Timeline(
        nik=nik,
        workers=[
            WorkerRef(
                worker_id=w.worker_id,
                program_id=w.program_id,
                village=w.village,
                district=w.district,
                coverage=_coverage(
                    statuses.get(w.worker_id),
                    [(e.kind, details[e.event_id]) for e in entries if e.worker_id == w.worker_id],
                ),
                kpj=numbers.get(w.worker_id),
            )
            for w in visible
        ],
        entries=items,
    )


async def summarise(service: Service, program_id: str, key: ApiKey) -> ProgramSummary:
    """The programme's funnel as `key` may see it (a village key: its own desa), counted in
    SQL per desa: the JSON summary and the staff pages read the same numbers."""
    s = WorkerStatus
    rank = col(s.coverage_rank)
    counted: dict[str, Any] = {
        "registered": func.sum(case((col(s.registered), 1), else_=0)),
        "confirmed": func.sum(case((col(s.eligibility) == "confirmed", 1), else_=0)),
        "ineligible": func.sum(case((col(s.eligibility) == "rejected", 1), else_=0)),
        "invoiced": func.sum(case((col(s.invoice_id).is_not(None), 1), else_=0)),
        "invoiced_idr": func.sum(s.invoiced_idr),
        "paid": func.sum(
            case((col(s.invoice_id).in_(select(PaymentRecord.invoice_id)), 1), else_=0)
        ),
        "activated": func.sum(case((col(s.activated), 1), else_=0)),
        "expiry_alerted": func.sum(case((col(s.expiry_alerts) > 0, 1), else_=0)),
        # The coverage status of each worker's latest term: the stage of its rank.
        **{
            name: func.sum(case((and_(rank >= 10, rank % 10 == stage), 1), else_=0))
            for name, stage in STAGES.items()
        },
    }
    counts = tuple(counted.values())
    async with service.database.read_session() as session:
        funnel_rows = (
            await session.exec(
                select(s.district, s.village, *counts)  # type: ignore[call-overload]
                .where(s.program_id == program_id)
                .group_by(s.district, s.village)
            )
        ).all()
        rejected_rows = (
            await session.exec(
                select(  # type: ignore[call-overload]
                    RejectedRequest.district, RejectedRequest.village, func.count()
                )
                .where(RejectedRequest.program_id == program_id)
                .group_by(RejectedRequest.district, RejectedRequest.village)
            )
        ).all()
        reason_rows = (
            await session.exec(
                select(s.district, s.village, s.ineligible_reasons, func.count())  # type: ignore[call-overload]
                .where(s.program_id == program_id, s.eligibility == "rejected")
                .group_by(s.district, s.village, s.ineligible_reasons)
            )
        ).all()

    places: dict[tuple[str, str], VillageSummary] = {}

    def at(district: str, village: str) -> VillageSummary | None:
        if not key.covers(village, district):
            return None
        if (district, village) not in places:
            places[(district, village)] = VillageSummary(district=district, village=village)
        return places[(district, village)]

    for district, village, *values in funnel_rows:
        if (summary := at(district, village)) is not None:
            for name, value in zip(counted, values, strict=True):
                setattr(summary, name, int(value or 0))
    for district, village, count in rejected_rows:
        if (summary := at(district, village)) is not None:
            summary.requests_rejected = int(count)
    reasons: Counter[str] = Counter()
    for district, village, codes, count in reason_rows:
        if key.covers(village, district):
            for code in filter(None, (codes or "").split(",")):
                reasons[code] += int(count)

    fields = list(FunnelCounts.model_fields)
    totals = FunnelCounts(**{f: sum(getattr(v, f) for v in places.values()) for f in fields})
    districts: dict[str, DistrictSummary] = {}
    for (district, _), village_summary in sorted(places.items()):
        total = districts.setdefault(district, DistrictSummary(district=district))
        for f in fields:
            setattr(total, f, getattr(total, f) + getattr(village_summary, f))
    return ProgramSummary(
        program_id=program_id,
        totals=totals,
        ineligible_by_reason=dict(sorted(reasons.items())),
        by_district=list(districts.values()),
        by_village=[places[k] for k in sorted(places)],
    )
