"""Notification's settings: where mail goes, and how digests are gathered."""

from pydantic import Field

from lindung_runtime.settings import LindungSettings


class NotificationSettings(LindungSettings):
    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 30.0
    smtp_from: str = "Lindung <lindung@localhost>"
    digest_quiet_seconds: float = Field(
        default=60.0,
        description="Send a digest whose expected size is never reached after this much quiet",
    )
    digest_poll_seconds: float = Field(default=1.0, gt=0)
    smtp_max_backoff_seconds: float = 300.0
