"""Sending a composed digest over SMTP (aiosmtplib)."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib

from lindung_notification.domain import DigestMail
from lindung_notification.settings import NotificationSettings


def build_message(mail: DigestMail, sender: str, digest_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(mail.recipients)
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False)
    # Stable per digest: a receiving system can recognise a re-send of the same digest.
    message["Message-ID"] = f"<{digest_id.replace(':', '.')}@lindung>"
    message.set_content(mail.body)
    message.add_attachment(
        mail.attachment_csv.encode("utf-8"),
        maintype="text",
        subtype="csv",
        filename=mail.attachment_name,
    )
    return message


def smtp_options(settings: NotificationSettings) -> dict[str, Any]:
    """aiosmtplib's connection options for SMTP_SECURITY. `starttls` is required, not
    opportunistic (aiosmtplib's default upgrades only when the server offers it): a server that
    does not offer it fails the send rather than receiving the staff's list in clear."""
    security = settings.smtp_security
    password = settings.smtp_password
    return {
        "hostname": settings.smtp_host,
        "port": settings.smtp_port,
        "username": settings.smtp_username,
        "password": password.get_secret_value() if password is not None else None,
        "use_tls": security == "tls",
        "start_tls": security == "starttls",
        "validate_certs": settings.smtp_validate_certs,
        "timeout": settings.smtp_timeout_seconds,
    }


async def send(message: EmailMessage, settings: NotificationSettings) -> None:
    await aiosmtplib.send(message, **smtp_options(settings))
