"""Settings from the environment (pydantic-settings); no other module reads `os.environ`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from lindung_contracts.access import ACCESS


class LindungSettings(BaseSettings):
    """What every Lindung process reads. Services subclass it for their own knobs."""

    model_config = SettingsConfigDict(extra="ignore", env_prefix="")

    kafka_bootstrap_servers: str | None = Field(
        default=None, description="Unset: `lindung up` starts the embedded broker (Tansu)"
    )
    kafka_create_topics: bool = Field(default=True, description="Create missing topics at start-up")
    kafka_partitions: int = Field(default=4, ge=1, description="Partitions of topics we create")
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How every Kafka client of Lindung connects"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle (PEM)")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate (mTLS)")
    kafka_ssl_keyfile: Path | None = None
    data_dir: Path = Field(
        default=Path(".lindung"),
        validation_alias=AliasChoices("LINDUNG_DATA_DIR", "DATA_DIR"),
        description="Default SQLite files, mail sink and logs",
    )
    database_url: str | None = Field(default=None, description="SQLAlchemy async URL")
    database_migrate_on_start: bool = Field(
        default=True, description="Run the service's Alembic migrations when it starts"
    )
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    otel_traces_exporter: Literal["none", "console", "otlp"] = "none"
    otel_exporter_otlp_endpoint: str | None = None
    consumer_batch_size: int = Field(default=500, ge=1, description="Records per transaction")
    consumer_batch_linger_ms: int = Field(
        default=50,
        ge=0,
        description="The most a short batch waits for more records, and only while they keep "
        "coming (records the broker reported are waited for; otherwise the next fetch gets 5 ms, "
        "and one that brings nothing hands the batch over): fewer, larger transactions under "
        "load, about 5 ms per hop when traffic is light; 0: never wait",
    )
    consumer_fetch_max_wait_ms: int = Field(
        default=200,
        ge=1,
        description="How long the broker may hold a fetch that finds less than "
        "CONSUMER_FETCH_MIN_BYTES. The embedded broker (Tansu) holds every such fetch this long "
        "even when records arrive meanwhile: there it is the latency a quiet hop can add, and "
        "what batches light traffic. Apache Kafka answers as soon as the bytes are there: there "
        "it only sets how often an idle consumer asks, and Kafka's own default, 500, is right",
    )
    consumer_fetch_min_bytes: int = Field(
        default=1,
        ge=1,
        description="The bytes a fetch waits for, up to CONSUMER_FETCH_MAX_WAIT_MS (Tansu "
        "ignores it). On Apache Kafka keep 1: under load fetches fill anyway, and a larger value "
        "makes every record under light traffic wait out the whole fetch wait at every hop",
    )
    consumer_max_attempts: int = Field(default=5, ge=1, description="Tries before a dead letter")
    consumer_retry_base_seconds: float = Field(default=0.2, gt=0)
    consumer_not_ready_max_wait_seconds: float = Field(
        default=300.0, ge=0, description="How long an event may wait for the facts it needs"
    )
    trusted_sources: dict[str, list[str]] = Field(
        default_factory=dict,
        description="CloudEvents sources a consumer believes IN ADDITION to the contract's "
        "(lindung_contracts.access): JSON, topic -> sources, e.g. "
        '{"registration.requested": ["/upstream/siak"]}; the key "*" adds to every topic. '
        "Anything else is dead-lettered as untrusted_source",
    )
    retention_days: float = Field(
        default=14.0,
        gt=0,
        description="Keep inbox ids and published outbox rows this long (>= the replay horizon)",
    )
    http_host: str = Field(default="127.0.0.1", description="Interface of the HTTP server")
    http_port: int | None = Field(
        default=None, ge=0, le=65535, description="Serve /healthz (and the API) here"
    )
    admin_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve /readyz, /metrics and the API docs (/docs, /openapi.json) here, on "
        "HTTP_HOST; unset: none of them is served",
    )
    outbox_batch_size: int = Field(default=500, ge=1)
    outbox_poll_seconds: float = Field(default=0.5, gt=0)

    def trusted_sources_for(self, topic: str) -> tuple[str, ...]:
        """The contract's sources for `topic` plus the operator's additions: extra, never a
        replacement, so configuring one's own upstream cannot untrust the contract's writers."""
        access = ACCESS.get(topic)
        contract = access.sources if access else ()
        extra = [*self.trusted_sources.get(topic, ()), *self.trusted_sources.get("*", ())]
        return (*contract, *extra)

    def database_url_for(self, service: str) -> str:
        """The service's own database.

        `<SERVICE>_DATABASE_URL` (e.g. `BILLING_DATABASE_URL`) wins, so that `lindung up` can run
        all four services from one environment; then `DATABASE_URL` (one process, one service, as
        in production); else a SQLite file named after the service in the data directory.
        """
        scoped = _DatabaseUrl(_env_prefix=f"{service.upper()}_").database_url  # type: ignore[call-arg]
        if scoped:
            return scoped
        if self.database_url:
            return self.database_url
        path = (self.data_dir / f"{service}.db").resolve()
        return f"sqlite+aiosqlite:///{path}"


class _DatabaseUrl(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    database_url: str | None = None
