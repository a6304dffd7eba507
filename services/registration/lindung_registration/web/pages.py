"""The staff pages' routes: thin, like the API's. They read through `views` and the API's own
functions (the summary, a worker, the timeline, an import), and change things only through the
paths the API takes (an import is accepted by the same `Importer`, a renewal judged by the same
`renew`)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from lindung_registration.api import (
    NO_SUCH_WORKER,
    RenewalAnswer,
    RenewalIn,
    accept_spreadsheet,
    attachment,
    errors_csv,
    handover_csv_answer,
    handover_term,
    renew,
    require_program,
    summarise,
    timeline_of,
    validation_error,
    visible_import,
    worker_of,
)
from lindung_registration.auth import KeyStore
from lindung_registration.domain import normalise_nik
from lindung_registration.imports import Importer
from lindung_registration.settings import RegistrationSettings
from lindung_registration.spreadsheet import (
    template_csv,
)
from lindung_registration.web import charts, format, views
from lindung_registration.web.session import (
    COOKIE,
    HOME,
    LOGIN_COOKIE,
    LOGIN_PATH,
    LoginRequired,
    Sessions,
    StaffSession,
    login_url,
    safe_next,
    same_token,
)
from lindung_runtime import Service
from lindung_runtime.limits import too_large_message
from lindung_runtime.logging import get_logger

log = get_logger(__name__)

HERE = Path(__file__).parent
NOT_FOUND = "Peserta tidak ditemukan"
NOT_FOUND_TEXT = (
    "Tidak ada peserta dengan data ini yang dapat Anda lihat. Periksa NIK atau nama, atau "
    "hubungi Disnaker bila peserta terdaftar di desa lain."
)
#: Pages carry personal data: never cached, never framed, scripts and styles from here only.
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    format.register(env)
    env.globals.update(
        funnel=views.FUNNEL,
        beside=views.BESIDE,
        status_names=views.STATUS_NAMES,
        kind_names=views.KIND_NAMES,
        indonesian=views.indonesian,
    )
    return env


TEMPLATES = Jinja2Templates(env=_environment())


def render(
    request: Request,
    template: str,
    staff: StaffSession | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {"staff": staff, "key": staff.key if staff else None, **context},
        status_code=status_code,
    )
    response.headers.update(HEADERS)
    return response


def too_large_page(path: str, limit: int) -> str | None:
    """The 413 of an upload from a staff page, as a page (BodySizeLimit's hook)."""
    if not path.startswith("/ui/"):
        return None
    return TEMPLATES.get_template("error.html").render(
        staff=None,
        key=None,
        title="Berkas terlalu besar",
        message=views.indonesian(too_large_message(limit))
        + f". Bagi berkas menjadi beberapa bagian di bawah {format.angka(limit // 1_000_000)} MB.",
        back="javascript:history.back()",
    )


def install_web(service: Service, keys: KeyStore, importer: Importer) -> None:
    app = service.http
    settings = importer.settings
    sessions = Sessions(service, keys, settings)
    app.state.staff_sessions = sessions
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.include_router(_router(service, keys, importer, sessions, settings))
    _install_errors(app)


def _install_errors(app: FastAPI) -> None:
    async def login_required(request: Request, error: Exception) -> Response:
        assert isinstance(error, LoginRequired)
        if request.url.path.endswith("/progress"):  # the page's script asks: it reloads
            return JSONResponse({"detail": "login"}, status_code=401)
        # A cookie that no longer opens a session: it ended (idle, too old, logged out).
        ended = "&berakhir=1" if request.cookies.get(COOKIE) else ""
        response = RedirectResponse(login_url(error.next_page) + ended, status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    async def invalid_input(request: Request, error: Exception) -> Response:
        """A page's malformed query (a search too long, a list without its desa) as a page."""
        if not request.url.path.startswith("/ui/"):
            return await validation_error(request, error)
        return render(
            request,
            "error.html",
            await _maybe_staff(request),
            status_code=422,
            title="Isian tidak valid",
            message="Alamat atau isian halaman ini tidak lengkap atau terlalu panjang.",
            back=HOME,
        )

    async def page_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if not request.url.path.startswith("/ui/") or request.url.path.endswith("/progress"):
            return await http_exception_handler(request, error)
        if error.status_code == 404 and str(error.detail) == NO_SUCH_WORKER:
            return not_found(request, await _maybe_staff(request))
        titles = {
            400: "Permintaan tidak dapat dibaca",
            403: "Tidak diizinkan",
            404: "Tidak ditemukan",
            413: "Berkas terlalu besar",
            415: "Jenis berkas salah",
            422: "Isian tidak valid",
        }
        return render(
            request,
            "error.html",
            await _maybe_staff(request),
            status_code=error.status_code,
            title=titles.get(error.status_code, "Terjadi kesalahan"),
            message=views.indonesian(str(error.detail)),
            back=request.headers.get("referer") or HOME,
        )

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(HTTPException, page_error)
    app.add_exception_handler(RequestValidationError, invalid_input)


async def _maybe_staff(request: Request) -> StaffSession | None:
    sessions: Sessions = request.app.state.staff_sessions
    return await sessions.find(request.cookies.get(COOKIE))


def not_found(request: Request, staff: StaffSession | None) -> HTMLResponse:
    """One answer for an unknown worker and for one the key may not see: a village key must not
    learn that a NIK exists in another desa."""
    return render(
        request, "not_found.html", staff, status_code=404, title=NOT_FOUND, message=NOT_FOUND_TEXT
    )


def _where(request: Request) -> str:
    """The page to come back to after a login: this one for a GET, the form's page for a POST."""
    if request.method == "GET":
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    referer = request.headers.get("referer") or ""
    host = f"{request.url.scheme}://{request.url.netloc}"
    return safe_next(referer[len(host) :] if referer.startswith(host) else HOME)


async def staff(request: Request) -> StaffSession:
    """The caller's live session, or off to the login page (and back here after it)."""
    found = await _maybe_staff(request)
    if found is None:
        raise LoginRequired(_where(request))
    return found


Staff = Annotated[StaffSession, Depends(staff)]


def require_token(fields: Mapping[str, str], session: StaffSession, again: str) -> None:
    """403 unless the form carries the session's CSRF token; `again` is what the user does once
    the page is reloaded (kirim, unggah)."""
    if not same_token(fields.get("csrf_token"), session.csrf_token):
        raise HTTPException(
            403,
            "Formulir ini kedaluwarsa atau tidak dikirim dari halaman Lindung: muat ulang "
            f"halaman lalu {again} lagi / Missing or wrong CSRF token",
        )


def _router(
    service: Service,
    keys: KeyStore,
    importer: Importer,
    sessions: Sessions,
    settings: RegistrationSettings,
) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    async def checked(request: Request, session: StaffSession) -> dict[str, str]:
        """The form's fields, once its CSRF token is the session's; 403 otherwise."""
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        require_token(fields, session, "kirim")
        return fields

    def cookie(response: Response, request: Request, name: str, value: str, age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=age,
            path="/ui",
            httponly=True,
            secure=sessions.secure_for(request),
            samesite="lax",
        )

    @router.get("", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(HOME, status_code=303)

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(
        request: Request,
        next: Annotated[str, Query(max_length=2000)] = "",
        keluar: bool = False,
        berakhir: bool = False,
    ) -> HTMLResponse:
        notice = (
            "Anda telah keluar."
            if keluar
            else "Sesi Anda telah berakhir. Silakan masuk lagi; Anda akan kembali ke halaman tadi."
            if berakhir
            else None
        )
        return _login_form(request, next, notice=notice)

    def _login_form(
        request: Request, next_page: str, notice: str | None = None, error: str | None = None
    ) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        response = render(
            request,
            "login.html",
            None,
            status_code=401 if error else 200,
            next=safe_next(next_page),
            login_token=token,
            notice=notice,
            error=error,
        )
        cookie(response, request, LOGIN_COOKIE, token, 30 * 60)
        return response

    @router.post("/login", response_class=HTMLResponse)
    async def login(
        request: Request,
        api_key: Annotated[str, Form(max_length=200)] = "",
        next: Annotated[str, Form(max_length=2000)] = "",
        login_token: Annotated[str, Form(max_length=200)] = "",
    ) -> Response:
        expected = request.cookies.get(LOGIN_COOKIE) or ""
        if not expected or not same_token(login_token, expected):
            return _login_form(
                request, next, error="Formulir masuk kedaluwarsa. Silakan coba lagi."
            )
        key = keys.find(api_key.strip()) if api_key.strip() else None
        if key is None:
            log.info("staff_login_refused")
            return _login_form(
                request, next, error="Kunci API tidak dikenal. Periksa kunci yang Anda terima."
            )
        token, _ = await sessions.open(key)
        response = RedirectResponse(safe_next(next), status_code=303)
        cookie(response, request, COOKIE, token, settings.web_session_max_hours * 3600)
        response.delete_cookie(LOGIN_COOKIE, path="/ui")
        return response

    @router.post("/logout")
    async def logout(request: Request, session: Staff) -> Response:
        await checked(request, session)
        token = request.cookies.get(COOKIE)
        if token:
            await sessions.close(token)
        log.info("staff_logout", key=session.key.name)
        response = RedirectResponse(f"{LOGIN_PATH}?keluar=1", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    @router.get("/", response_class=HTMLResponse)
    async def programmes_page(request: Request, session: Staff) -> HTMLResponse:
        known = await views.programmes(service)
        terms = await views.terms_of(service, [p.program_id for p in known])
        today = service.clock.now().date()
        cards = [
            views.programme_card(
                program,
                terms.get(program.program_id, []),
                (await summarise(service, program.program_id, session.key)).totals,
                today,
            )
            for program in known
        ]
        return render(request, "programmes.html", session, cards=cards, today=today)

    async def programme_data(program_id: str, session: StaffSession) -> dict[str, Any]:
        program = await require_program(service, program_id)
        key = session.key
        today = service.clock.now().date()
        summary = await summarise(service, program_id, key)
        places = views.places_of(summary, key)
        terms = (await views.terms_of(service, [program_id])).get(program_id, [])
        categories, series = charts.month_series(
            await views.cost_per_month(service, program_id, places)
        )
        registrations = await views.registrations_per_day(service, program_id, places)
        activations = await views.activations_per_day(service, program_id, places)
        return {
            "program": program,
            "card": views.programme_card(program, terms, summary.totals, today),
            "terms": sorted(terms, key=lambda t: t.term),
            "summary": summary,
            "villages": views.scoped_summary(summary),
            "funnel_of": views.funnel_counts,
            "invoices": await views.invoices_of(service, program_id, places),
            "rejections": await views.latest_rejections(service, program_id, key, places),
            "imports": await views.imports_of(service, program_id, key),
            "registrations_chart": charts.bar_chart(
                charts.daily_points(registrations),
                id="pendaftaran",
                title="Pendaftaran per hari",
                description=views.describe_days("terdaftar", registrations),
            ),
            "activations_chart": charts.bar_chart(
                charts.daily_points(activations),
                id="aktivasi",
                title="Aktivasi per hari",
                description=views.describe_days("aktif", activations),
            ),
            "cost_chart": charts.grouped_bar_chart(
                categories,
                series,
                id="biaya",
                title="Biaya iuran per bulan, per masa",
                description="Iuran JKK dan JKM yang ditagihkan untuk setiap bulan, per masa",
                value_format=format.rupiah_singkat,
            ),
            "today": today,
        }

    @router.get("/programs/{program_id}", response_class=HTMLResponse)
    async def programme_page(
        request: Request,
        program_id: str,
        session: Staff,
        masa: Annotated[int, Query(ge=1, le=10_000)] = 1,
        perpanjangan: Literal["baru", "sama"] | None = None,
    ) -> HTMLResponse:
        """`perpanjangan` says what the renewal form just did (a fixed text, never the query's)."""
        notice = {
            "baru": f"Perpanjangan masa ke-{masa} diterbitkan.",
            "sama": f"Program sudah memiliki masa ke-{masa} ini; tidak ada yang diubah.",
            None: None,
        }[perpanjangan]
        data = await programme_data(program_id, session)
        return render(request, "programme.html", session, notice=notice, **data)

    @router.post("/programs/{program_id}/imports")
    async def upload(request: Request, program_id: str, session: Staff) -> Response:
        await require_program(service, program_id)
        job = await accept_spreadsheet(
            importer,
            request,
            program_id,
            session.key,
            check=lambda part: require_token(part.fields, session, "unggah"),
        )
        return RedirectResponse(f"/ui/imports/{job.import_id}", status_code=303)

    @router.post("/programs/{program_id}/renewals", response_class=HTMLResponse)
    async def renewal(request: Request, program_id: str, session: Staff) -> Response:
        fields = await checked(request, session)
        if session.key.role != "operator":
            raise HTTPException(403, "Hanya operator yang dapat memperpanjang program")
        given = {
            name: fields.get(name, "").strip()
            for name in (
                "term_start",
                "term_end",
                "quota",
                "reported_income_idr",
                "registration_deadline",
            )
        }
        errors: list[str] = []
        try:
            body = RenewalIn.model_validate(
                {
                    name: int(value.replace(".", "")) if name in INTEGERS else value
                    for name, value in given.items()
                    if value
                }
            )
        except (ValidationError, ValueError) as error:
            errors = _renewal_errors(error)
        else:
            status, answer = await renew(service, program_id, body)
            if isinstance(answer, RenewalAnswer):
                kind = "baru" if status == 202 else "sama"
                return RedirectResponse(
                    f"/ui/programs/{program_id}?masa={answer.term}&perpanjangan={kind}"
                    "#perpanjangan",
                    status_code=303,
                )
            errors = [views.indonesian(e.message) for e in answer.errors] or [
                views.indonesian(answer.detail)
            ]
        data = await programme_data(program_id, session)
        return render(
            request,
            "programme.html",
            session,
            status_code=422,
            renewal_errors=errors,
            renewal_given=given,
            **data,
        )

    @router.get("/imports/template.csv")
    async def import_template(session: Staff) -> Response:
        return Response(
            template_csv(),
            media_type="text/csv; charset=utf-8",
            headers=attachment("template-pendaftaran.csv"),
        )

    @router.get("/imports/{import_id}", response_class=HTMLResponse)
    async def import_page(request: Request, import_id: str, session: Staff) -> HTMLResponse:
        job = await visible_import(importer, import_id, session.key)
        _, rejected = await importer.rows(job.import_id, status="rejected", offset=0, limit=50)
        program = await require_program(service, job.program_id)
        rows = [
            (r.row_number, [views.indonesian(e["message"]) for e in json.loads(r.errors or "[]")])
            for r in rejected
        ]
        return render(request, "import.html", session, job=job, program=program, rejected=rows)

    @router.get("/imports/{import_id}/progress")
    async def import_progress(import_id: str, session: Staff) -> JSONResponse:
        job = await visible_import(importer, import_id, session.key)
        return JSONResponse(
            {
                "status": job.status,
                "rows_total": job.rows_total,
                "rows_done": job.rows_done,
                "registered": job.registered,
                "repeated": job.repeated,
                "rejected": job.rejected,
            },
            headers={"Cache-Control": "no-store"},
        )

    @router.get("/imports/{import_id}/errors.csv")
    async def import_errors(import_id: str, session: Staff) -> Response:
        return errors_csv(importer, await visible_import(importer, import_id, session.key))

    @router.get("/programs/{program_id}/villages/workers.csv")
    async def village_list(
        program_id: str,
        session: Staff,
        district: Annotated[str, Query(max_length=200)],
        village: Annotated[str, Query(max_length=200)],
    ) -> Response:
        """The workers of one desa, for the village office: NIKs masked for a village key."""
        await require_program(service, program_id)
        key = session.key
        if not key.covers(village, district):
            raise HTTPException(404, "Desa ini tidak ada dalam program yang dapat Anda lihat")

        log.info("village_list_exported", program_id=program_id, key=key.name)
        return StreamingResponse(
            views.village_csv(service, program_id, district, village, key),
            media_type="text/csv; charset=utf-8",
            headers=attachment(f"peserta-{program_id}-{_slug(district)}-{_slug(village)}.csv"),
        )

    @router.get("/programs/{program_id}/terms/{term}/handover.csv")
    async def handover(program_id: str, term: int, session: Staff) -> Response:
        await handover_term(service, program_id, term, session.key)
        return handover_csv_answer(service, program_id, term)

    @router.get("/workers", response_class=HTMLResponse)
    async def search_page(
        request: Request, session: Staff, q: Annotated[str, Query(max_length=100)] = ""
    ) -> Response:
        if not q.strip():
            return render(request, "search.html", session, q="", found=[])
        found = await views.search(service, q, session.key)
        if not found:
            return not_found(request, session)
        if len(found) == 1 and isinstance(normalise_nik(q), str):
            only = found[0]
            return RedirectResponse(
                f"/ui/programs/{only.program_id}/workers/{only.worker_id}", status_code=303
            )
        return render(request, "search.html", session, q=q, found=found)

    @router.get("/programs/{program_id}/workers/{worker_id}", response_class=HTMLResponse)
    async def worker_page(
        request: Request, program_id: str, worker_id: str, session: Staff
    ) -> HTMLResponse:
        key = session.key
        worker = await worker_of(service, program_id, worker_id[:36], key)
        program = await require_program(service, program_id)
        timeline = await timeline_of(service, worker.nik, key)
        invoices = {
            e.details.get("invoice_id") for e in timeline.entries if e.worker_id == worker_id
        }
        entries = [
            e
            for e in timeline.entries
            if e.worker_id == worker_id
            or (e.kind == "payment_received" and e.details.get("invoice_id") in invoices)
        ]
        history = views.term_history(
            (e.kind, e.details) for e in entries if e.worker_id == worker_id
        )
        return render(
            request,
            "worker.html",
            session,
            worker=worker,
            nik=views.show_nik(worker.nik, key),
            program=program,
            entries=entries,
            history=history,
        )

    return router


INTEGERS = ("quota", "reported_income_idr")
RENEWAL_FIELDS = {
    "term_start": "Mulai masa",
    "term_end": "Akhir masa",
    "quota": "Kuota",
    "reported_income_idr": "Dasar iuran",
    "registration_deadline": "Batas pendaftaran",
}


def _renewal_errors(error: ValidationError | ValueError) -> list[str]:
    if isinstance(error, ValidationError):
        return [
            f"{RENEWAL_FIELDS.get(str(e['loc'][-1]), str(e['loc'][-1]))}: isian tidak valid"
            + (" (tanggal TTTT-BB-HH)" if "date" in e["type"] else "")
            for e in error.errors()[:10]
        ]
    return ["Kuota dan dasar iuran harus berupa angka bulat"]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40] or "desa"
