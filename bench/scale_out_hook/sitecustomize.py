"""Loaded by every Python process whose PYTHONPATH has this folder (bench/scale_out.py puts the
instances' there): appends each consumer's partition assignment, as the group coordinator handed
it out, to $LINDUNG_BENCH_ASSIGNMENTS/<pid>.jsonl. The embedded broker (Tansu) answers
DescribeGroups without the members' assignments, so the consumers are asked. Nothing happens
without that variable."""

from __future__ import annotations

import os

if os.environ.get("LINDUNG_BENCH_ASSIGNMENTS"):
    import json
    from typing import Any

    from aiokafka.consumer.subscription_state import SubscriptionState

    _out = os.environ["LINDUNG_BENCH_ASSIGNMENTS"]
    _assign = SubscriptionState.assign_from_subscribed

    def _recording(self: Any, assignment: Any) -> None:
        _assign(self, assignment)
        line = {
            "consumer": id(self),
            "topics": sorted(self.topics or ()),
            "partitions": sorted([tp.topic, tp.partition] for tp in assignment),
        }
        with open(os.path.join(_out, f"{os.getpid()}.jsonl"), "a") as out:
            out.write(json.dumps(line) + "\n")

    SubscriptionState.assign_from_subscribed = _recording  # type: ignore[method-assign]
