"""Notification's settings: where mail goes, and how digests are gathered."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from lindung_runtime.settings import LindungSettings

SmtpSecurity = Literal["starttls", "tls", "none"]


class NotificationSettings(LindungSettings):
    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = Field(
        default=None, description="Kept secret: never shown in a repr, a log line or an error"
    )
    smtp_security: SmtpSecurity = Field(
        default="starttls",
        description="How the connection is protected: `starttls` (upgrade a plain connection, "
        "usually port 587; the server must offer it), `tls` (implicit TLS from the first byte, "
        "usually port 465) or `none` (plain: only for a local relay or test sink)",
    )
    smtp_starttls: bool | None = Field(
        default=None,
        deprecated="use SMTP_SECURITY (starttls|tls|none)",
        description="Deprecated: true means SMTP_SECURITY=starttls, false means none",
    )
    smtp_validate_certs: bool = Field(
        default=True, description="Check the server's certificate (starttls and tls)"
    )
    smtp_timeout_seconds: float = 30.0
    smtp_from: str = "Lindung <lindung@localhost>"
    digest_quiet_seconds: float = Field(
        default=60.0,
        description="Send a digest whose expected size is never reached after this much quiet",
    )
    digest_poll_seconds: float = Field(default=1.0, gt=0)
    smtp_max_backoff_seconds: float = 300.0
    digest_lease_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How long a dispatcher holds a digest it is mailing. Must outlast one whole "
        "SMTP send: another instance mails the digest again (same Message-ID) once it runs out",
    )

    @model_validator(mode="after")
    def _starttls_alias(self) -> NotificationSettings:
        """The old boolean still works where SMTP_SECURITY is not given; SMTP_SECURITY wins."""
        old = self.__dict__.get("smtp_starttls")  # not through the deprecated attribute
        if old is not None and "smtp_security" not in self.model_fields_set:
            self.smtp_security = "starttls" if old else "none"
        return self

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> NotificationSettings:
        """The lease is not renewed while the SMTP conversation runs: it must cover the longest
        send, each step of which (connect, TLS, EHLO, MAIL, RCPT, DATA, QUIT) may take up to
        SMTP_TIMEOUT_SECONDS, or a second instance would mail the digest while the first is."""
        longest_send = 8 * self.smtp_timeout_seconds
        if self.digest_lease_seconds < longest_send:
            raise ValueError(
                f"DIGEST_LEASE_SECONDS ({self.digest_lease_seconds:g}) must be at least 8 x "
                f"SMTP_TIMEOUT_SECONDS ({longest_send:g}): the longest SMTP send"
            )
        return self
