"""How notification connects to its mail server: SMTP_SECURITY chooses STARTTLS (the default),
implicit TLS or plain SMTP, and the password is a secret that no repr or log line shows."""

from __future__ import annotations

import io
import json

import pytest

from lindung_notification.mailer import smtp_options
from lindung_notification.settings import NotificationSettings
from lindung_runtime.logging import configure_logging, get_logger

PASSWORD = "s3cret-Relay-Pa55"


@pytest.fixture(autouse=True)
def no_smtp_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SMTP_SECURITY", "SMTP_STARTTLS", "SMTP_PASSWORD", "SMTP_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("given", "use_tls", "start_tls"),
    [
        ({}, False, True),  # the default: STARTTLS, required
        ({"SMTP_SECURITY": "starttls"}, False, True),
        ({"SMTP_SECURITY": "tls"}, True, False),
        ({"SMTP_SECURITY": "none"}, False, False),
        ({"SMTP_STARTTLS": "true"}, False, True),  # the deprecated setting still means it
        ({"SMTP_STARTTLS": "false"}, False, False),
        ({"SMTP_STARTTLS": "false", "SMTP_SECURITY": "tls"}, True, False),  # the new one wins
    ],
)
def test_security_setting_builds_the_client_options(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, str], use_tls: bool, start_tls: bool
) -> None:
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    options = smtp_options(NotificationSettings(SMTP_HOST="smtp.example.go.id", SMTP_PORT=587))
    assert (options["use_tls"], options["start_tls"]) == (use_tls, start_tls)
    assert (options["hostname"], options["port"], options["validate_certs"]) == (
        "smtp.example.go.id",
        587,
        True,
    )


def test_unknown_security_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_SECURITY", "ssl3")
    with pytest.raises(ValueError, match="smtp_security"):
        NotificationSettings()


@pytest.mark.usefixtures("restore_logging")
def test_password_reaches_the_client_and_no_repr_dump_or_log_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    settings = NotificationSettings(SMTP_USERNAME="lindung")
    assert smtp_options(settings)["password"] == PASSWORD
    stream = io.StringIO()
    configure_logging("test", "INFO", stream=stream)
    get_logger("test.smtp").info("settings", settings=settings, dumped=settings.model_dump())
    shown = [repr(settings), str(settings), settings.model_dump_json(), stream.getvalue()]
    assert all(PASSWORD not in text for text in shown)
    assert json.loads(stream.getvalue())["event"] == "settings"


def test_a_digest_lease_shorter_than_the_longest_send_is_refused() -> None:
    """The dispatcher does not renew its lease during the SMTP conversation: a lease that can run
    out mid-send would let a second instance mail the same digest at the same time."""
    with pytest.raises(ValueError, match="DIGEST_LEASE_SECONDS"):
        NotificationSettings(SMTP_TIMEOUT_SECONDS=30, DIGEST_LEASE_SECONDS=120)
    assert NotificationSettings(SMTP_TIMEOUT_SECONDS=30, DIGEST_LEASE_SECONDS=240)
