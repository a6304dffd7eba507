"""The checked-in contract documents, generated from the code: the code is the contract.

- `contracts/schemas/<Event>.json`: JSON Schema of every event body;
- `contracts/asyncapi/<service>.yaml`: AsyncAPI 3 of each service, from its FastStream app;
- `contracts/openapi/registration.json`: OpenAPI of the registration HTTP API (also served at
  `/openapi.json` on the admin port).
A unit test regenerates them and fails when the checked-in copies are stale.
"""

from __future__ import annotations

import importlib
import json
import tempfile
from pathlib import Path

import yaml

from lindung_contracts import ALL_EVENTS
from lindung_runtime.settings import LindungSettings

SERVICES = ("registration", "eligibility", "billing", "notification")
HTTP_APIS = ("registration",)  # the others serve only /healthz (/readyz: admin port)


def render_contract_docs() -> dict[str, str]:
    """Relative path under `contracts/` → file content."""
    docs: dict[str, str] = {}
    for event in ALL_EVENTS:
        schema = event.model_json_schema()
        schema["x-topic"] = event.TOPIC
        schema["x-cloudevents-type"] = event.ce_type()
        docs[f"schemas/{event.__name__}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    with tempfile.TemporaryDirectory() as scratch:
        for name in SERVICES:
            settings = LindungSettings(
                kafka_bootstrap_servers="kafka:9092",
                database_url=f"sqlite+aiosqlite:///{scratch}/{name}.db",
            )
            module = importlib.import_module(f"lindung_{name}.app")
            service = module.create_service(_settings_for(name)(**settings.model_dump()))
            document = service.app.schema.to_specification().to_jsonable()
            # FastStream's channel order varies between runs; sorted keys keep the file stable.
            docs[f"asyncapi/{name}.yaml"] = yaml.safe_dump(
                document, sort_keys=True, allow_unicode=True
            )
            if name in HTTP_APIS:
                docs[f"openapi/{name}.json"] = (
                    json.dumps(service.http.openapi(), indent=2, sort_keys=True) + "\n"
                )
    return docs


def _settings_for(name: str) -> type[LindungSettings]:
    module = importlib.import_module(f"lindung_{name}.settings")
    return next(
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, LindungSettings)
        and value is not LindungSettings
    )


def stale_contract_docs(contracts_dir: Path) -> list[str]:
    """The documents whose checked-in copy differs from what the code generates."""
    return [
        path
        for path, content in render_contract_docs().items()
        if not (contracts_dir / path).exists() or (contracts_dir / path).read_text() != content
    ]


def write_contract_docs(contracts_dir: Path) -> list[str]:
    written = []
    for path, content in render_contract_docs().items():
        target = contracts_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text() != content:
            target.write_text(content)
            written.append(path)
    return written
