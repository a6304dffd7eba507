"""Trust step: an event is believed only from a source its topic's allow-list names."""

from __future__ import annotations

from lindung_contracts.access import source_allowed
from lindung_runtime.errors import UntrustedSource
from lindung_runtime.pipeline.batch import Delivery, Step
from lindung_runtime.pipeline.dead_letter import DeadLetters, screening


def check_source(delivery: Delivery, trusted: tuple[str, ...]) -> None:
    """Believe an event only from a source the topic's allow-list names (or continues)."""
    source = delivery.headers.get("ce_source")
    if not source_allowed(source, trusted):
        shown = repr(source[:200]) if source is not None else "none"
        raise UntrustedSource(f"ce_source {shown} is not trusted on {delivery.topic}")


def trusting(trusted: tuple[str, ...], dead_letters: DeadLetters) -> Step:
    """Checked after decoding: a malformed record is dead-lettered either way, and its dead
    letter then says what is wrong with the bytes (what the producer must fix), whoever sent
    them. The allow-list is the contract's (lindung_contracts.access) plus TRUSTED_SOURCES."""
    return screening(
        dead_letters, lambda delivery: check_source(delivery, trusted), (UntrustedSource,)
    )
