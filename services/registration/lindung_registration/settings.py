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

    @property
    def api_keys_path(self) -> Path:
        return (self.api_keys_file or self.data_dir / "api-keys.yaml").resolve()

    @property
    def import_path(self) -> Path:
        return (self.import_dir or self.data_dir / "imports").resolve()
