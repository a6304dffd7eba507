"""Offline checks of everything under deploy/: run `.venv/bin/python deploy/validate.py`.

Exit status 0 when every check passes, 1 (with every problem listed) otherwise. Nothing here
needs Docker, a cluster, or the network:

- Compose: deploy/compose.yaml against the Compose Specification JSON schema that the
  check-jsonschema package ships (its builtin `vendor.compose-spec`), then against the code: the
  topic-creation job creates every topic and its `.dlq` twin, each service runs from the one image
  with HTTP_PORT/HTTP_HOST, a /readyz healthcheck, its own database, traces to the collector.
- OpenTelemetry Collector and Prometheus configs: parse, wiring (pipelines use defined
  components, the services' OTLP endpoint reaches the collector, the collector exports to Jaeger,
  Prometheus scrapes /metrics of all four services).
- Grafana: the dashboard JSON parses and its queries use only the Lindung metric names and labels.
- Kubernetes: every kustomization under deploy/k8s/ is rendered by a small built-in renderer (the
  kustomize features used here: resources, namespace, images, ConfigMap/Secret generators,
  strategic-merge and JSON 6902 patches; anything else is refused). Each object is validated
  against the Kubernetes JSON schemas that kubernetes-validate bundles (strict: unknown fields are
  errors), KEDA objects against deploy/schemas/*.schema.json. When `kubectl` is installed, the
  built-in rendering is compared with `kubectl kustomize`.
- Cross-checks with the code: every topic a service consumes (`service.routes`, from the real
  `create_service`) has a kafka trigger in that service's ScaledObject with the consumer group the
  runtime uses (`group_for`), maxReplicaCount equals the partition count everywhere, probes, the
  migration init container, secrets and ConfigMap references resolve.

Dev dependencies: kubernetes-validate, check-jsonschema, jsonschema (see deploy/README.md).
tests/unit/test_deploy_files.py runs the same checks under pytest.
"""

from __future__ import annotations

import base64
import copy
import functools
import importlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
K8S = DEPLOY / "k8s"
SCHEMAS = DEPLOY / "schemas"

SERVICES = ("registration", "eligibility", "billing", "notification")
HTTP_PORT = 8080
MEMORY_LIMIT_MAX = 256 * 2**20  # the services stay under 200 MB RSS
#: The Kubernetes versions whose schemas every manifest must satisfy (oldest and newest we support).
K8S_VERSIONS = ("1.29", "1.33")

#: The metrics the services export (name -> labels).
METRICS: dict[str, set[str]] = {
    "lindung_events_consumed_total": {"service", "topic", "outcome"},
    "lindung_events_produced_total": {"service", "topic"},
    "lindung_handler_duration_seconds": {"service", "topic"},
    "lindung_outbox_backlog": {"service"},
    "lindung_dead_letters_total": {"service", "topic", "error_code"},
    "lindung_consumer_lag": {"service", "topic"},
}
HISTOGRAMS = {"lindung_handler_duration_seconds"}

KAFKA_SECURITY_PROTOCOLS = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
#: KAFKA_SASL_MECHANISM (the services) -> `sasl` of KEDA's kafka scaler.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}

DEV_DEPENDENCIES = "uv add --dev kubernetes-validate check-jsonschema jsonschema"


class Skip(Exception):
    """A check that cannot run here (e.g. no kubectl); not a failure."""


class RenderError(Exception):
    pass


# ---------------------------------------------------------------------------
# Facts from the code
# ---------------------------------------------------------------------------


@functools.cache
def consumed_topics() -> dict[str, dict[str, str]]:
    """service -> {consumed topic: consumer group}, from the services' own wiring.

    Builds each service with `create_service` (as `lindung contracts export` does: a broker
    address that is never contacted and a scratch SQLite database) and reads `service.routes`
    and `service.group_for`.
    """
    from lindung_runtime.settings import LindungSettings

    result: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in SERVICES:
            settings_module = importlib.import_module(f"lindung_{name}.settings")
            settings_class = next(
                value
                for value in vars(settings_module).values()
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


@functools.cache
def all_topics() -> tuple[str, ...]:
    from lindung_contracts import topics

    return tuple(topics.ALL)


def dead_letter_topic(topic: str) -> str:
    from lindung_contracts import topics

    return topics.dead_letter_topic(topic)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key repeated in one mapping is an error (PyYAML would
    silently keep the last one; Compose, kustomize and Prometheus refuse such files)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` merges; keys written next to it override on purpose
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node, deep=True))


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _mapping_without_duplicates,
)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc]


def schema_errors(schema: dict[str, Any], instance: Any, where: str) -> list[str]:
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{where}: {'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ]


def require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise RuntimeError(
            f"{module} is not installed ({error}); add the dev dependencies: {DEV_DEPENDENCIES}"
        ) from error


def env_map(service: dict[str, Any]) -> dict[str, str]:
    """A Compose service's environment as strings (list or mapping form)."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in environment)
        return {key: value for key, value in pairs}
    return {
        key: "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in environment.items()
    }


_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_UNITS = {
    None: 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def quantity(value: Any) -> float:
    """A Kubernetes resource quantity ("256Mi", "100m", 1) as a number; ValueError if malformed."""
    match = _QUANTITY.match(str(value))
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _UNITS[match.group(3)]


def url_host_port(url: str) -> tuple[str, int | None, str]:
    match = re.match(r"^[a-z]+://([^/:]+)(?::(\d+))?(/.*)?$", url)
    if not match:
        return "", None, ""
    return match.group(1), int(match.group(2)) if match.group(2) else None, match.group(3) or ""


# ---------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    document = load_yaml(DEPLOY / "compose.yaml")
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        raise RuntimeError("deploy/compose.yaml has no services mapping")
    return document


def compose_partitions() -> int | None:
    value = env_map(compose()["services"].get("kafka-init", {})).get("PARTITIONS")
    return int(value) if value and value.isdigit() else None


def check_compose_schema() -> list[str]:
    """deploy/compose.yaml against the Compose Specification schema (check-jsonschema's copy)."""
    require("check_jsonschema")
    from importlib import resources

    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text(encoding="utf-8")
    )
    return schema_errors(json.loads(text), compose(), "compose.yaml")


def check_compose_stack() -> list[str]:
    """The Compose stack against the code and the rest of deploy/."""
    problems: list[str] = []
    services: dict[str, Any] = compose()["services"]
    declared_volumes = set((compose().get("volumes") or {}).keys())

    for required in (
        "kafka",
        "kafka-init",
        "postgres",
        "migrate",
        "mailpit",
        "otel-collector",
        "jaeger",
        "prometheus",
        "grafana",
        *SERVICES,
    ):
        if required not in services:
            problems.append(f"compose: no service {required!r}")

    # Generic wiring: dependencies, volumes, mounted files.
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for dependency in depends if isinstance(depends, list) else depends.keys():
            if dependency not in services:
                problems.append(f"compose: {name} depends on unknown service {dependency!r}")
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            if not source:
                continue
            if source.startswith((".", "/")):
                if source.startswith(".") and not (DEPLOY / source).exists():
                    problems.append(f"compose: {name} mounts {source}, which does not exist")
            elif source not in declared_volumes:
                problems.append(f"compose: {name} uses undeclared volume {source!r}")

    # Kafka: KRaft, no auto-created topics.
    kafka = env_map(services.get("kafka", {}))
    if not str(services.get("kafka", {}).get("image", "")).startswith("apache/kafka:"):
        problems.append("compose: kafka must run the official apache/kafka image (pinned tag)")
    if "controller" not in kafka.get("KAFKA_PROCESS_ROLES", ""):
        problems.append(
            "compose: kafka must run in KRaft mode (KAFKA_PROCESS_ROLES with controller)"
        )
    if kafka.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") != "false":
        problems.append("compose: kafka must not auto-create topics")

    # Topic creation: every topic and its dead-letter twin, explicit partitions and replication.
    init = services.get("kafka-init", {})
    init_env = env_map(init)
    created = set(init_env.get("TOPICS", "").split())
    expected = {t for topic in all_topics() for t in (topic, dead_letter_topic(topic))}
    for topic in sorted(expected - created):
        problems.append(f"compose: kafka-init does not create topic {topic}")
    for topic in sorted(created - expected):
        problems.append(f"compose: kafka-init creates {topic}, which is no Lindung topic")
    for service_name, consumed in consumed_topics().items():
        for topic in consumed:
            for needed in (topic, dead_letter_topic(topic)):
                if needed not in created:
                    problems.append(
                        f"compose: {service_name} consumes {topic} but kafka-init lacks {needed}"
                    )
    for variable in ("PARTITIONS", "REPLICATION_FACTOR"):
        if not init_env.get(variable, "").isdigit() or int(init_env[variable]) < 1:
            problems.append(f"compose: kafka-init needs an explicit positive {variable}")
    script = " ".join(init.get("command") or [])
    for needle in (
        "--create",
        "--partitions",
        "$$PARTITIONS",
        "--replication-factor",
        "$$REPLICATION_FACTOR",
        "$$TOPICS",
    ):
        if needle not in script:
            problems.append(f"compose: kafka-init's command lacks {needle}")

    # One database per service.
    init_sql = (DEPLOY / "postgres-init.sql").read_text(encoding="utf-8")
    for name in SERVICES:
        if not re.search(rf"^\s*CREATE DATABASE {name}\s*;", init_sql, re.MULTILINE | re.I):
            problems.append(f"compose: postgres-init.sql does not create database {name}")

    # Migrations: one job, before the services.
    migrate = services.get("migrate", {})
    migrate_env = env_map(migrate)
    migrate_command = migrate.get("command") or []
    if migrate_command[:2] != ["lindung", "migrate"]:
        problems.append("compose: migrate must run `lindung migrate SERVICE...`")
    for name in SERVICES:
        url = migrate_env.get(f"{name.upper()}_DATABASE_URL", "")
        if not re.match(rf"^postgresql\+asyncpg://.+@postgres:5432/{name}$", url):
            problems.append(
                f"compose: migrate needs {name.upper()}_DATABASE_URL of database {name}"
            )
        if name not in migrate_command[2:]:
            problems.append(f"compose: migrate does not migrate {name}")

    # The four services.
    collector_http_port = otel_http_port()
    image = None
    for name in SERVICES:
        service = services.get(name)
        if service is None:
            continue
        where = f"compose: {name}"
        env = env_map(service)
        image = image or service.get("image")
        if service.get("image") != image or not service.get("build"):
            problems.append(f"{where}: all four services must use (and build) the same image")
        if service.get("command") != ["lindung", "service", name]:
            problems.append(f"{where}: command must be ['lindung', 'service', '{name}']")
        if "container_name" in service:
            problems.append(f"{where}: container_name prevents --scale")
        if service.get("ports") and name != "registration":
            problems.append(f"{where}: published ports prevent --scale")
        expectations = {
            "HTTP_PORT": str(HTTP_PORT),
            "HTTP_HOST": "0.0.0.0",
            "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
            "KAFKA_CREATE_TOPICS": "false",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://otel-collector:{collector_http_port}/v1/traces",
            "DATABASE_MIGRATE_ON_START": "false",
        }
        for variable, value in expectations.items():
            if env.get(variable) != value:
                problems.append(f"{where}: {variable} must be {value!r}, not {env.get(variable)!r}")
        if env.get("KAFKA_SECURITY_PROTOCOL") not in KAFKA_SECURITY_PROTOCOLS:
            problems.append(
                f"{where}: KAFKA_SECURITY_PROTOCOL must be one of {KAFKA_SECURITY_PROTOCOLS}"
            )
        if not re.match(
            rf"^postgresql\+asyncpg://.+@postgres:5432/{name}$", env.get("DATABASE_URL", "")
        ):
            problems.append(f"{where}: DATABASE_URL must point at its own database {name!r}")
        test = " ".join(str(part) for part in (service.get("healthcheck") or {}).get("test", []))
        if f":{HTTP_PORT}/readyz" not in test:
            problems.append(f"{where}: the healthcheck must ask /readyz on port {HTTP_PORT}")
        depends = service.get("depends_on") or {}
        for dependency, condition in (
            ("kafka-init", "service_completed_successfully"),
            ("migrate", "service_completed_successfully"),
            ("postgres", "service_healthy"),
        ):
            if (
                not isinstance(depends, dict)
                or (depends.get(dependency) or {}).get("condition") != condition
            ):
                problems.append(f"{where}: must depend on {dependency} ({condition})")
    if services.get("migrate", {}).get("image") != image:
        problems.append("compose: migrate must run the services' image")
    return problems


# ---------------------------------------------------------------------------
# OpenTelemetry Collector, Prometheus, Grafana
# ---------------------------------------------------------------------------


def otel_http_port() -> int | None:
    config = load_yaml(DEPLOY / "otel-collector.yaml") or {}
    endpoint = (
        (((config.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}).get("http")
        or {}
    ).get("endpoint", "")
    match = re.match(r"^0\.0\.0\.0:(\d+)$", str(endpoint))
    return int(match.group(1)) if match else None


def check_otel_collector() -> list[str]:
    """deploy/otel-collector.yaml: OTLP/HTTP in, every pipeline component defined, out to Jaeger."""
    problems: list[str] = []
    config = load_yaml(DEPLOY / "otel-collector.yaml")
    if not isinstance(config, dict):
        return ["otel-collector.yaml: not a mapping"]
    if otel_http_port() != 4318:
        problems.append(
            "otel-collector.yaml: receivers.otlp.protocols.http.endpoint must be 0.0.0.0:4318"
        )
    pipelines = (config.get("service") or {}).get("pipelines") or {}
    if "traces" not in pipelines:
        problems.append("otel-collector.yaml: no traces pipeline")
    for pipeline_name, pipeline in pipelines.items():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section) or []:
                if component not in (config.get(section) or {}):
                    problems.append(
                        f"otel-collector.yaml: pipeline {pipeline_name} uses undefined "
                        f"{section[:-1]} {component}"
                    )
        if not pipeline.get("receivers") or not pipeline.get("exporters"):
            problems.append(
                f"otel-collector.yaml: pipeline {pipeline_name} needs receivers and exporters"
            )
    for extension in (config.get("service") or {}).get("extensions") or []:
        if extension not in (config.get("extensions") or {}):
            problems.append(f"otel-collector.yaml: undefined extension {extension}")
    services = compose()["services"]
    traces_exporters = (pipelines.get("traces") or {}).get("exporters") or []
    to_jaeger = False
    for exporter in traces_exporters:
        endpoint = str(((config.get("exporters") or {}).get(exporter) or {}).get("endpoint", ""))
        host = endpoint.split("://")[-1].split(":")[0]
        if exporter.split("/")[0] in ("otlp", "otlphttp") and host == "jaeger":
            to_jaeger = True
            if not endpoint.endswith(":4317") and exporter.split("/")[0] == "otlp":
                problems.append("otel-collector.yaml: Jaeger takes OTLP/gRPC on port 4317")
        if host and host not in services:
            problems.append(
                f"otel-collector.yaml: exporter {exporter} sends to unknown host {host}"
            )
    if not to_jaeger:
        problems.append("otel-collector.yaml: the traces pipeline must export to Jaeger over OTLP")
    jaeger = env_map(services.get("jaeger", {}))
    if jaeger.get("COLLECTOR_OTLP_ENABLED") != "true":
        problems.append("compose: jaeger needs COLLECTOR_OTLP_ENABLED=true")
    mounts = " ".join(str(v) for v in services.get("otel-collector", {}).get("volumes") or [])
    command = " ".join(services.get("otel-collector", {}).get("command") or [])
    target = re.search(r"\./otel-collector\.yaml:([^:\s]+)", mounts)
    if not target or target.group(1) not in command:
        problems.append("compose: otel-collector must mount ./otel-collector.yaml and load it")
    return problems


_SCRAPE_KEYS = {
    "job_name",
    "metrics_path",
    "scheme",
    "scrape_interval",
    "scrape_timeout",
    "static_configs",
    "dns_sd_configs",
    "relabel_configs",
    "metric_relabel_configs",
    "honor_labels",
    "honor_timestamps",
    "params",
    "kubernetes_sd_configs",
    "basic_auth",
    "authorization",
    "tls_config",
    "sample_limit",
}


def check_prometheus() -> list[str]:
    """deploy/prometheus.yml: parses, and scrapes /metrics of every instance of the services."""
    problems: list[str] = []
    config = load_yaml(DEPLOY / "prometheus.yml")
    if not isinstance(config, dict):
        return ["prometheus.yml: not a mapping"]
    unknown = set(config) - {
        "global",
        "scrape_configs",
        "rule_files",
        "alerting",
        "remote_write",
        "remote_read",
        "storage",
        "tracing",
        "scrape_config_files",
    }
    if unknown:
        problems.append(f"prometheus.yml: unknown top-level keys {sorted(unknown)}")
    services = compose()["services"]
    scraped: dict[str, set[str]] = {}
    jobs = config.get("scrape_configs") or []
    names = [job.get("job_name") for job in jobs]
    if len(names) != len(set(names)):
        problems.append("prometheus.yml: job names must be unique")
    for job in jobs:
        name = job.get("job_name")
        if set(job) - _SCRAPE_KEYS:
            problems.append(
                f"prometheus.yml: job {name}: unknown keys {sorted(set(job) - _SCRAPE_KEYS)}"
            )
        targets: set[str] = set()
        for static in job.get("static_configs") or []:
            targets.update(static.get("targets") or [])
        for dns in job.get("dns_sd_configs") or []:
            if set(dns) - {"names", "type", "port", "refresh_interval"}:
                problems.append(f"prometheus.yml: job {name}: unknown dns_sd_configs keys")
            if dns.get("type", "SRV") in ("A", "AAAA") and not dns.get("port"):
                problems.append(f"prometheus.yml: job {name}: A/AAAA lookups need a port")
            targets.update(f"{host}:{dns.get('port')}" for host in dns.get("names") or [])
        for target in targets:
            host = target.rsplit(":", 1)[0]
            if host not in services and host != "localhost":
                problems.append(f"prometheus.yml: job {name} scrapes unknown host {host}")
        scraped[name] = {t for t in targets if job.get("metrics_path", "/metrics") == "/metrics"}
    for service in SERVICES:
        if not any(f"{service}:{HTTP_PORT}" in targets for targets in scraped.values()):
            problems.append(f"prometheus.yml: no job scrapes {service}:{HTTP_PORT}/metrics")
    if not any("otel-collector:8888" in targets for targets in scraped.values()):
        problems.append(
            "prometheus.yml: the collector's own metrics (otel-collector:8888) are not scraped"
        )
    return problems


def check_prometheus_promtool() -> list[str]:
    """`promtool check config deploy/prometheus.yml` (only where promtool is installed)."""
    promtool = shutil.which("promtool")
    if not promtool:
        raise Skip("promtool is not installed (Debian package prometheus)")
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(DEPLOY / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        return [f"promtool: {(result.stdout + result.stderr).strip()[:1000]}"]
    return []


_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(?=[{\[])")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
_LINDUNG_NAME = re.compile(r"\blindung_[a-z0-9_]+\b")


def metric_base(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
            return name[: -len(suffix)]
    return name


def promql_problems(expr: str, where: str) -> tuple[list[str], set[str]]:
    """Metric names and labels of one PromQL expression (not a full parser: selectors, `by`,
    `without` and label matchers)."""
    problems: list[str] = []
    used = {metric_base(name) for name in _LINDUNG_NAME.findall(expr)}
    for name in _SELECTOR.findall(expr):
        if name in ("by", "without", "on", "ignoring", "group_left", "group_right"):
            continue
        used.add(metric_base(name))
    for name in sorted(used):
        if name not in METRICS:
            problems.append(f"{where}: unknown metric {name!r} in {expr!r}")
    labels: set[str] = set().union(*(METRICS.get(name, set()) for name in used))
    if any(name.endswith("_bucket") for name in _LINDUNG_NAME.findall(expr)):
        labels.add("le")
    for group in _GROUPING.findall(expr):
        for label in (part.strip() for part in group.split(",")):
            if label and label not in labels:
                problems.append(f"{where}: label {label!r} is not a label of {sorted(used)}")
    for label in _MATCHER.findall(expr):
        if label not in labels | {"__name__"}:
            problems.append(f"{where}: matcher on {label!r}, not a label of {sorted(used)}")
    return problems, used


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate keys {duplicates}")
    return dict(pairs)


def check_metrics_match_runtime() -> list[str]:
    """The metric names and labels the dashboard may use are those the runtime registers."""
    try:
        from prometheus_client.metrics import MetricWrapperBase

        from lindung_runtime.metrics import ServiceMetrics
    except ImportError as error:
        return [f"cannot import the runtime's metrics (lindung_runtime.metrics): {error}"]
    exported: dict[str, set[str]] = {}
    for value in vars(ServiceMetrics("validate")).values():
        if isinstance(value, MetricWrapperBase):
            # prometheus_client exposes a counter `x` as `x_total`.
            name = value._name + ("_total" if value._type == "counter" else "")
            exported[name] = set(value._labelnames)
    problems = []
    for name, labels in METRICS.items():
        if name not in exported:
            problems.append(f"the runtime exports no metric {name}")
        elif exported[name] != labels:
            problems.append(f"{name}: the runtime's labels are {sorted(exported[name])}")
    return problems


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels") or [])


def check_grafana() -> list[str]:
    """deploy/grafana/: the dashboard uses only Lindung metrics; provisioning matches compose."""
    problems: list[str] = []
    path = DEPLOY / "grafana" / "lindung-dashboard.json"
    try:
        dashboard = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except (json.JSONDecodeError, ValueError) as error:
        return [f"{path.name}: invalid JSON: {error}"]
    for key in ("uid", "title", "panels", "schemaVersion"):
        if key not in dashboard:
            problems.append(f"{path.name}: no {key}")
    variables = {v.get("name"): v for v in (dashboard.get("templating") or {}).get("list") or []}
    if (variables.get("datasource") or {}).get("query") != "prometheus":
        problems.append(f"{path.name}: needs a Prometheus data source variable named datasource")
    used: set[str] = set()
    for variable in variables.values():
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        if variable.get("type") == "query" and text:
            found, names = promql_problems(
                re.sub(r"label_values\(\s*([^,]+),\s*(\w+)\)", r"\1 by (\2)", text),
                f"{path.name}: variable {variable.get('name')}",
            )
            problems += found
            used |= names
    ids = []
    for panel in iter_panels(dashboard.get("panels") or []):
        ids.append(panel.get("id"))
        if panel.get("type") == "row":
            continue
        where = f"{path.name}: panel {panel.get('title')!r}"
        if "gridPos" not in panel:
            problems.append(f"{where}: no gridPos")
        if (panel.get("datasource") or {}).get("uid") != "${datasource}":
            problems.append(f"{where}: must use the ${{datasource}} variable")
        if not panel.get("targets"):
            problems.append(f"{where}: no queries")
        for target in panel.get("targets") or []:
            expr = target.get("expr", "")
            if not expr:
                problems.append(f"{where}: a target without expr")
                continue
            found, names = promql_problems(expr, where)
            problems += found
            used |= names
            if not names:
                problems.append(f"{where}: {expr!r} uses no Lindung metric")
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"{path.name}: panel ids must be present and unique")
    for metric in sorted(set(METRICS) - used):
        problems.append(f"{path.name}: no panel shows {metric}")

    # Provisioning (compose): data source URL and dashboard folder.
    services = compose()["services"]
    datasources = load_yaml(DEPLOY / "grafana/provisioning/datasources/lindung.yaml") or {}
    prometheus_sources = [
        d for d in datasources.get("datasources") or [] if d.get("type") == "prometheus"
    ]
    if not prometheus_sources:
        problems.append("grafana provisioning: no Prometheus data source")
    for source in datasources.get("datasources") or []:
        host, _, _ = url_host_port(str(source.get("url", "")))
        if host not in services:
            problems.append(
                f"grafana provisioning: data source {source.get('name')} at unknown host {host}"
            )
    providers = load_yaml(DEPLOY / "grafana/provisioning/dashboards/lindung.yaml") or {}
    folders = {(p.get("options") or {}).get("path") for p in providers.get("providers") or []}
    mounts = [str(v) for v in services.get("grafana", {}).get("volumes") or []]
    dashboard_mount = next(
        (m for m in mounts if m.startswith("./grafana/lindung-dashboard.json:")), ""
    )
    target = dashboard_mount.split(":")[1] if dashboard_mount else ""
    if not target or str(Path(target).parent) not in folders:
        problems.append(
            "grafana provisioning: the dashboard is not mounted where the provider looks"
        )
    if not any(m.startswith("./grafana/provisioning:/etc/grafana/provisioning") for m in mounts):
        problems.append(
            "compose: grafana must mount ./grafana/provisioning at /etc/grafana/provisioning"
        )
    return problems


# ---------------------------------------------------------------------------
# Kustomize (the subset used here)
# ---------------------------------------------------------------------------

_KUSTOMIZATION_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "images",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "patches",
}
_CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "ClusterTriggerAuthentication",
}
#: Strategic-merge keys of the built-in lists patched here (anything else is replaced whole).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}
_POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def kustomization_dirs() -> list[Path]:
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


def overlay_dirs() -> list[Path]:
    """Kustomizations meant to be applied (they set a namespace)."""
    return [
        d
        for d in kustomization_dirs()
        if (load_yaml(d / "kustomization.yaml") or {}).get("namespace")
    ]


def object_id(obj: dict[str, Any]) -> tuple[str, str]:
    return obj.get("kind", "?"), (obj.get("metadata") or {}).get("name", "?")


def _generator_data(directory: Path, generator: dict[str, Any]) -> dict[str, str]:
    unknown = set(generator) - {
        "name",
        "behavior",
        "literals",
        "files",
        "envs",
        "type",
        "namespace",
    }
    if unknown:
        raise RenderError(f"{directory}: generator fields {sorted(unknown)} are not supported")
    data: dict[str, str] = {}
    for literal in generator.get("literals") or []:
        key, separator, value = literal.partition("=")
        if not separator:
            raise RenderError(f"{directory}: literal {literal!r} is not KEY=VALUE")
        data[key] = value
    for entry in generator.get("files") or []:
        key, separator, file = entry.partition("=")
        path = directory / (file if separator else key)
        data[key if separator else path.name] = path.read_text(encoding="utf-8")
    for env_file in generator.get("envs") or []:
        for line in (directory / env_file).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                data[key.strip()] = value
    return data


def _strategic_merge(base: Any, patch: Any, field: str = "", builtin: bool = True) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        if any(key.startswith("$") for key in patch):
            raise RenderError(f"patch directives ({sorted(patch)}) are not supported")
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = _strategic_merge(merged[key], value, key, builtin)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and builtin and field in _MERGE_KEYS:
        key = _MERGE_KEYS[field]
        merged_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            match = next(
                (i for i, old in enumerate(merged_list) if old.get(key) == item.get(key)), None
            )
            if match is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[match] = _strategic_merge(merged_list[match], item, "", builtin)
        return merged_list
    return copy.deepcopy(patch)


def _json_pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise RenderError(f"JSON patch path {path!r} must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _json6902(obj: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    result = copy.deepcopy(obj)
    for operation in operations:
        op, parts = operation.get("op"), _json_pointer(operation.get("path", ""))
        parent: Any = result
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if op in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if op == "add":
                    parent.insert(index, copy.deepcopy(operation["value"]))
                else:
                    parent[index] = copy.deepcopy(operation["value"])
            else:
                if op == "replace" and last not in parent:
                    raise RenderError(f"JSON patch replaces missing {operation['path']}")
                parent[last] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        else:
            raise RenderError(f"JSON patch op {op!r} is not supported")
    return result


def _matches(obj: dict[str, Any], target: dict[str, Any]) -> bool:
    unknown = set(target) - {"group", "version", "kind", "name", "namespace"}
    if unknown:
        raise RenderError(f"patch target fields {sorted(unknown)} are not supported")
    api_version = obj.get("apiVersion", "")
    group, _, version = api_version.rpartition("/")
    checks = {
        "group": group,
        "version": version,
        "kind": obj.get("kind"),
        "name": (obj.get("metadata") or {}).get("name"),
        "namespace": (obj.get("metadata") or {}).get("namespace"),
    }
    for field, wanted in target.items():
        actual = checks[field] or ""
        if field in ("name", "namespace"):
            if not re.fullmatch(wanted, actual):
                return False
        elif actual != wanted:
            return False
    return True


def _set_image(container: dict[str, Any], images: list[dict[str, Any]]) -> None:
    image = container.get("image", "")
    name, digest = [*image.split("@", 1), ""][:2]
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    for rule in images:
        if rule.get("name") == name:
            new = rule.get("newName", name)
            if rule.get("digest"):
                container["image"] = f"{new}@{rule['digest']}"
            elif rule.get("newTag"):
                container["image"] = f"{new}:{rule['newTag']}"
            else:
                container["image"] = (
                    new + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
                )


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kustomize build directory` produces, for the features used in deploy/k8s."""
    kustomization = load_yaml(directory / "kustomization.yaml") or {}
    unknown = set(kustomization) - _KUSTOMIZATION_FIELDS
    if unknown:
        raise RenderError(
            f"{directory}/kustomization.yaml: {sorted(unknown)} not supported by validate.py's "
            "renderer (extend render() or keep to the supported fields)"
        )
    objects: list[dict[str, Any]] = []
    for resource in kustomization.get("resources") or []:
        path = directory / resource
        if path.is_dir():
            objects += render(path)
        elif path.is_file():
            objects += load_yaml_documents(path)
        else:
            raise RenderError(f"{directory}: resource {resource} does not exist")

    generators = [("ConfigMap", g) for g in kustomization.get("configMapGenerator") or []] + [
        ("Secret", g) for g in kustomization.get("secretGenerator") or []
    ]
    options = kustomization.get("generatorOptions") or {}
    if generators and not options.get("disableNameSuffixHash"):
        raise RenderError(
            f"{directory}: generators need generatorOptions.disableNameSuffixHash: true "
            "(KEDA refers to Secrets by name, and kustomize would not rewrite those references)"
        )
    if set(options) - {"disableNameSuffixHash"}:
        raise RenderError(f"{directory}: generatorOptions {sorted(options)} not supported")
    for kind, generator in generators:
        data = _generator_data(directory, generator)
        behavior = generator.get("behavior", "create")
        existing = next((o for o in objects if object_id(o) == (kind, generator["name"])), None)
        if behavior == "create":
            if existing is not None:
                raise RenderError(f"{directory}: {kind} {generator['name']} already exists")
            obj: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": kind,
                "metadata": {"name": generator["name"]},
            }
            if kind == "Secret":
                obj["type"] = generator.get("type", "Opaque")
                obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
            else:
                obj["data"] = data
            objects.append(obj)
        elif behavior in ("merge", "replace"):
            if existing is None:
                raise RenderError(f"{directory}: no {kind} {generator['name']} to {behavior}")
            if kind == "Secret":
                data = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
            existing["data"] = (
                {**(existing.get("data") or {}), **data} if behavior == "merge" else data
            )
        else:
            raise RenderError(f"{directory}: generator behavior {behavior!r}")

    for patch in kustomization.get("patches") or []:
        if set(patch) - {"path", "patch", "target"}:
            raise RenderError(f"{directory}: patch fields {sorted(patch)} not supported")
        text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
        body = yaml.safe_load(text)
        if isinstance(body, list):
            if "target" not in patch:
                raise RenderError(f"{directory}: a JSON 6902 patch needs a target")
            selected = [i for i, o in enumerate(objects) if _matches(o, patch["target"])]
            for index in selected:
                objects[index] = _json6902(objects[index], body)
        else:
            target = patch.get("target") or {
                "kind": body.get("kind"),
                "name": re.escape(body["metadata"]["name"]),
            }
            selected = [i for i, o in enumerate(objects) if _matches(o, target)]
            for index in selected:
                builtin = "." not in objects[index].get("apiVersion", "").split("/")[0] or objects[
                    index
                ].get("apiVersion", "").startswith(("apps/", "batch/", "policy/"))
                objects[index] = _strategic_merge(objects[index], body, "", builtin)
        if not selected:
            raise RenderError(
                f"{directory}: patch {patch.get('path') or patch.get('target')} matches nothing"
            )

    images = kustomization.get("images") or []
    for obj in objects:
        if obj.get("kind") in _POD_TEMPLATE_KINDS:
            pod = obj["spec"]["template"]["spec"]
            for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
                _set_image(container, images)
    namespace = kustomization.get("namespace")
    if namespace:
        for obj in objects:
            if obj.get("kind") not in _CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = namespace
    return objects


@functools.cache
def rendered(directory: Path) -> tuple[dict[str, Any], ...]:
    objects = render(directory)
    seen: set[tuple[str, str]] = set()
    for obj in objects:
        if object_id(obj) in seen:
            raise RenderError(f"{directory}: {object_id(obj)} defined twice")
        seen.add(object_id(obj))
    return tuple(objects)


def check_k8s_render() -> list[str]:
    """Every kustomization renders with the supported features."""
    problems: list[str] = []
    if not kustomization_dirs():
        return ["deploy/k8s: no kustomization.yaml"]
    if not overlay_dirs():
        problems.append("deploy/k8s: no overlay (a kustomization that sets a namespace)")
    for directory in kustomization_dirs():
        try:
            rendered(directory)
        except (RenderError, OSError, KeyError, yaml.YAMLError) as error:
            problems.append(f"{directory.relative_to(ROOT)}: {error}")
    return problems


def _normalised(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    if obj.get("kind") == "Secret":
        obj["data"] = {
            k: base64.b64decode("".join(v.split())).decode()
            for k, v in (obj.get("data") or {}).items()
        }
    return obj


def check_k8s_render_matches_kubectl() -> list[str]:
    """The built-in renderer gives what `kubectl kustomize` gives (only where kubectl exists)."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise Skip("kubectl is not installed")
    problems: list[str] = []
    for directory in kustomization_dirs():
        try:
            output = subprocess.run(
                [kubectl, "kustomize", str(directory)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise Skip(f"kubectl kustomize did not run: {error}") from error
        where = directory.relative_to(ROOT)
        if output.returncode != 0:
            problems.append(f"{where}: kubectl kustomize failed: {output.stderr.strip()[:500]}")
            continue
        theirs = {object_id(o): _normalised(o) for o in yaml.safe_load_all(output.stdout) if o}
        ours = {object_id(o): _normalised(o) for o in rendered(directory)}
        for key in sorted(set(theirs) | set(ours)):
            if theirs.get(key) != ours.get(key):
                problems.append(f"{where}: {key} differs from kubectl kustomize's rendering")
    return problems


# ---------------------------------------------------------------------------
# Kubernetes schemas
# ---------------------------------------------------------------------------


@functools.cache
def keda_schema(kind: str) -> dict[str, Any]:
    file = {
        "ScaledObject": "keda-scaledobject",
        "TriggerAuthentication": "keda-triggerauthentication",
        "ClusterTriggerAuthentication": "keda-triggerauthentication",
    }[kind]
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{file}.schema.json").read_text("utf-8"))
    return schema


def _resources_problems(obj: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    if obj.get("kind") not in _POD_TEMPLATE_KINDS:
        return problems
    pod = obj["spec"]["template"]["spec"]
    for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        for section in ("requests", "limits"):
            for resource, value in ((container.get("resources") or {}).get(section) or {}).items():
                try:
                    quantity(value)
                except ValueError as error:
                    problems.append(
                        f"{where}: container {container.get('name')}: {section}.{resource}: {error}"
                    )
    return problems


def check_k8s_schemas() -> list[str]:
    """Every rendered object against the Kubernetes (strict) or KEDA JSON schema."""
    kubernetes_validate = require("kubernetes_validate")
    require("jsonschema")
    problems: list[str] = []
    checked: set[str] = set()
    for directory in kustomization_dirs():
        try:
            objects = rendered(directory)
        except (RenderError, OSError, KeyError, yaml.YAMLError):
            continue  # reported by check_k8s_render
        for obj in objects:
            kind, name = object_id(obj)
            where = f"{directory.relative_to(ROOT)}: {kind}/{name}"
            fingerprint = json.dumps(obj, sort_keys=True)
            if fingerprint in checked:
                continue
            checked.add(fingerprint)
            if obj.get("apiVersion", "").startswith("keda.sh/"):
                if kind not in (
                    "ScaledObject",
                    "TriggerAuthentication",
                    "ClusterTriggerAuthentication",
                ):
                    problems.append(f"{where}: no schema for KEDA kind {kind}")
                    continue
                problems += schema_errors(keda_schema(kind), obj, where)
                continue
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    path = "/".join(str(p) for p in error.path) or "(top)"
                    problems.append(f"{where} (Kubernetes {version}): {path}: {error.message}")
                except (
                    kubernetes_validate.SchemaNotFoundError,
                    kubernetes_validate.InvalidSchemaError,
                ) as error:
                    problems.append(f"{where} (Kubernetes {version}): {error.message}")
            problems += _resources_problems(obj, where)
    return problems


# ---------------------------------------------------------------------------
# Kubernetes conventions and cross-checks with the code
# ---------------------------------------------------------------------------


def _index(objects: tuple[dict[str, Any], ...]) -> dict[tuple[str, str], dict[str, Any]]:
    return {object_id(o): o for o in objects}


def _config_data(index: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, str]:
    return dict((index.get(("ConfigMap", name)) or {}).get("data") or {})


def _secret_data(index: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, str] | None:
    secret = index.get(("Secret", name))
    if secret is None:
        return None
    decoded = {
        k: base64.b64decode("".join(v.split())).decode()
        for k, v in (secret.get("data") or {}).items()
    }
    decoded.update(secret.get("stringData") or {})
    return decoded


def _container_env(
    index: dict[tuple[str, str], dict[str, Any]], container: dict[str, Any]
) -> dict[str, str]:
    """The container's environment: ConfigMap values, `secret:NAME/KEY` for Secret refs."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update(_config_data(index, source["configMapRef"]["name"]))
    for variable in container.get("env") or []:
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
        elif "secretKeyRef" in (variable.get("valueFrom") or {}):
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = f"secret:{ref['name']}/{ref['key']}"
        elif "configMapKeyRef" in (variable.get("valueFrom") or {}):
            ref = variable["valueFrom"]["configMapKeyRef"]
            env[variable["name"]] = _config_data(index, ref["name"]).get(ref["key"], "")
    return env


def _reference_problems(
    index: dict[tuple[str, str], dict[str, Any]], where: str, pod: dict[str, Any]
) -> list[str]:
    problems: list[str] = []

    def need(kind: str, name: str, key: str | None, optional: bool, what: str) -> None:
        if optional:
            return
        obj = index.get((kind, name))
        if obj is None:
            problems.append(f"{where}: {what} refers to missing {kind} {name}")
        elif key is not None:
            data = _secret_data(index, name) if kind == "Secret" else _config_data(index, name)
            if key not in (data or {}):
                problems.append(f"{where}: {what} refers to missing key {key} of {kind} {name}")

    for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        what = f"container {container['name']}"
        for source in container.get("envFrom") or []:
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if field in source:
                    ref = source[field]
                    need(kind, ref["name"], None, ref.get("optional", False), what)
        for variable in container.get("env") or []:
            value_from = variable.get("valueFrom") or {}
            for field, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                if field in value_from:
                    ref = value_from[field]
                    need(
                        kind,
                        ref["name"],
                        ref["key"],
                        ref.get("optional", False),
                        f"{what} env {variable['name']}",
                    )
        volume_names = {v["name"] for v in pod.get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in volume_names:
                problems.append(f"{where}: {what} mounts undefined volume {mount['name']}")
    for volume in pod.get("volumes") or []:
        if "secret" in volume:
            need(
                "Secret",
                volume["secret"]["secretName"],
                None,
                volume["secret"].get("optional", False),
                f"volume {volume['name']}",
            )
        if "configMap" in volume:
            need(
                "ConfigMap",
                volume["configMap"]["name"],
                None,
                volume["configMap"].get("optional", False),
                f"volume {volume['name']}",
            )
        if "persistentVolumeClaim" in volume:
            need(
                "PersistentVolumeClaim",
                volume["persistentVolumeClaim"]["claimName"],
                None,
                False,
                f"volume {volume['name']}",
            )
    return problems


def _mounted_from(
    pod: dict[str, Any], container: dict[str, Any], path: str
) -> dict[str, Any] | None:
    """The volume whose mount holds `path` in the container (None if on the image's filesystem)."""
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    best = None
    for mount in container.get("volumeMounts") or []:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, mount)
    return volumes.get(best[1]["name"]) if best else None


def _probe_problems(container: dict[str, Any], probe: str, path: str, where: str) -> list[str]:
    spec = container.get(probe) or {}
    http = spec.get("httpGet") or {}
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    port = http.get("port")
    port_number = ports.get(port) if isinstance(port, str) else port
    if http.get("path") != path or port_number != HTTP_PORT:
        return [f"{where}: {probe} must GET {path} on port {HTTP_PORT}"]
    return []


def _pod_security_problems(pod: dict[str, Any], where: str) -> list[str]:
    """The Pod Security Standard 'restricted' (the example namespace enforces it)."""
    problems: list[str] = []
    pod_context = pod.get("securityContext") or {}
    for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        context = container.get("securityContext") or {}
        name = container["name"]
        if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
            problems.append(f"{where}: container {name} must run as non-root")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: container {name} needs allowPrivilegeEscalation: false")
        if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{where}: container {name} must drop ALL capabilities")
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get(
            "type"
        )
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: container {name} needs seccompProfile RuntimeDefault")
    return problems


def _deployment_problems(
    index: dict[tuple[str, str], dict[str, Any]], name: str, where: str, is_overlay: bool
) -> list[str]:
    problems: list[str] = []
    deployment = index.get(("Deployment", name))
    if deployment is None:
        return [f"{where}: no Deployment {name}"]
    where = f"{where}: Deployment/{name}"
    spec = deployment["spec"]
    if "replicas" in spec:
        problems.append(f"{where}: no spec.replicas (KEDA's HPA owns the count)")
    pod_labels = spec["template"]["metadata"].get("labels") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
        problems.append(f"{where}: selector does not match the pod labels")
    pod = spec["template"]["spec"]
    containers = pod.get("containers") or []
    if len(containers) != 1 or containers[0].get("name") != name:
        return [*problems, f"{where}: exactly one container, named {name}"]
    container = containers[0]
    if container.get("command") != ["lindung", "service", name]:
        problems.append(f"{where}: command must be ['lindung', 'service', '{name}']")
    env = _container_env(index, container)
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    if ports.get("http") != HTTP_PORT or env.get("HTTP_PORT") != str(HTTP_PORT):
        problems.append(f"{where}: port http must be {HTTP_PORT} and HTTP_PORT={HTTP_PORT}")
    if env.get("HTTP_HOST") != "0.0.0.0":
        problems.append(f"{where}: HTTP_HOST must be 0.0.0.0 (probes come from the kubelet)")
    problems += _probe_problems(container, "livenessProbe", "/healthz", where)
    problems += _probe_problems(container, "readinessProbe", "/readyz", where)
    if "startupProbe" in container:
        problems += _probe_problems(container, "startupProbe", "/healthz", where)
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for resource in ("cpu", "memory"):
        if resource not in requests:
            problems.append(f"{where}: no {resource} request")
    try:
        memory_limit = quantity(limits.get("memory", "0"))
        if not 0 < memory_limit <= MEMORY_LIMIT_MAX:
            problems.append(f"{where}: memory limit must be set and at most 256Mi")
        if quantity(requests.get("memory", "0")) > memory_limit:
            problems.append(f"{where}: memory request above the limit")
    except ValueError as error:
        problems.append(f"{where}: {error}")
    if env.get("DATABASE_URL") != f"secret:lindung-database/{name}":
        problems.append(f"{where}: DATABASE_URL must come from Secret lindung-database, key {name}")
    if env.get("OTEL_TRACES_EXPORTER") == "otlp" and not env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", ""
    ).endswith("/v1/traces"):
        problems.append(
            f"{where}: OTEL_EXPORTER_OTLP_ENDPOINT must be the full OTLP/HTTP traces URL"
        )
    protocol = env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        problems.append(
            f"{where}: KAFKA_SECURITY_PROTOCOL {protocol!r} is not one of "
            f"{sorted(KAFKA_SECURITY_PROTOCOLS)}"
        )
    if protocol.startswith("SASL_"):
        if env.get("KAFKA_SASL_MECHANISM") not in KEDA_SASL:
            problems.append(f"{where}: KAFKA_SASL_MECHANISM must be one of {sorted(KEDA_SASL)}")
        for variable in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
            if not env.get(variable):
                problems.append(f"{where}: {protocol} needs {variable}")
        if env.get("KAFKA_SASL_PASSWORD", "secret:").split(":")[0] != "secret":
            problems.append(f"{where}: KAFKA_SASL_PASSWORD must come from a Secret")
    for variable in ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"):
        if env.get(variable) and _mounted_from(pod, container, env[variable]) is None:
            problems.append(f"{where}: {variable}={env[variable]} is not on a mounted volume")
    if env.get("KAFKA_PARTITIONS") and not env["KAFKA_PARTITIONS"].isdigit():
        problems.append(f"{where}: KAFKA_PARTITIONS must be a number")

    # The migration, before the service starts, with the same image and database.
    migrate = [
        c
        for c in pod.get("initContainers") or []
        if c.get("command") == ["lindung", "migrate", name]
    ]
    if not migrate:
        problems.append(
            f"{where}: needs an init container running ['lindung', 'migrate', '{name}']"
        )
    else:
        if migrate[0].get("image") != container.get("image"):
            problems.append(f"{where}: the migrate init container must use the service's image")
        if _container_env(index, migrate[0]).get("DATABASE_URL") != env.get("DATABASE_URL"):
            problems.append(
                f"{where}: the migrate init container must use the service's DATABASE_URL"
            )
        if env.get("DATABASE_MIGRATE_ON_START", "false").lower() == "true":
            problems.append(
                f"{where}: DATABASE_MIGRATE_ON_START must be false (the init container migrates)"
            )

    if name == "registration":
        keys_file = env.get("API_KEYS_FILE", "")
        volume = _mounted_from(pod, container, keys_file) if keys_file else None
        if not volume or "secret" not in volume:
            problems.append(f"{where}: API_KEYS_FILE must be a file of a mounted Secret")
        else:
            mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
            if "subPath" in mount:
                problems.append(f"{where}: mount the API keys Secret without subPath (updates)")
            data = _secret_data(index, volume["secret"]["secretName"])
            if is_overlay and data is not None and Path(keys_file).name not in data:
                problems.append(
                    f"{where}: Secret {volume['secret']['secretName']} lacks key "
                    f"{Path(keys_file).name}"
                )
            if is_overlay and data is not None:
                try:
                    parsed = yaml.safe_load(data.get(Path(keys_file).name, "")) or {}
                    if not isinstance(parsed, dict) or not isinstance(parsed.get("keys", []), list):
                        raise ValueError("expected a mapping with a `keys` list")
                except (yaml.YAMLError, ValueError) as error:
                    problems.append(f"{where}: the API keys file is not valid: {error}")

    if is_overlay:
        problems += _reference_problems(index, where, pod)
        image = container.get("image", "")
        if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]:
            problems.append(f"{where}: pin the image tag in the overlay (images:), not {image!r}")
    problems += _pod_security_problems(pod, where)

    # A Service for the pods (registration's API, metrics for everyone).
    services = [
        o
        for (kind, _), o in index.items()
        if kind == "Service"
        and (o["spec"].get("selector") or {}).items() <= pod_labels.items()
        and o["spec"].get("selector")
    ]
    if not any(
        p.get("targetPort") in ("http", HTTP_PORT)
        for s in services
        for p in s["spec"].get("ports") or []
    ):
        problems.append(f"{where}: no Service targets its port http")
    return problems


def _scaled_object_problems(
    index: dict[tuple[str, str], dict[str, Any]], name: str, where: str, is_overlay: bool
) -> list[str]:
    problems: list[str] = []
    scaled = [
        o
        for (kind, _), o in index.items()
        if kind == "ScaledObject" and o["spec"]["scaleTargetRef"]["name"] == name
    ]
    if len(scaled) != 1:
        return [
            f"{where}: exactly one ScaledObject must target Deployment {name} (found {len(scaled)})"
        ]
    scaled_object = scaled[0]
    where = f"{where}: ScaledObject/{scaled_object['metadata']['name']}"
    spec = scaled_object["spec"]
    if spec["scaleTargetRef"].get("kind", "Deployment") != "Deployment":
        problems.append(f"{where}: must target a Deployment")
    deployment = index.get(("Deployment", name))
    container = deployment["spec"]["template"]["spec"]["containers"][0] if deployment else {}
    env = _container_env(index, container) if container else {}
    partitions = env.get("KAFKA_PARTITIONS", "")
    if spec.get("minReplicaCount") != 1:
        problems.append(f"{where}: minReplicaCount must be 1")
    if not partitions.isdigit():
        problems.append(
            f"{where}: KAFKA_PARTITIONS (ConfigMap) must say how many partitions topics have"
        )
    elif spec.get("maxReplicaCount") != int(partitions):
        problems.append(
            f"{where}: maxReplicaCount {spec.get('maxReplicaCount')} must equal the partitions per "
            f"topic (KAFKA_PARTITIONS={partitions}): more instances than partitions sit idle"
        )
    if compose_partitions() is not None and spec.get("maxReplicaCount") != compose_partitions():
        problems.append(
            f"{where}: maxReplicaCount differs from compose.yaml's "
            f"PARTITIONS ({compose_partitions()})"
        )

    expected = consumed_topics()[name]
    seen: dict[str, str] = {}
    for trigger in spec.get("triggers") or []:
        if trigger.get("type") != "kafka":
            problems.append(f"{where}: unexpected trigger type {trigger.get('type')!r}")
            continue
        metadata = trigger.get("metadata") or {}
        topic = metadata.get("topic", "")
        if topic in seen:
            problems.append(f"{where}: two triggers for topic {topic}")
        seen[topic] = metadata.get("consumerGroup", "")
        if topic not in expected:
            problems.append(f"{where}: trigger for {topic!r}, which {name} does not consume")
        elif metadata.get("consumerGroup") != expected[topic]:
            problems.append(
                f"{where}: trigger for {topic}: consumerGroup must be {expected[topic]!r} "
                f"(the runtime's group_for), not {metadata.get('consumerGroup')!r}"
            )
        if metadata.get("offsetResetPolicy") != "earliest":
            problems.append(
                f"{where}: trigger for {topic}: offsetResetPolicy must be earliest, "
                "like the consumers"
            )
        if not metadata.get("lagThreshold", "").isdigit() or int(metadata["lagThreshold"]) < 1:
            problems.append(f"{where}: trigger for {topic}: lagThreshold must be a positive number")
        if "bootstrapServersFromEnv" in metadata and not env.get(
            metadata["bootstrapServersFromEnv"]
        ):
            problems.append(
                f"{where}: bootstrapServersFromEnv {metadata['bootstrapServersFromEnv']} is not in "
                f"the environment of container {name}"
            )
        if "bootstrapServers" in metadata and metadata["bootstrapServers"] != env.get(
            "KAFKA_BOOTSTRAP_SERVERS"
        ):
            problems.append(f"{where}: bootstrapServers differs from KAFKA_BOOTSTRAP_SERVERS")
        problems += _trigger_auth_problems(index, where, topic, trigger, env, is_overlay)
    for topic in sorted(set(expected) - set(seen)):
        problems.append(f"{where}: {name} consumes {topic} but no kafka trigger watches it")
    return problems


def _trigger_auth_problems(
    index: dict[tuple[str, str], dict[str, Any]],
    where: str,
    topic: str,
    trigger: dict[str, Any],
    env: dict[str, str],
    is_overlay: bool,
) -> list[str]:
    problems: list[str] = []
    protocol = env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    reference = trigger.get("authenticationRef")
    metadata = trigger.get("metadata") or {}
    if reference is None:
        if protocol != "PLAINTEXT":
            problems.append(f"{where}: trigger for {topic}: {protocol} needs an authenticationRef")
        return problems
    kind = reference.get("kind", "TriggerAuthentication")
    auth = index.get((kind, reference["name"]))
    if auth is None:
        if kind == "TriggerAuthentication" or is_overlay:
            problems.append(f"{where}: trigger for {topic}: no {kind} {reference['name']}")
        return problems
    parameters: dict[str, str | None] = {}
    for ref in auth["spec"].get("secretTargetRef") or []:
        data = _secret_data(index, ref["name"])
        if data is None:
            if is_overlay:
                problems.append(f"{where}: {kind} {reference['name']} needs Secret {ref['name']}")
            parameters[ref["parameter"]] = None
        elif ref["key"] not in data:
            problems.append(
                f"{where}: Secret {ref['name']} has no key {ref['key']} "
                f"({kind} {reference['name']})"
            )
        else:
            parameters[ref["parameter"]] = data[ref["key"]]
    known = {
        "sasl",
        "username",
        "password",
        "tls",
        "ca",
        "cert",
        "key",
        "keyPassword",
        "unsafeSsl",
        "oauthTokenEndpointUri",
        "scopes",
        "oauthExtensions",
        "realm",
        "kerberosConfig",
        "kerberosServiceName",
        "kerberosDisableFAST",
        "keytab",
        "awsRegion",
    }
    for parameter in set(parameters) - known:
        problems.append(f"{where}: {kind} {reference['name']}: unknown kafka parameter {parameter}")
    sasl = parameters.get("sasl", metadata.get("sasl"))
    tls = parameters.get("tls", metadata.get("tls"))
    if protocol.startswith("SASL_"):
        for parameter in ("sasl", "username", "password"):
            if parameter not in parameters and parameter not in metadata:
                problems.append(f"{where}: {protocol}: KEDA needs the {parameter} parameter")
        mechanism = KEDA_SASL.get(env.get("KAFKA_SASL_MECHANISM", ""))
        if sasl is not None and mechanism and sasl != mechanism:
            problems.append(
                f"{where}: KEDA sasl={sasl!r} but the services use "
                f"{env.get('KAFKA_SASL_MECHANISM')} ({mechanism})"
            )
    wants_tls = protocol in ("SSL", "SASL_SSL")
    if tls is not None and (tls == "enable") != wants_tls:
        problems.append(
            f"{where}: KEDA tls={tls!r} disagrees with KAFKA_SECURITY_PROTOCOL={protocol}"
        )
    if wants_tls and "tls" not in parameters and "tls" not in metadata:
        problems.append(f"{where}: {protocol}: KEDA needs tls=enable")
    return problems


def _renderable() -> Iterator[tuple[str, Any, bool]]:
    """(where, objects indexed by kind and name, is an overlay) of each kustomization that
    renders; the ones that do not are reported by check_k8s_render."""
    overlays = set(overlay_dirs())
    for directory in kustomization_dirs():
        try:
            index = _index(rendered(directory))
        except (RenderError, OSError, KeyError, yaml.YAMLError):
            continue
        yield str(directory.relative_to(ROOT)), index, directory in overlays


def check_k8s_services() -> list[str]:
    """Deployments, Services, probes, resources, migrations and secrets of the four services."""
    problems: list[str] = []
    for where, index, is_overlay in _renderable():
        for name in SERVICES:
            problems += _deployment_problems(index, name, where, is_overlay)
        extra = {n for (kind, n) in index if kind == "Deployment"} - set(SERVICES)
        if extra:
            problems.append(f"{where}: unexpected Deployments {sorted(extra)}")
    return problems


def check_keda() -> list[str]:
    """A ScaledObject per service: a kafka trigger per consumed topic, with the runtime's group."""
    problems: list[str] = []
    for where, index, is_overlay in _renderable():
        for name in SERVICES:
            problems += _scaled_object_problems(index, name, where, is_overlay)
        if any(kind == "HorizontalPodAutoscaler" for kind, _ in index):
            problems.append(f"{where}: no HorizontalPodAutoscaler: KEDA creates them")
        targets = {
            o["spec"]["scaleTargetRef"]["name"]
            for (k, _), o in index.items()
            if k == "ScaledObject"
        }
        for target in sorted(targets - set(SERVICES)):
            problems.append(f"{where}: a ScaledObject targets unknown Deployment {target}")
    return problems


# ---------------------------------------------------------------------------

CHECKS: dict[str, Callable[[], list[str]]] = {
    "compose-schema": check_compose_schema,
    "compose-stack": check_compose_stack,
    "otel-collector": check_otel_collector,
    "prometheus": check_prometheus,
    "prometheus-promtool": check_prometheus_promtool,
    "grafana": check_grafana,
    "metrics-match-runtime": check_metrics_match_runtime,
    "k8s-render": check_k8s_render,
    "k8s-render-matches-kubectl": check_k8s_render_matches_kubectl,
    "k8s-schemas": check_k8s_schemas,
    "k8s-services": check_k8s_services,
    "keda": check_keda,
}


def run(name: str) -> tuple[str, list[str]]:
    """('ok' | 'skip' | 'fail', messages) of one check; an exception is a failure."""
    try:
        problems = CHECKS[name]()
    except Skip as skip:
        return "skip", [str(skip)]
    except Exception as error:  # a crash is a failed check, loudly
        return "fail", [f"crashed: {type(error).__name__}: {error}"]
    return ("fail", problems) if problems else ("ok", [])


def main() -> int:
    failed = 0
    for name in CHECKS:
        status, messages = run(name)
        print(f"{status.upper():4} {name}")
        for message in messages:
            print(f"       {message}")
        failed += status == "fail"
    if failed:
        print(f"\n{failed} check(s) FAILED", file=sys.stderr)
        return 1
    print("\nall deploy/ checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
