"""CloudEvents sources the consumers trust, for tests that publish as an upstream system or as a
service would (consumers dead-letter any other source as `untrusted_source`)."""

from __future__ import annotations

from functools import partial

from lindung_contracts.access import trusted_source as _trusted_source
from lindung_runtime.kafka import EventClient


def trusted_source(topic: str, tag: str = "test") -> str:
    """`/upstream/payment/test`, `/lindung/eligibility/test`, ..."""
    return _trusted_source(topic, tag)


class TrustedClient(EventClient):
    """An EventClient that publishes each event from a source its topic's consumers trust."""

    def __init__(self, bootstrap_servers: str, tag: str = "test") -> None:
        super().__init__(bootstrap_servers, source=partial(_trusted_source, tag=tag))
