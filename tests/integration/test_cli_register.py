"""`lindung register FILE` goes through the registration API's import when the API is up: it
prints the report and saves the rejected rows beside the file; without the API it falls back to
Kafka."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lindung_registration.app import create_service
from lindung_registration.auth import create_key
from lindung_registration.db import Worker
from lindung_registration.settings import RegistrationSettings
from lindung_registration.spreadsheet import ERRORS_COLUMN, write_template_csv
from lindung_runtime.embedded import free_port
from tests.conftest import run_lindung
from tests.integration.conftest import count_rows, on_broker, running
from tests.programmes import publish_known
from tests.unit.handler_kit import PROGRAM

pytestmark = pytest.mark.integration


def rows() -> list[dict[str, str]]:
    good = [
        {
            "nik": f"531801010190{serial:04d}",
            "full_name": f"Pekerja {serial}",
            "birth_date": "01/01/1990",
            "gender": "L",
            "village": "Kalena Wanno",
            "district": "Kota Tambolaka",
            "phone": "0812 3456 7890",
        }
        for serial in range(1, 6)
    ]
    bad = {**good[0], "nik": "12345", "full_name": "Salah NIK"}
    return [*good, bad]


async def test_register_imports_through_the_api_and_saves_the_rejected_rows(
    kafka_bootstrap: str, data_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    key = create_key(data_dir / "api-keys.yaml", "cli", "operator")
    service = create_service(
        RegistrationSettings(**on_broker(data_dir, kafka_bootstrap, HTTP_PORT=port))
    )
    sheet = tmp_path / "pekerja.csv"
    write_template_csv(sheet, rows())
    env = {"LINDUNG_API_URL": f"http://127.0.0.1:{port}", "LINDUNG_API_KEY": key}
    async with running(service):
        await publish_known(service, PROGRAM)
        code, output = await run_lindung("register", str(sheet), "--program", PROGRAM, env=env)
        assert code == 0, output
        assert "5 registered" in output and "1 rejected" in output
        assert await count_rows(service, Worker) == 5

        rejected = list(csv.DictReader((tmp_path / "pekerja.ditolak.csv").open()))
        assert [r["NIK"] for r in rejected] == ["12345"]
        assert "NIK harus 16 digit" in rejected[0][ERRORS_COLUMN]

        code, output = await run_lindung(
            "register", str(sheet), "--program", PROGRAM, env={**env, "LINDUNG_API_KEY": "lnd_x"}
        )
        assert code == 1 and "HTTP 401" in output


async def test_register_falls_back_to_kafka_when_the_api_is_down(
    kafka_bootstrap: str, data_dir: Path, tmp_path: Path
) -> None:
    sheet = tmp_path / "pekerja.csv"
    write_template_csv(sheet, rows())
    env = {
        "LINDUNG_API_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LINDUNG_DATA_DIR": str(data_dir),
    }
    code, output = await run_lindung("register", str(sheet), "--program", PROGRAM, env=env)
    assert code == 0, output
    assert "6 requests sent over Kafka" in output
    code, output = await run_lindung(
        "register", str(sheet), "--program", PROGRAM, "--via", "http", env=env
    )
    assert code == 1 and "did not answer" in output
