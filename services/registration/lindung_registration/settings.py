"""Registration's settings: the shared ones, plus its HTTP API and spreadsheet imports."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from lindung_runtime.settings import LindungSettings


class RegistrationSettings(LindungSettings):
    api_keys_file: Path | None = Field(
        default=None,
        description="YAML file of hashed API keys (`lindung apikey create`); "
        "default: api-keys.yaml in the data directory",
    )
    import_dir: Path | None = Field(
        default=None, description="Where uploaded files wait; default: imports/ in the data dir"
    )
    import_max_bytes: int = Field(default=200 * 1024 * 1024, gt=0, description="Largest upload")
    import_chunk_rows: int = Field(default=500, ge=1, description="Rows per import transaction")
    # What one spreadsheet may hold. Past a limit the import stops, `failed`, with the reason on
    # its report; the rows before it are kept. They bound the memory an import needs, whatever the
    # file claims (the service runs in 256 MiB).
    import_max_rows: int = Field(default=200_000, ge=1, description="Data rows per spreadsheet")
    import_max_columns: int = Field(default=100, ge=8, description="Filled columns per row")
    import_max_cell_chars: int = Field(default=1000, ge=100, description="Characters per cell")
    import_max_xlsx_bytes: int = Field(
        default=256 * 1024 * 1024, gt=0, description="An XLSX's size once unzipped"
    )
    import_max_xlsx_entries: int = Field(default=1000, ge=10, description="Files inside an XLSX")
    import_max_xlsx_ratio: int = Field(
        default=200, ge=10, description="Largest unzipped/zipped ratio of a file inside an XLSX"
    )
    import_max_xlsx_strings_bytes: int = Field(
        default=32 * 1024 * 1024,
        gt=0,
        description="An XLSX's shared-strings table, held in memory while its sheet is read",
    )
    import_max_retries: int = Field(
        default=3,
        ge=0,
        description="Times an import is started again after its process died; then it fails",
    )
    api_max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest request body but an upload's"
    )

    web_session_idle_minutes: int = Field(
        default=30, ge=1, description="A staff page session ends after this long unused"
    )
    web_session_max_hours: int = Field(
        default=12, ge=1, description="A staff page session ends this long after its login"
    )
    web_cookie_secure: bool | None = Field(
        default=None,
        description="Send the session cookie only over TLS; default: when the request came "
        "over https (behind a TLS proxy, set it to true)",
    )

    @property
    def api_keys_path(self) -> Path:
        return (self.api_keys_file or self.data_dir / "api-keys.yaml").resolve()

    @property
    def import_path(self) -> Path:
        return (self.import_dir or self.data_dir / "imports").resolve()
