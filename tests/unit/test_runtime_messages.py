"""What a batch handler is given and gives back (lindung_runtime.messages)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from lindung_contracts import DayStarted
from lindung_runtime.messages import Message, latest
from lindung_runtime.pipeline.batch import Delivery
from lindung_runtime.pipeline.transaction import event_time

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
NOW = datetime(2025, 10, 29, 8, 0, tzinfo=UTC)


def message(trace: dict[str, str]) -> Message[DayStarted]:
    return Message(DayStarted(date=date(2025, 10, 29)), "id-1", trace, NOW)


def test_a_message_knows_its_trace_id_when_it_has_one() -> None:
    assert message({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}).trace_id == TRACE
    assert message({}).trace_id is None
    assert message({"traceparent": "garbage"}).trace_id is None


def test_a_reply_continues_the_trace_under_an_id_of_its_own_known_before_commit() -> None:
    cause = message({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})
    first, second = cause.reply(DayStarted(date=date(2025, 10, 30))), cause.reply(cause.event)
    assert first.trace == cause.trace
    assert first.event_id != second.event_id != cause.id


def test_the_event_time_is_the_producers_ce_time_or_else_now() -> None:
    def delivery(headers: dict[str, str]) -> Delivery:
        return Delivery("t", 0, 0, None, b"{}", headers, "id")

    sent = datetime(2025, 10, 1, 8, 30, 15, tzinfo=UTC)
    assert event_time(delivery({"ce_time": sent.isoformat()}), NOW) == sent
    assert event_time(delivery({}), NOW) == NOW
    assert event_time(delivery({"ce_time": "yesterday"}), NOW) == NOW


def test_latest_keeps_the_last_event_per_key_in_key_order() -> None:
    days = [message({}) for _ in range(3)]
    batch = [
        Message(DayStarted(date=date(2025, 10, d)), f"id-{d}", {}, NOW) for d in (3, 1, 2)
    ] + days
    assert [e.date.day for e in latest(batch, lambda e: e.date.month)] == [29]
    assert [e.date.day for e in latest(batch[:3], lambda e: e.date)] == [1, 2, 3]
