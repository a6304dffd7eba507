"""Scenario 4, SMTP down: when the expiry digest is due, the mail server first does not listen at
all, then answers every message with a temporary refusal (451); notification retries with backoff
and, once the server accepts mail again, sends the digest exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos.kit import (
    Census,
    System,
    Workload,
    drive_lifecycle_after_invoices,
    judge,
    publish,
    publish_requests,
    say,
    settle,
    until,
    wait_for_decisions,
)

pytestmark = pytest.mark.chaos

SEED = 20251004
MAX_BACKOFF = 8  # seconds between attempts at most (production: 300); keeps the test short
DOWN_SECONDS = 15  # not listening at least this long, then refusing at least this long


def attempts(system: System) -> tuple[int, str | None, object]:
    """The digest's failed attempts, last error and when it was sent (none yet: 0, None, None)."""
    rows = system.query("notification", "SELECT send_attempts, last_error, sent_at FROM digest")
    assert len(rows) <= 1, rows
    return rows[0] if rows else (0, None, None)  # type: ignore[return-value]


@pytest.mark.timeout(360)
async def test_digest_is_retried_while_smtp_is_down_and_sent_once_when_it_returns(
    work: Path, show: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """N = 2,000 requests: the mail is one digest whatever N is; what matters is the outage."""
    monkeypatch.setenv("SMTP_MAX_BACKOFF_SECONDS", str(MAX_BACKOFF))
    monkeypatch.setenv("SMTP_TIMEOUT_SECONDS", "5")
    workload = Workload.generate(2_000, SEED)
    started = time.monotonic()
    async with System(work) as system, Census(system.bootstrap) as census:
        await publish(system.bootstrap, workload.setup())
        await publish_requests(system.bootstrap, workload.requests)
        await wait_for_decisions(census, workload, timeout=180)
        mailbox = system.mail.mailbox
        timeline: list[str] = []

        async def outage() -> None:
            """Runs once the alert day is published: the digest becomes due meanwhile."""
            system.mail.stop()
            outage_started = time.monotonic()
            await until(
                lambda: (
                    attempts(system)[0] >= 2 and time.monotonic() - outage_started >= DOWN_SECONDS
                ),
                timeout=120,
                what="two attempts against a closed port",
            )
            timeline.append(
                f"not listening {time.monotonic() - outage_started:.0f} s "
                f"({attempts(system)[0]} attempts: {(attempts(system)[1] or '')[:60]})"
            )
            mailbox.refusing = True
            system.mail.start()
            refusing_started = time.monotonic()
            await until(
                lambda: (
                    mailbox.refused >= 2 and time.monotonic() - refusing_started >= DOWN_SECONDS
                ),
                timeout=120,
                what="two refused deliveries",
            )
            timeline.append(
                f"then 451 for {time.monotonic() - refusing_started:.0f} s "
                f"({mailbox.refused} refused)"
            )
            assert mailbox.accepted == []
            assert attempts(system)[2] is None  # not recorded as sent
            mailbox.refusing = False

        await drive_lifecycle_after_invoices(
            system, census, workload, timeout=180, during_alerts=outage
        )
        await asyncio.sleep(2 * MAX_BACKOFF)  # time enough for a second send, if one came
        await settle(system)
        await census.refresh()
        outcome = judge(census, workload, system, through="digest")
        tries, last_error, sent_at = attempts(system)

    seconds = time.monotonic() - started
    show(
        outcome.line(
            "SMTP down",
            seconds,
            f"{'; '.join(timeline)}; {tries} failed attempts in all, then 1 mail accepted "
            f"(mails accepted {len(mailbox.accepted)})",
        )
    )
    say(f"last SMTP error recorded: {last_error}")
    assert outcome.problems() == {}
    assert (outcome.duplicates, outcome.lost) == (0, 0)
    assert len(mailbox.accepted) == 1
    assert sent_at is not None
    assert tries >= 4  # two refused connections and two refused messages, each retried
    [mail] = system.mail.digest_rows()
    assert len(mail) == workload.quota
