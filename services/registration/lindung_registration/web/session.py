"""Staff sessions: an API key presented once at the login form, then a cookie.

The session lives in registration's database, not in a signed cookie: logging out, or revoking
the key (`lindung apikey revoke`), ends it at once on every instance sharing the database. The
cookie holds a random token; only its SHA-256 is stored. A session ends after
`web_session_idle_minutes` unused or `web_session_max_hours` after its login, by the service's
clock.

CSRF: every form that changes something carries the session's token (`csrf_token`); the login
form, before any session exists, carries a token that must match a short-lived cookie of its
own (double submit). The cookies are HttpOnly and SameSite=Lax, and Secure over TLS.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlsplit

from fastapi import Request
from sqlalchemy import delete, or_, update
from sqlmodel import col

from lindung_registration.auth import ApiKey, KeyStore
from lindung_registration.db import WebSession
from lindung_registration.settings import RegistrationSettings
from lindung_runtime import Service
from lindung_runtime.clock import as_utc
from lindung_runtime.logging import get_logger

log = get_logger(__name__)

COOKIE = "lindung_sesi"
LOGIN_COOKIE = "lindung_masuk"
LOGIN_PATH = "/ui/login"
HOME = "/ui/"
#: `seen_at` is written at most this often: a page view need not be a database write.
SEEN_EVERY = timedelta(minutes=1)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_token(given: str | None, expected: str) -> bool:
    return bool(given) and secrets.compare_digest(str(given).encode(), expected.encode())


def safe_next(target: str | None) -> str:
    """Where to go after the login: a page of this site only (never `//elsewhere` or a scheme)."""
    if not target:
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/") or "\\" in target:
        return HOME
    if parts.path.startswith(LOGIN_PATH):
        return HOME
    return target


def login_url(next_page: str) -> str:
    return f"{LOGIN_PATH}?next={quote(safe_next(next_page), safe='/')}"


@dataclass(frozen=True)
class StaffSession:
    key: ApiKey
    csrf_token: str


class LoginRequired(Exception):
    """No session, or an ended one: to the login page, which then returns to `next_page`."""

    def __init__(self, next_page: str) -> None:
        super().__init__(next_page)
        self.next_page = next_page


class Sessions:
    def __init__(self, service: Service, keys: KeyStore, settings: RegistrationSettings) -> None:
        self.service = service
        self.keys = keys
        self.idle = timedelta(minutes=settings.web_session_idle_minutes)
        self.lifetime = timedelta(hours=settings.web_session_max_hours)
        self.secure = settings.web_cookie_secure

    def _now(self) -> datetime:
        return self.service.clock.now()

    async def open(self, key: ApiKey) -> tuple[str, StaffSession]:
        """A new session for `key`: its cookie token and the session. Ended sessions of every
        key are swept here, so the table holds live ones only."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self._now()
        async with self.service.database.session() as session:
            await (await session.connection()).execute(
                delete(WebSession).where(
                    or_(
                        col(WebSession.seen_at) < now - self.idle,
                        col(WebSession.created_at) < now - self.lifetime,
                    )
                )
            )
            session.add(
                WebSession(
                    session_hash=digest(token),
                    key_sha256=key.sha256,
                    csrf_token=csrf,
                    created_at=now,
                    seen_at=now,
                )
            )
            await session.commit()
        log.info("staff_login", key=key.name, role=key.role)
        return token, StaffSession(key, csrf)

    async def find(self, token: str | None) -> StaffSession | None:
        """The live session of this cookie token, if any; its key must still be in the keys
        file."""
        if not token or len(token) > 200:
            return None
        hashed, now = digest(token), self._now()
        async with self.service.database.read_session() as session:
            found = await session.get(WebSession, hashed)
        if found is None:
            return None
        key = self.keys.by_hash(found.key_sha256)
        seen, created = as_utc(found.seen_at), as_utc(found.created_at)
        if key is None or now - seen > self.idle or now - created > self.lifetime:
            await self.close(token)
            return None
        if now - seen > SEEN_EVERY:
            async with self.service.database.session() as session:
                await (await session.connection()).execute(
                    update(WebSession)
                    .where(WebSession.session_hash == hashed)  # type: ignore[arg-type]
                    .values(seen_at=now)
                )
                await session.commit()
        return StaffSession(key, found.csrf_token)

    async def close(self, token: str) -> None:
        async with self.service.database.session() as session:
            await (await session.connection()).execute(
                delete(WebSession).where(WebSession.session_hash == digest(token))  # type: ignore[arg-type]
            )
            await session.commit()

    def secure_for(self, request: Request) -> bool:
        return self.secure if self.secure is not None else request.url.scheme == "https"
