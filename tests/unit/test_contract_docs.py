"""The checked-in contract documents and the architecture rule that keeps services apart."""

from __future__ import annotations

import re
from pathlib import Path

from lindung_cli.contract_docs import stale_contract_docs

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("registration", "eligibility", "billing", "notification")


def test_checked_in_contract_documents_match_the_code() -> None:
    stale = stale_contract_docs(ROOT / "contracts")
    assert stale == [], f"stale contract documents {stale}: run `lindung contracts export`"


def test_asyncapi_documents_name_every_topic_each_service_consumes_and_emits() -> None:
    billing = (ROOT / "contracts/asyncapi/billing.yaml").read_text()
    for topic in (
        "eligibility.confirmed",
        "payment.received",
        "clock.day-started",
        "contribution.invoiced",
        "coverage.activated",
        "coverage.expiring",
    ):
        assert f"address: {topic}" in billing


def test_no_service_imports_another_service() -> None:
    offenders = []
    for service in SERVICES:
        others = "|".join(s for s in SERVICES if s != service)
        pattern = re.compile(rf"^\s*(from|import)\s+lindung_({others})\b", re.MULTILINE)
        for source in (ROOT / "services" / service).rglob("*.py"):
            if pattern.search(source.read_text()):
                offenders.append(str(source.relative_to(ROOT)))
    assert offenders == []
