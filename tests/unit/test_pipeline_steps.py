"""Each step of the reliable consumer's pipeline on its own, with plain handles (no broker, no
database), and their order in `pipeline.build` where it matters: dead letters outside retries."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import exc as sa_exc

from lindung_contracts import PaymentReceived, cloudevent_headers, topics
from lindung_runtime.errors import NotReadyYet, PermanentError, waited_out
from lindung_runtime.pipeline import Batch, DeadLetters, Delivery
from lindung_runtime.pipeline.dead_letter import dead_lettering
from lindung_runtime.pipeline.decode import decoding
from lindung_runtime.pipeline.infra import waiting_out_infra
from lindung_runtime.pipeline.retry import retrying
from lindung_runtime.pipeline.trust import trusting

TOPIC = topics.PAYMENT_RECEIVED
GOOD = PaymentReceived(
    invoice_id="INV-1", amount_idr=1, paid_at="2025-10-15T09:00:00Z", reference="R"
).model_dump_json()
QUICK = 0.001


def delivery(n: int, body: str = GOOD, source: str = "/upstream/payment") -> Delivery:
    headers = cloudevent_headers(PaymentReceived.ce_type(), source)
    return Delivery(TOPIC, 0, n, None, body.encode(), headers, f"e{n}")


class Sent:
    """A dead-letter sink that keeps what it was given."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, str]]] = []

    async def publish(self, body: bytes, *, topic: str, key: Any, headers: dict[str, str]) -> None:
        self.records.append((topic, headers))

    def codes(self) -> list[str]:
        return [h["x-lindung-error-code"] for _, h in self.records]


class Recorder:
    """The handle below the step under test: records what reached it; may fail."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls: list[list[str]] = []

    async def __call__(self, batch: Batch) -> None:
        self.calls.append([d.event_id for d in batch.deliveries])
        if self.failures:
            raise self.failures.pop(0)


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def dead(sent: Sent) -> DeadLetters:
    return DeadLetters(sent.publish, "test")


async def test_decode_dead_letters_bad_bytes_and_passes_the_rest(
    sent: Sent, dead: DeadLetters
) -> None:
    below = Recorder()
    batch = Batch(TOPIC, [delivery(1), delivery(2, "{not json"), delivery(3, '{"x": 1}')])
    await decoding(PaymentReceived, dead)(below)(batch)
    assert below.calls == [["e1"]]
    assert sent.codes() == ["invalid_json", "schema_violation"]
    assert {t for t, _ in sent.records} == {f"{TOPIC}.dlq"}
    assert batch.tally.dead_lettered == 2


async def test_trust_dead_letters_an_unlisted_source(sent: Sent, dead: DeadLetters) -> None:
    below = Recorder()
    batch = Batch(TOPIC, [delivery(1), delivery(2, source="/upstream/village")])
    await trusting(("/upstream/payment",), dead)(below)(batch)
    assert below.calls == [["e1"]]
    assert sent.codes() == ["untrusted_source"]


async def test_retry_tries_a_failure_max_attempts_times_and_a_permanent_one_once() -> None:
    failing = Recorder(*[RuntimeError("boom")] * 5)
    with pytest.raises(RuntimeError):
        await retrying(QUICK, 3, 0.0)(failing)(Batch(TOPIC, [delivery(1)]))
    assert len(failing.calls) == 3
    permanent = Recorder(PermanentError("no"))
    with pytest.raises(PermanentError):
        await retrying(QUICK, 3, 0.0)(permanent)(Batch(TOPIC, [delivery(1)]))
    assert len(permanent.calls) == 1


async def test_retry_waits_for_a_missing_fact_longer_than_max_attempts() -> None:
    arrives = Recorder(*[NotReadyYet("programme unknown")] * 6)  # then it has arrived
    await retrying(QUICK, 3, 60.0)(arrives)(Batch(TOPIC, [delivery(1)]))
    assert len(arrives.calls) == 7
    never = Recorder(*[NotReadyYet("programme unknown")] * 1000)
    with pytest.raises(NotReadyYet):
        await retrying(QUICK, 3, 0.05)(never)(Batch(TOPIC, [delivery(1)]))


async def test_infra_waits_out_a_database_failure_and_nothing_else() -> None:
    locked = sa_exc.OperationalError("INSERT", {}, Exception("database is locked"))
    below = Recorder(*[locked] * 8)
    await waiting_out_infra(QUICK, max_seconds=0.01)(below)(Batch(TOPIC, [delivery(1)]))
    assert len(below.calls) == 9
    bug = Recorder(ValueError("a bug"))
    with pytest.raises(ValueError):
        await waiting_out_infra(QUICK)(bug)(Batch(TOPIC, [delivery(1)]))
    assert len(bug.calls) == 1


async def test_dead_letter_step_replays_record_by_record_and_keeps_the_good_ones(
    sent: Sent, dead: DeadLetters
) -> None:
    async def per_record(batch: Batch) -> None:
        replayed.append(batch.deliveries[0].event_id)
        if batch.deliveries[0].event_id == "e2":
            raise PermanentError("poison")

    replayed: list[str] = []
    batch = Batch(TOPIC, [delivery(1), delivery(2), delivery(3)])
    await dead_lettering(dead, per_record=per_record, attempts=6)(Recorder(RuntimeError()))(batch)
    assert replayed == ["e1", "e2", "e3"]
    assert [h["x-lindung-attempts"] for _, h in sent.records] == ["6"]
    assert sent.codes() == ["permanent_error"]


async def test_a_record_still_waiting_is_replayed_with_the_wait_over(dead: DeadLetters) -> None:
    seen: list[bool] = []

    async def per_record(batch: Batch) -> None:
        seen.append(waited_out())

    await dead_lettering(dead, per_record=per_record, attempts=6)(Recorder(NotReadyYet("x")))(
        Batch(TOPIC, [delivery(1)])
    )
    assert seen == [True] and not waited_out()


async def test_dead_letters_sit_outside_the_retries(sent: Sent, dead: DeadLetters) -> None:
    """As `pipeline.build` composes them: the batch is retried, then each record once."""
    below = Recorder(*[RuntimeError("boom")] * 100)
    handle = dead_lettering(dead, per_record=below, attempts=4)(retrying(QUICK, 3, 0.0)(below))
    await handle(Batch(TOPIC, [delivery(1), delivery(2)]))
    assert below.calls == [["e1", "e2"]] * 3 + [["e1"], ["e2"]]
    assert len(sent.records) == 2
