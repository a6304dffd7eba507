"""Spreadsheet imports: an upload is written to disk as it arrives, then registered in the
background, a chunk of rows per transaction, through the same `register` use case as every
other intake.

Progress is committed with each chunk, so a restarted service resumes an import where it stopped
(registration is idempotent, so a chunk replayed after a crash changes nothing). Memory stays flat
whatever the file size: the file is streamed in and read row by row, within the spreadsheet
limits (IMPORT_MAX_*). An import that keeps killing its process (whatever the cause) is started
again at most IMPORT_MAX_RETRIES times, then marked failed, so it cannot crash-loop the service.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind
from sqlalchemy import case, insert
from sqlalchemy import exc as sa_exc
from sqlmodel import col, func, select
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from lindung_contracts import FieldError, RegistrationRequested
from lindung_registration.auth import ApiKey
from lindung_registration.db import ImportJob, ImportRow
from lindung_registration.domain import printable
from lindung_registration.handlers import Intake, Outcome, register_all
from lindung_registration.spreadsheet import (
    Limits,
    SpreadsheetError,
    read_rows,
    request_from_row,
)
from lindung_runtime.aio import wait_event
from lindung_runtime.describe import log_retries
from lindung_runtime.lease import Lease
from lindung_runtime.logging import get_logger
from lindung_runtime.tracing import current_trace_headers

if TYPE_CHECKING:
    from lindung_registration.settings import RegistrationSettings
    from lindung_runtime import Service

log = get_logger(__name__)

OUTSIDE_SCOPE = FieldError(
    field="village",
    code="village_not_allowed",
    message=(
        "Kunci API desa hanya boleh mendaftarkan warga desanya sendiri / "
        "A village API key may register only workers of its own village"
    ),
)


LEASE = timedelta(seconds=120)  # renewed with every chunk


class UploadTooLarge(Exception):
    pass


class LeaseLost(Exception):
    """This instance's lease on an import ran out and another instance claimed it."""


def gave_up_message(attempts: int) -> str:
    return (
        f"Impor dihentikan: proses layanan berhenti {attempts} kali saat mengerjakannya "
        "(berkas terlalu berat?); baris yang sudah diproses tetap tersimpan / Import stopped: the "
        f"service process died {attempts} times while working on it (a file too heavy?); the "
        "rows already processed are kept"
    )


def limits_of(settings: RegistrationSettings) -> Limits:
    return Limits(
        rows=settings.import_max_rows,
        columns=settings.import_max_columns,
        cell_chars=settings.import_max_cell_chars,
        xlsx_bytes=settings.import_max_xlsx_bytes,
        xlsx_entries=settings.import_max_xlsx_entries,
        xlsx_ratio=settings.import_max_xlsx_ratio,
        xlsx_strings_bytes=settings.import_max_xlsx_strings_bytes,
    )


@dataclass(frozen=True)
class Counts:
    registered: int = 0
    repeated: int = 0
    rejected: int = 0


class Importer:
    def __init__(self, service: Service, settings: RegistrationSettings) -> None:
        self.service = service
        self.settings = settings
        self.directory = settings.import_path
        self.limits = limits_of(settings)
        self._wake = asyncio.Event()
        self.lease = Lease(
            ImportJob, key="import_id", clock=service.clock, seconds=LEASE.total_seconds()
        )

    def path_of(self, job: ImportJob) -> Path:
        return self.directory / f"{job.import_id}.{job.file_format}"

    async def accept(
        self,
        chunks: AsyncIterator[bytes],
        *,
        program_id: str,
        filename: str,
        file_format: str,
        key: ApiKey,
    ) -> ImportJob:
        """Write the upload to disk chunk by chunk, then queue it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        import_id = uuid.uuid4().hex
        path = self.directory / f"{import_id}.{file_format}"
        size = 0
        try:
            with path.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.settings.import_max_bytes:
                        raise UploadTooLarge
                    await asyncio.to_thread(out.write, chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        job = ImportJob(
            import_id=import_id,
            program_id=program_id,
            filename=printable(filename, 255),  # PostgreSQL cannot store NUL
            file_format=file_format,
            submitted_by=key.name,
            village_scope=key.village if key.role == "village" else None,
            district_scope=key.district if key.role == "village" else None,
            created_at=self.service.clock.now(),
        )
        async with self.service.database.session() as session:
            session.add(job)
            await session.commit()
        log.info("import_queued", import_id=import_id, program_id=program_id, bytes=size)
        self._wake.set()
        return job

    async def run(self) -> None:
        """Background loop: take the oldest unfinished import, process it, repeat."""
        while True:
            job = await self._next_job()
            if job is None:
                self._wake.clear()
                await wait_event(self._wake, 2.0)
                continue
            await self.process(job)

    async def _next_job(self) -> ImportJob | None:
        """Claim the oldest unfinished import with a lease, so that several instances of the
        service never work on the same one (a crashed instance's lease runs out).

        Each claim counts as an attempt. An import claimed again more than IMPORT_MAX_RETRIES
        times is one whose process died each time (out of memory, say): it is marked failed
        instead of being handed out again."""
        while True:
            job, gave_up = await self._claim()
            if gave_up is None:
                return job
            self.path_of(gave_up).unlink(missing_ok=True)
            log.warning("import_gave_up", import_id=gave_up.import_id, attempts=gave_up.attempts)

    async def _claim(self) -> tuple[ImportJob | None, ImportJob | None]:
        """(the import claimed, or None) or (None, the import just marked failed)."""
        async with self.service.database.session() as session:
            claimed = await self.lease.claim(
                session,
                col(ImportJob.status).in_(["queued", "running"]),
                order_by=col(ImportJob.created_at),
            )
            if not claimed:
                return None, None
            job = await session.get(ImportJob, claimed[0].import_id, populate_existing=True)
            assert job is not None
            if job.attempts > self.settings.import_max_retries:
                await self.lease.release(
                    session,
                    [job.import_id],
                    status="failed",
                    error=gave_up_message(job.attempts),
                    finished_at=self.service.clock.now(),
                )
                await session.commit()
                return None, job
            job.attempts += 1
            session.add(job)
            await session.commit()
        return job, None

    async def process(self, job: ImportJob) -> None:
        log.info(
            "import_started",
            import_id=job.import_id,
            resume_after_rows=job.rows_done,
            attempt=job.attempts,
        )
        try:
            if job.rows_total is None:
                await self._count_rows(job)
            rows = read_rows(self.path_of(job), job.file_format, self.limits)
            for _ in range(job.rows_done):  # resume: these rows are already committed
                next(rows)
            while True:
                chunk, stop = await asyncio.to_thread(
                    take_rows, rows, self.settings.import_chunk_rows
                )
                if chunk:
                    await self._commit_chunk(job, chunk)
                if stop is not None:
                    raise stop  # past a limit: the rows before it are committed, the import fails
                if len(chunk) < self.settings.import_chunk_rows:
                    break
        except asyncio.CancelledError:
            await self._release(job)
            raise
        except LeaseLost:
            log.warning("import_lease_lost", import_id=job.import_id)
            return  # the instance that claimed it carries on from the committed progress
        except (SpreadsheetError, FileNotFoundError, StopIteration) as error:
            await self._finish(job, "failed", str(error) or type(error).__name__)
            return
        except (sa_exc.OperationalError, sa_exc.InterfaceError, OSError):
            raise  # the database or disk is away: the loop retries the import from its progress
        except Exception as error:
            log.exception("import_failed", import_id=job.import_id)
            await self._finish(job, "failed", f"internal error: {type(error).__name__}")
            return
        await self._finish(job, "done")

    async def _release(self, job: ImportJob) -> None:
        """The service is stopping (not dying): give the claim back, and the attempt with it, so
        that a deployment does not use up an import's retries."""
        try:
            async with asyncio.timeout(2.0):
                async with self.service.database.session() as session:
                    await self.lease.release(
                        session,
                        [job.import_id],
                        attempts=case(
                            (col(ImportJob.attempts) > 0, col(ImportJob.attempts) - 1), else_=0
                        ),
                    )
                    await session.commit()
        except Exception as error:  # the lease runs out by itself; the attempt stays counted
            log.warning("import_release_failed", import_id=job.import_id, error=repr(error)[:300])

    async def _count_rows(self, job: ImportJob) -> None:
        """One quick pass first, so progress can be shown as a fraction. A file past a limit
        counts the rows before it: those are imported, then the import fails with the reason."""
        path, file_format, limits = self.path_of(job), job.file_format, self.limits

        def count() -> int:
            counted = 0
            try:
                for _ in read_rows(path, file_format, limits):
                    counted += 1
            except SpreadsheetError:
                pass  # the processing pass meets it again, and reports it
            return counted

        total = await asyncio.to_thread(count)
        async with self.service.database.session() as session:
            stored = await session.get(ImportJob, job.import_id)
            assert stored is not None
            stored.rows_total = job.rows_total = total
            stored.status = "running"
            session.add(stored)
            await session.commit()

    async def _commit_chunk(self, job: ImportJob, chunk: list[tuple[int, dict[str, str]]]) -> None:
        """Another intake registered one of these workers at the same moment (PostgreSQL), or
        the database is busy: the chunk rolled back whole; do it again, up to 6 tries."""

        retrying = AsyncRetrying(
            retry=retry_if_exception_type((sa_exc.IntegrityError, sa_exc.OperationalError)),
            stop=stop_after_attempt(6),
            wait=wait_exponential(multiplier=0.4, max=5.0),
            before_sleep=log_retries(log, "import_chunk_retry", import_id=job.import_id),
            reraise=True,
        )
        await retrying(self._apply_chunk, job, chunk)

    async def _apply_chunk(self, job: ImportJob, chunk: list[tuple[int, dict[str, str]]]) -> None:
        """One chunk of rows in one transaction: the rows in scope registered as one batch
        (`register_all`, as the Kafka intake does), each row's outcome, the job's progress."""
        with self.service.tracer.start_as_current_span(
            "registration import chunk",
            kind=SpanKind.INTERNAL,
            attributes={"lindung.import.id": job.import_id, "lindung.import.rows": len(chunk)},
        ):
            trace = current_trace_headers()
            async with self.service.unit_of_work() as uow:
                requests = [request_from_row(job.program_id, values) for _, values in chunk]
                in_scope = [
                    (number, request)
                    for (number, _), request in zip(chunk, requests, strict=True)
                    if self._in_scope(job, request)
                ]
                results = await register_all(
                    [
                        Intake(request, f"import:{job.import_id}:{number}", trace)
                        for number, request in in_scope
                    ],
                    await uow.transaction(),
                )
                uow.emit_all(answer for _, answer in results)
                outcomes = {
                    number: outcome
                    for (number, _), (outcome, _) in zip(in_scope, results, strict=True)
                }
                counts = {"registered": 0, "repeated": 0, "rejected": 0}
                rows = []
                for number, values in chunk:
                    outcome = outcomes.get(number) or Outcome("rejected", errors=[OUTSIDE_SCOPE])
                    counts[outcome.status] += 1
                    errors = outcome.errors
                    rows.append(
                        {
                            "import_id": job.import_id,
                            "row_number": number,
                            "status": outcome.status,
                            "worker_id": outcome.worker_id,
                            "errors": json.dumps([e.model_dump() for e in errors])
                            if errors
                            else None,
                            "values": json.dumps(values, ensure_ascii=False) if errors else None,
                        }
                    )
                await (await uow.session.connection()).execute(insert(ImportRow), rows)
                # Import progress is written by the lease holder only, and the renewal's UPDATE
                # holds the job's row lock until this chunk commits: the counters below are read
                # and added to under that lock, so no other instance's chunk can interleave.
                if not await self.lease.renew(uow.session, [job.import_id]):
                    raise LeaseLost  # the chunk rolls back: the new holder imports these rows
                stored = await uow.session.get(ImportJob, job.import_id, populate_existing=True)
                assert stored is not None
                stored.status = "running"
                stored.rows_done += len(chunk)
                stored.registered += counts["registered"]
                stored.repeated += counts["repeated"]
                stored.rejected += counts["rejected"]
                uow.session.add(stored)
                await uow.commit()
            job.rows_done = stored.rows_done

    @staticmethod
    def _in_scope(job: ImportJob, request: RegistrationRequested) -> bool:
        if job.village_scope is None:
            return True
        scope = ApiKey(
            name=job.submitted_by,
            role="village",
            sha256="",
            village=job.village_scope,
            district=job.district_scope,
        )
        return scope.covers(request.village, request.district)

    async def _finish(self, job: ImportJob, status: str, error: str | None = None) -> None:
        async with self.service.database.session() as session:
            held = await self.lease.release(
                session,
                [job.import_id],
                status=status,
                error=error,
                finished_at=self.service.clock.now(),
            )
            await session.commit()
        if not held:
            log.warning("import_lease_lost", import_id=job.import_id)
            return  # the instance that claimed it finishes it (and removes the file)
        self.path_of(job).unlink(missing_ok=True)  # the report keeps what staff need
        log.info("import_finished", import_id=job.import_id, status=status, error=error)

    async def job(self, import_id: str) -> ImportJob | None:
        async with self.service.database.read_session() as session:
            return await session.get(ImportJob, import_id)

    async def rows(
        self, import_id: str, *, status: str | None, offset: int, limit: int
    ) -> tuple[int, list[ImportRow]]:
        async with self.service.database.read_session() as session:
            query = select(ImportRow).where(ImportRow.import_id == import_id)
            counted = (
                select(func.count()).select_from(ImportRow).where(ImportRow.import_id == import_id)
            )
            if status:
                query = query.where(ImportRow.status == status)
                counted = counted.where(ImportRow.status == status)
            total = (await session.exec(counted)).one()
            rows = (
                await session.exec(
                    query.order_by(col(ImportRow.row_number)).offset(offset).limit(limit)
                )
            ).all()
        return int(total), list(rows)

    async def rejected_rows(self, import_id: str) -> AsyncIterator[tuple[int, dict[str, str], str]]:
        """Rejected rows, in pages (never the whole report in memory)."""
        after = 0
        while True:
            async with self.service.database.read_session() as session:
                page = (
                    await session.exec(
                        select(ImportRow)
                        .where(
                            ImportRow.import_id == import_id,
                            ImportRow.status == "rejected",
                            col(ImportRow.row_number) > after,
                        )
                        .order_by(col(ImportRow.row_number))
                        .limit(1000)
                    )
                ).all()
            if not page:
                return
            for row in page:
                errors: list[dict[str, Any]] = json.loads(row.errors or "[]")
                reason = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
                yield row.row_number, json.loads(row.values or "{}"), reason
            after = page[-1].row_number


def take_rows(
    rows: Iterator[tuple[int, dict[str, str]]], n: int
) -> tuple[list[tuple[int, dict[str, str]]], SpreadsheetError | None]:
    """Up to n rows, and the error that stopped the file short of them, if one did (the rows
    read before it are still returned, to be imported)."""
    chunk: list[tuple[int, dict[str, str]]] = []
    try:
        for row in rows:
            chunk.append(row)
            if len(chunk) >= n:
                break
    except SpreadsheetError as error:
        return chunk, error
    return chunk, None
