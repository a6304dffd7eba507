"""CloudEvents headers: fresh ids are time-ordered, so the indexes that store them stay compact."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from lindung_contracts import cloudevent_headers


def test_fresh_ids_are_uuid7_and_sort_in_the_order_they_were_made() -> None:
    ids = [cloudevent_headers("t", "/s")["ce_id"] for _ in range(2_000)]  # many share one ms
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)
    # The inbox, timeline and outbox indexes compare the ids as text: text order is make order.
    assert sorted(ids) == ids


def test_an_id_given_by_the_caller_is_kept() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    headers = cloudevent_headers("t", "/s", event_id="replayed-1", time=when)
    assert headers["ce_id"] == "replayed-1"
    assert headers["ce_time"] == "2026-01-01T00:00:00+00:00"
