"""Getting a spreadsheet of workers into Lindung: through the registration API's import when it
is up (the normal path: a per-row report and errors.csv come back), else straight onto Kafka."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from lindung_cli.stack import STACK_FILE
from lindung_contracts import RegistrationRequested
from lindung_registration.spreadsheet import format_of, read_rows, request_from_row
from lindung_runtime.settings import LindungSettings

DEFAULT_API_URL = "http://127.0.0.1:8080"


def read_requests(path: Path, program_id: str | None) -> Iterator[RegistrationRequested]:
    """One request per row, streamed; values are passed on as given for the service to judge."""
    file_format = format_of(path.name) or "csv"
    for _, values in read_rows(path, file_format):
        program = program_id or values.get("program_id")
        if not program:
            raise ValueError(f"{path}: no program column; pass --program")
        yield request_from_row(program, values)


def resolve_api_url(settings: LindungSettings, explicit: str | None) -> str:
    """`--api-url`/`LINDUNG_API_URL`, else the API of a `lindung up` on this data dir."""
    if explicit:
        return explicit.rstrip("/")
    stack_file = settings.data_dir / STACK_FILE
    if stack_file.exists():
        url = json.loads(stack_file.read_text()).get("registration_url")
        if url:
            return str(url)
    return DEFAULT_API_URL


class ApiError(RuntimeError):
    pass


@dataclass
class ImportClient:
    """The registration API's import, as `lindung register` and the demo use it."""

    base_url: str
    api_key: str | None
    timeout: float = 30.0

    def _client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=self.timeout)

    async def available(self) -> bool:
        try:
            async with self._client() as client:
                return (await client.get("/healthz", timeout=2.0)).status_code == 200
        except httpx.HTTPError:
            return False

    async def wait_for_program(self, program_id: str, timeout: float = 60.0) -> None:
        """Wait until registration has consumed the programme's `program.published` (a 404 until
        then): for a caller that has just published it, as the demo does."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with self._client() as client:
                response = await client.get(f"/programs/{program_id}")
            if response.status_code != 404:
                self._check(response)
                return
            if asyncio.get_running_loop().time() > deadline:
                self._check(response)
            await asyncio.sleep(0.2)

    async def upload(self, path: Path, program_id: str) -> str:
        file_format = format_of(path.name) or "csv"
        content_type = (
            "text/csv"
            if file_format == "csv"
            else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )
        async with self._client() as client:
            with path.open("rb") as handle:  # httpx streams the file, it is not read whole
                response = await client.post(
                    f"/programs/{program_id}/imports",
                    files={"file": (path.name, handle, content_type)},
                )
        self._check(response)
        return str(response.json()["import_id"])

    async def report(self, import_id: str, **params: Any) -> dict[str, Any]:
        async with self._client() as client:
            response = await client.get(f"/imports/{import_id}", params=params)
        self._check(response)
        result: dict[str, Any] = response.json()
        return result

    async def wait(
        self,
        import_id: str,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll_seconds: float = 0.5,
        timeout: float = 3600.0,
    ) -> dict[str, Any]:
        """Poll until the import is done or failed; `on_progress` sees every report."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            report = await self.report(import_id, limit=0)
            if on_progress is not None:
                on_progress(report)
            if report["status"] in ("done", "failed"):
                return report
            if asyncio.get_running_loop().time() > deadline:
                raise ApiError(f"import {import_id} still {report['status']} after {timeout}s")
            await asyncio.sleep(poll_seconds)

    async def errors_csv(self, import_id: str, destination: Path) -> None:
        async with (
            self._client() as client,
            client.stream("GET", f"/imports/{import_id}/errors.csv") as response,
        ):
            if response.status_code >= 400:
                await response.aread()
                self._check(response)
            with destination.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            detail = response.json().get("detail", response.text)
        except (ValueError, AttributeError):
            detail = response.text
        hint = (
            " (create a key: `lindung apikey create NAME`)" if response.status_code == 401 else ""
        )
        raise ApiError(f"HTTP {response.status_code}: {detail}{hint}")
