"""Every Rupiah amount in the contract states its range, so that producers in any language know
what consumers accept and the services' BIGINT columns can store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lindung_contracts import ALL_EVENTS, PaymentReceived
from lindung_contracts.events import RUPIAH_MAX

ROOT = Path(__file__).resolve().parents[2]
BIGINT_MAX = 2**63 - 1
JSON_SAFE_MAX = 2**53 - 1  # JavaScript's Number.MAX_SAFE_INTEGER

#: (event, field) of every amount the events carry today; a new one is found by its `_idr` name.
AMOUNTS = {
    ("ProgramPublished", "reported_income_idr"),
    ("ContributionInvoiced", "monthly_amount_idr"),
    ("ContributionInvoiced", "amount_idr"),
    ("ContributionInvoiced", "components"),
    ("PaymentReceived", "amount_idr"),
    ("ProgramRenewed", "reported_income_idr"),
}


def amount_schemas(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The schema of each amount field: `*_idr` properties (of an optional one, its integer
    alternative), and the values of `components`."""
    found = {}
    for name, field in schema.get("properties", {}).items():
        if name.endswith("_idr"):
            alternatives = [f for f in field.get("anyOf", [field]) if f.get("type") != "null"]
            assert len(alternatives) == 1, name
            found[name] = alternatives[0]
        elif name == "components":
            found[name] = field["additionalProperties"]
    return found


def test_the_bound_fits_bigint_and_json_numbers() -> None:
    assert RUPIAH_MAX <= BIGINT_MAX
    assert RUPIAH_MAX <= JSON_SAFE_MAX


def test_every_amount_field_has_a_minimum_and_the_maximum() -> None:
    seen = set()
    for event in ALL_EVENTS:
        for name, field in amount_schemas(event.model_json_schema()).items():
            seen.add((event.__name__, name))
            assert field["type"] == "integer", (event.__name__, name)
            assert field.get("maximum") == RUPIAH_MAX, (event.__name__, name)
            assert "minimum" in field or "exclusiveMinimum" in field, (event.__name__, name)
    assert seen >= AMOUNTS


@pytest.mark.parametrize("event", sorted({e for e, _ in AMOUNTS}))
def test_the_exported_schemas_carry_the_maximum(event: str) -> None:
    schema = json.loads((ROOT / "contracts" / "schemas" / f"{event}.json").read_text())
    fields = amount_schemas(schema)
    assert {name for e, name in AMOUNTS if e == event} <= set(fields)
    assert all(field.get("maximum") == RUPIAH_MAX for field in fields.values())


def test_an_amount_past_the_maximum_is_refused() -> None:
    fields = {"invoice_id": "INV-x", "paid_at": datetime(2025, 10, 1, tzinfo=UTC), "reference": "r"}
    assert PaymentReceived(amount_idr=RUPIAH_MAX, **fields).amount_idr == RUPIAH_MAX
    with pytest.raises(ValidationError):
        PaymentReceived(amount_idr=RUPIAH_MAX + 1, **fields)
