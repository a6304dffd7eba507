"""Sending a composed digest over SMTP (aiosmtplib)."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

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


async def send(message: EmailMessage, settings: NotificationSettings) -> None:
    await aiosmtplib.send(
        message,
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        start_tls=settings.smtp_starttls,
        timeout=settings.smtp_timeout_seconds,
    )
