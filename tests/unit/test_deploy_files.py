"""deploy/: the Compose file and the Kubernetes manifests (rendered by the real `kubectl kustomize`)
against their schemas, and against the code: consumed topics and consumer groups, partitions
and replicas, ports, metric names. The Kafka users and ACLs: test_deploy_access.py."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from lindung_contracts.access import ACCESS, SERVICES
from lindung_runtime.metrics import ServiceMetrics

from .deploy_support import (
    ADMIN_PORT,
    DEPLOY,
    HTTP_PORT,
    K8S,
    OVERLAY,
    compose,
    compose_env,
    consumed_topics,
    container_env,
    find,
    render,
)

#: The oldest and newest Kubernetes versions whose schemas every manifest must satisfy.
K8S_VERSIONS = ("1.29", "1.33")
KEDA_SCHEMAS = {
    "ScaledObject": "keda-scaledobject",
    "TriggerAuthentication": "keda-triggerauthentication",
}


def _schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


@pytest.mark.parametrize(
    "directory", sorted(p.parent for p in K8S.rglob("kustomization.yaml")), ids=str
)
def test_kustomizations_render_and_match_the_schemas(directory: Any) -> None:
    problems = []
    for obj in render(directory):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith("keda.sh/"):
            file = DEPLOY / "schemas" / f"{KEDA_SCHEMAS[obj['kind']]}.schema.json"
            problems += [f"{where}: {e}" for e in _schema_errors(json.loads(file.read_text()), obj)]
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                problems.append(f"{where} ({version}): {'/'.join(map(str, error.path))}: {error}")
    assert not problems, "\n".join(problems)


def test_compose_matches_the_compose_specification() -> None:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text(encoding="utf-8"))
    assert _schema_errors(schema, compose()) == []


def test_scaled_objects_watch_every_consumed_topic_with_the_runtimes_group() -> None:
    """One kafka trigger per consumed topic (`service.routes`), on its `group_for` group;
    routes ⊆ triggers ⊆ access.py's readers (a consumer being added may come after its trigger)."""
    objects = render(OVERLAY)
    for service, routes in consumed_topics().items():
        scaled = [
            o
            for o in objects
            if o["kind"] == "ScaledObject" and o["spec"]["scaleTargetRef"]["name"] == service
        ]
        assert len(scaled) == 1, service
        triggers = {t["metadata"]["topic"]: t["metadata"] for t in scaled[0]["spec"]["triggers"]}
        assert set(routes) <= set(triggers), (
            f"{service}: no trigger for {set(routes) - set(triggers)}"
        )
        assert {t for t in triggers if service not in ACCESS[t].readers} == set(), service
        for topic, metadata in triggers.items():
            assert metadata["consumerGroup"] == f"lindung-{service}.{topic}", (service, topic)
            if topic in routes:
                assert metadata["consumerGroup"] == routes[topic], (service, topic)
            assert metadata["offsetResetPolicy"] == "earliest", (service, topic)


def test_max_replicas_equal_the_partitions_everywhere() -> None:
    objects = render(OVERLAY)
    partitions = int(find(objects, "ConfigMap", "lindung-config")["data"]["KAFKA_PARTITIONS"])
    assert int(compose_env("kafka-init")["KAFKA_PARTITIONS"]) == partitions
    for scaled in (o for o in objects if o["kind"] == "ScaledObject"):
        assert scaled["spec"]["maxReplicaCount"] == partitions, scaled["metadata"]["name"]


def test_probes_and_scraping_use_the_admin_port() -> None:
    objects = render(OVERLAY)
    for service in SERVICES:
        deployment = find(objects, "Deployment", service)
        pod = deployment["spec"]["template"]
        container = pod["spec"]["containers"][0]
        env = container_env(objects, container)
        assert env["ADMIN_PORT"] == str(ADMIN_PORT)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == (
            {"http": HTTP_PORT, "admin": ADMIN_PORT}
            if service == "registration"
            else {"admin": ADMIN_PORT}
        ), service
        for probe, path in (
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ):
            assert container[probe]["httpGet"] == {"path": path, "port": "admin"}, (service, probe)
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ADMIN_PORT)
        exposed = {
            p["name"]: p["targetPort"] for p in find(objects, "Service", service)["spec"]["ports"]
        }
        assert exposed.get("admin") == "admin", service
        assert ("http" in exposed) == (service == "registration"), service
    for service in SERVICES:
        env = compose_env(service)
        assert env["ADMIN_PORT"] == str(ADMIN_PORT)
        test = " ".join(compose()["services"][service]["healthcheck"]["test"])
        assert f"127.0.0.1:{ADMIN_PORT}/readyz" in test, service
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    scraped = {
        (name, dns["port"])
        for job in prometheus["scrape_configs"]
        for dns in job.get("dns_sd_configs", [])
        for name in dns["names"]
    }
    assert scraped >= {(service, ADMIN_PORT) for service in SERVICES}


def test_registration_spools_imports_on_a_volume_big_enough() -> None:
    objects = render(OVERLAY)
    pod = find(objects, "Deployment", "registration")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = container_env(objects, container)
    import_dir, max_bytes = env["IMPORT_DIR"], int(env["IMPORT_MAX_BYTES"])
    assert not import_dir.startswith("/tmp")
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == import_dir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = find(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    size = claim["spec"]["resources"]["requests"]["storage"]
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi|Ti)", size).groups()  # type: ignore[union-attr]
    assert int(number) * {"Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[unit] >= max_bytes


def test_the_dashboard_uses_only_metrics_the_runtime_exports() -> None:
    suffixes = {
        "counter": ("", "_total"),
        "histogram": ("", "_bucket", "_sum", "_count"),
        "gauge": ("",),
    }
    exported = {
        family.name + suffix
        for family in ServiceMetrics("test").registry.collect()
        for suffix in suffixes[family.type]
    }
    text = (DEPLOY / "grafana" / "lindung-dashboard.json").read_text()
    used = set(re.findall(r"\blindung_[a-z0-9_]+", text))
    assert used, "the dashboard shows no Lindung metric"
    assert used <= exported, f"not exported by lindung_runtime.metrics: {sorted(used - exported)}"
