"""CloudEvents sources the consumers trust, for tests that publish as an upstream system or as a
service would (consumers dead-letter any other source as `untrusted_source`)."""

from __future__ import annotations

from lindung_contracts import Event, cloudevent_headers
from lindung_contracts.access import ACCESS
from lindung_runtime.kafka import EventClient


def trusted_source(topic: str, tag: str = "test") -> str:
    """The contract's first source for `topic`, continued by `tag` (as one desa continues
    `/upstream/village`): `/upstream/payment/test`, `/lindung/eligibility/test`."""
    return f"{ACCESS[topic].sources[0].rstrip('/')}/{tag}"


class TrustedClient(EventClient):
    """An EventClient that publishes each event from a source its topic's consumers trust."""

    def __init__(self, bootstrap_servers: str, tag: str = "test") -> None:
        super().__init__(bootstrap_servers)
        self.tag = tag

    def headers_for(self, event: Event, event_id: str | None = None) -> dict[str, str]:
        return cloudevent_headers(
            event.ce_type(), trusted_source(event.TOPIC, self.tag), event_id=event_id
        )
