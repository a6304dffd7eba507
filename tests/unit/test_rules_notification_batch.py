"""Gathering a batch of alerted workers: each joins its window's open digest once, a closed
(leased, sent or failed) digest takes nobody and its workers count against the follow-up's
expected size, as if the alerts were handled one by one."""

from __future__ import annotations

from collections.abc import Mapping

from lindung_notification.domain import (
    Alerted,
    Gathering,
    GrownDigest,
    StoredDigest,
    chain_digest_id,
    gather_batch,
    in_window,
)

W30 = "sbd-pekerja-rentan-2025q4:2025-12-31:30d"
W7 = "sbd-pekerja-rentan-2025q4:2025-12-31:7d"


def alert(worker: int, window: str = W30, size: int = 3) -> Alerted:
    return Alerted(f"w{worker}", window, size)


def gather(
    alerts: list[Alerted],
    digests: Mapping[str, StoredDigest] | None = None,
    gathered: Mapping[str, set[str]] | None = None,
) -> Gathering:
    return gather_batch(alerts, digests or {}, gathered or {})


def joined(gathering: Gathering) -> list[tuple[str, str]]:
    return [(j.alert.worker_id, j.digest_id) for j in gathering.joinings]


def test_the_chain_is_the_window_then_numbered_follow_ups() -> None:
    assert [chain_digest_id(W30, n) for n in (1, 2, 3)] == [W30, f"{W30}#2", f"{W30}#3"]
    assert in_window(W30, W30) and in_window(f"{W30}#12", W30)
    assert not in_window(W7, W30) and not in_window(f"{W30}x", W30)


def test_a_new_window_gets_its_first_digest_expecting_the_alert_size() -> None:
    gathering = gather([alert(1), alert(2), alert(3)])
    assert joined(gathering) == [("w1", W30), ("w2", W30), ("w3", W30)]
    assert gathering.digests == [GrownDigest(W30, W30, 1, new=True, expected_size=3)]


def test_an_open_digest_takes_the_workers_and_keeps_the_larger_expected_size() -> None:
    stored = {W30: StoredDigest(expected_size=5)}
    gathering = gather([alert(1, size=3), alert(2, size=4)], stored)
    assert joined(gathering) == [("w1", W30), ("w2", W30)]
    assert gathering.digests == [GrownDigest(W30, W30, 1, new=False, expected_size=5)]
    grown = gather([alert(1, size=7)], stored)
    assert grown.digests == [GrownDigest(W30, W30, 1, new=False, expected_size=7)]


def test_a_worker_already_in_one_of_the_windows_digests_is_left_out() -> None:
    stored = {
        W30: StoredDigest(expected_size=3, sent=True, gathered=3),
        f"{W30}#2": StoredDigest(expected_size=1),
    }
    gathering = gather(
        [alert(1), alert(2), alert(3)],
        stored,
        gathered={"w1": {W30}, "w2": {f"{W30}#2"}, "w3": {W7}},  # w3: another window only
    )
    assert joined(gathering) == [("w3", f"{W30}#2")]


def test_a_workers_later_alerts_of_a_window_in_the_batch_are_left_out() -> None:
    gathering = gather([alert(1), alert(2), alert(1, size=9), alert(1, W7, size=1)])
    assert joined(gathering) == [("w1", W30), ("w2", W30), ("w1", W7)]
    assert gathering.digests == [
        GrownDigest(W30, W30, 1, new=True, expected_size=3),
        GrownDigest(W7, W7, 1, new=True, expected_size=1),
    ]


def test_closed_digests_take_nobody_and_count_against_the_follow_ups_size() -> None:
    for closed in (
        StoredDigest(expected_size=3, leased=True, gathered=3),  # being mailed (or lease ran out)
        StoredDigest(expected_size=3, sent=True, gathered=3),
        StoredDigest(expected_size=3, failed=True, gathered=3),
    ):
        assert not closed.open
        gathering = gather([alert(4, size=5), alert(5, size=5)], {W30: closed})
        assert joined(gathering) == [("w4", f"{W30}#2"), ("w5", f"{W30}#2")]
        assert gathering.digests == [GrownDigest(f"{W30}#2", W30, 2, new=True, expected_size=2)]


def test_the_chain_is_followed_to_its_first_open_digest() -> None:
    stored = {
        W30: StoredDigest(expected_size=3, sent=True, gathered=3),
        f"{W30}#2": StoredDigest(expected_size=1, sent=True, gathered=1),
        f"{W30}#3": StoredDigest(expected_size=0),
        f"{W30}#4": StoredDigest(expected_size=0),  # beyond the first open one: not reached
    }
    gathering = gather([alert(6, size=6)], stored)
    assert joined(gathering) == [("w6", f"{W30}#3")]
    assert gathering.digests == [GrownDigest(f"{W30}#3", W30, 3, new=False, expected_size=2)]
    stored[f"{W30}#3"] = StoredDigest(expected_size=2, leased=True, gathered=1)
    gathering = gather([alert(7, size=6)], stored)
    assert gathering.digests == [GrownDigest(f"{W30}#4", W30, 4, new=False, expected_size=1)]


def test_a_postponed_digest_released_by_its_dispatcher_is_open_again() -> None:
    stored = {W30: StoredDigest(expected_size=3), f"{W30}#2": StoredDigest(expected_size=1)}
    assert joined(gather([alert(4)], stored)) == [("w4", W30)]


def test_the_expected_size_never_drops_below_what_is_stored_nor_below_zero() -> None:
    stored = {W30: StoredDigest(expected_size=3, sent=True, gathered=3)}
    gathering = gather([alert(4, size=2)], stored)  # the alert counted fewer than were mailed
    assert gathering.digests == [GrownDigest(f"{W30}#2", W30, 2, new=True, expected_size=0)]


def test_windows_are_gathered_independently_and_the_inputs_are_left_as_they_are() -> None:
    stored = {W30: StoredDigest(expected_size=3, sent=True, gathered=3)}
    gathered = {"w1": {W30}}
    before = (dict(stored), {k: set(v) for k, v in gathered.items()})
    gathering = gather([alert(1), alert(1, W7, size=2), alert(2, W7, size=2)], stored, gathered)
    assert joined(gathering) == [("w1", W7), ("w2", W7)]
    assert gathering.digests == [GrownDigest(W7, W7, 1, new=True, expected_size=2)]
    assert (stored, gathered) == before


def test_as_if_one_by_one() -> None:
    """The batch's outcome is the outcome of handing the alerts over one at a time, each seeing
    what the ones before it gathered."""
    alerts = [alert(1), alert(2, size=4), alert(1), alert(3, W7, 2), alert(4, size=5)]
    stored = {W30: StoredDigest(expected_size=2, leased=True, gathered=2)}
    whole = gather(alerts, stored)

    digests = dict(stored)
    gathered: dict[str, set[str]] = {}
    one_by_one = []
    for a in alerts:
        step = gather([a], digests, gathered)
        for j in step.joinings:
            one_by_one.append((j.alert.worker_id, j.digest_id))
            gathered.setdefault(j.alert.worker_id, set()).add(j.digest_id)
        for d in step.digests:
            digests[d.digest_id] = StoredDigest(expected_size=d.expected_size)
    assert joined(whole) == one_by_one
    assert {d.digest_id: d.expected_size for d in whole.digests} == {
        d: s.expected_size for d, s in digests.items() if d not in stored
    }
