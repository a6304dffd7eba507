"""deploy/: Compose, Kubernetes (Kustomize + KEDA), the collector, Prometheus and Grafana configs.

The checks live in deploy/validate.py (also run as `.venv/bin/python deploy/validate.py`); each
is one test here. All offline: JSON schemas shipped by kubernetes-validate and check-jsonschema,
and the services' own wiring for topics and consumer groups.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_validate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_validate", ROOT / "deploy/validate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


validate = _load_validate()


@pytest.mark.parametrize("check", list(validate.CHECKS))
def test_deploy_check(check: str) -> None:
    status, messages = validate.run(check)
    if status == "skip":
        pytest.skip(messages[0])
    assert status == "ok", f"deploy/validate.py check {check!r} failed:\n" + "\n".join(messages)


def test_a_topic_without_kafka_trigger_or_topic_creation_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cross-checks bite: pretend billing consumes one more topic than deploy/ knows of."""
    consumed = {name: dict(topics) for name, topics in validate.consumed_topics().items()}
    consumed["billing"]["billing.brand-new"] = "lindung-billing.billing.brand-new"
    monkeypatch.setattr(validate, "consumed_topics", lambda: consumed)

    keda = "\n".join(validate.check_keda())
    assert "billing consumes billing.brand-new but no kafka trigger watches it" in keda
    compose = "\n".join(validate.check_compose_stack())
    assert "kafka-init lacks billing.brand-new.dlq" in compose


def test_a_consumer_group_other_than_the_runtimes_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumed = {name: dict(topics) for name, topics in validate.consumed_topics().items()}
    consumed["notification"]["coverage.expiring"] = "lindung-notification-v2.coverage.expiring"
    monkeypatch.setattr(validate, "consumed_topics", lambda: consumed)

    assert any(
        "consumerGroup must be 'lindung-notification-v2.coverage.expiring'" in problem
        for problem in validate.check_keda()
    )


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(http_requests_total[5m])", "unknown metric 'http_requests_total'"),
        ("sum by (pod) (lindung_outbox_backlog)", "label 'pod'"),
        ('lindung_consumer_lag{group="x"}', "matcher on 'group'"),
    ],
)
def test_dashboard_queries_outside_the_lindung_metrics_are_reported(
    expr: str, problem: str
) -> None:
    problems, _ = validate.promql_problems(expr, "panel")
    assert any(problem in p for p in problems), problems


def test_histogram_series_and_le_are_accepted() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, service, topic) "
        '(rate(lindung_handler_duration_seconds_bucket{service=~"$service"}[5m])))'
    )
    problems, used = validate.promql_problems(expr, "panel")
    assert problems == []
    assert used == {"lindung_handler_duration_seconds"}
