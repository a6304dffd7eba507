"""Who may send what: deploy/ (Compose, Kubernetes) against contracts/lindung_contracts/access.py.

Each service and upstream system logs in to Kafka as its own SCRAM user; the ACLs of
deploy/k8s/base/kafka/acls (applied by kafka-setup.sh, in Compose and as a Kubernetes Job) give
each exactly the writes of the access table, the reads of what it consumes, and nobody but the
admin may create topics.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

from lindung_contracts import topics
from lindung_contracts.access import ACCESS, OPERATOR, SERVICES, acl_writers, service_principal
from lindung_runtime.operations import replay_group

from .deploy_support import (
    DEPLOY,
    KAFKA_SETUP,
    KEDA,
    OVERLAY,
    PRINCIPALS,
    ROOT,
    Acl,
    acl_table_markdown,
    acls_in_deploy,
    compose,
    compose_env,
    consumed_topics,
    container_env,
    expected_acls,
    find,
    password_variable,
    render,
    secret_name,
)


def test_the_acl_table_grants_exactly_what_the_access_table_says() -> None:
    deployed = acls_in_deploy()
    assert len(deployed) == len(set(deployed)), "a grant is listed twice"
    expected = expected_acls()
    missing = sorted(expected - set(deployed))
    extra = sorted(set(deployed) - expected)
    assert not missing and not extra, (
        "deploy/k8s/base/kafka/acls differs from access.py:\n"
        + "".join(f"  missing: {acl.line()}\n" for acl in missing)
        + "".join(f"  not in access.py: {acl.line()}\n" for acl in extra)
    )
    # Spelled out, the two facts that matter most:
    for topic in topics.ALL:
        writers = {a.principal for a in deployed if a.operation == "Write" and a.name == topic}
        assert writers == set(acl_writers(topic)), topic


def test_no_principal_may_create_alter_or_delete() -> None:
    """Only the admin (a super user, not in the table) creates topics; a forged or buggy client
    can neither create a topic nor change one."""
    for acl in acls_in_deploy():
        assert acl.operation in {"Read", "Write", "Describe"}, acl
        assert acl.resource in {"topic", "group"}, acl  # no Cluster (CreateTopics) grant
        assert acl.name not in {"*", ""}, acl
        if acl.principal == KEDA:
            assert acl.operation == "Describe", acl
        if acl.resource == "topic":
            assert acl.pattern == "literal", acl
    assert {acl.principal for acl in acls_in_deploy()} == set(PRINCIPALS)


def test_services_read_exactly_what_they_consume_with_their_own_groups() -> None:
    """From the code: every route of `create_service` is a reader in access.py, READ is granted on
    exactly access.py's reads, and the runtime's consumer group of each route (`group_for`) falls
    under the service's group prefix and no other principal's."""
    deployed = acls_in_deploy()
    groups = [a for a in deployed if a.resource == "group"]
    for service, routes in consumed_topics().items():
        principal = service_principal(service)
        readers_topics = {t for t in topics.ALL if service in ACCESS[t].readers}
        assert set(routes) <= readers_topics, f"{service} consumes topics access.py does not grant"
        granted = {
            a.name
            for a in deployed
            if a.principal == principal and a.operation == "Read" and a.resource == "topic"
        }
        assert granted == readers_topics, service
        for topic, group in routes.items():
            owners = {
                a.principal
                for a in groups
                if a.operation == "Read"
                and (group == a.name if a.pattern == "literal" else group.startswith(a.name))
            }
            assert owners == {principal}, (
                f"group {group} ({service}, {topic}) is readable by {owners}"
            )
    for topic in topics.ALL:
        group = replay_group(topic)
        owners = {a.principal for a in groups if a.operation == "Read" and group.startswith(a.name)}
        assert owners == {OPERATOR}, group


def test_every_principal_has_its_own_user_and_secret() -> None:
    # Compose: kafka-init knows every user's password, each service logs in as itself.
    init = compose_env("kafka-init")
    for principal in PRINCIPALS:
        assert init.get(password_variable(principal)), f"kafka-init: no password for {principal}"
    for service in SERVICES:
        env = compose_env(service)
        assert env["KAFKA_SECURITY_PROTOCOL"].startswith("SASL_"), service
        assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", service
        assert env["KAFKA_SASL_USERNAME"] == service_principal(service), service
        assert env["KAFKA_SASL_PASSWORD"] == init[password_variable(service_principal(service))]

    # Kubernetes: one Secret per user; each Deployment, the setup Job and KEDA use their own.
    objects = render(OVERLAY)
    for principal in PRINCIPALS:
        secret = find(objects, "Secret", secret_name(principal))
        assert set(secret["data"]) >= {"username", "password"}, principal
        assert base64.b64decode(secret["data"]["username"]).decode() == principal
    job = find(objects, "Job", "lindung-kafka-setup")["spec"]["template"]["spec"]["containers"][0]
    job_env = container_env(objects, job)
    for principal in PRINCIPALS:
        ref = job_env[password_variable(principal)]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (secret_name(principal), "password"), principal
    for variable in ("KAFKA_ADMIN_USERNAME", "KAFKA_ADMIN_PASSWORD"):
        assert job_env[variable]["secretKeyRef"]["name"] == "lindung-kafka-admin"
    for service in SERVICES:
        deployment = find(objects, "Deployment", service)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        pod_env = container_env(objects, container)
        assert pod_env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        for variable, key in (
            ("KAFKA_SASL_USERNAME", "username"),
            ("KAFKA_SASL_PASSWORD", "password"),
        ):
            ref = pod_env[variable]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == (secret_name(service_principal(service)), key)
    auth = [o for o in objects if o["kind"] == "TriggerAuthentication"]
    assert [a["metadata"]["name"] for a in auth] == ["lindung-keda"]
    credentials = {r["parameter"]: r["name"] for r in auth[0]["spec"]["secretTargetRef"]}
    assert credentials["username"] == credentials["password"] == secret_name(KEDA)
    for scaled in (o for o in objects if o["kind"] == "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["authenticationRef"]["name"] == "lindung-keda"


def test_the_compose_broker_enforces_the_acls() -> None:
    kafka = compose_env("kafka")
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert kafka["KAFKA_SUPER_USERS"] == "User:admin"
    assert kafka.get("KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND", "false") == "false"
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    protocols = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols.values()) <= {"SASL_PLAINTEXT", "SASL_SSL"}, "an anonymous listener"
    assert "SCRAM-SHA-512" in kafka["KAFKA_LISTENER_NAME_SASL_SASL_ENABLED_MECHANISMS"]


def test_topics_are_created_by_the_setup_job_only() -> None:
    listed = [
        line.strip()
        for line in (KAFKA_SETUP / "topics").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(listed) == sorted(
        {t for topic in topics.ALL for t in (topic, topics.dead_letter_topic(topic))}
    )
    for service in SERVICES:
        assert compose_env(service)["KAFKA_CREATE_TOPICS"] == "false", service
    init = compose()["services"]["kafka-init"]
    assert init["entrypoint"][-1] == "/etc/lindung/kafka/kafka-setup.sh"
    assert "./k8s/base/kafka:/etc/lindung/kafka:ro" in init["volumes"]
    objects = render(OVERLAY)
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container_env(objects, container)["KAFKA_CREATE_TOPICS"] == "false"
    job = find(objects, "Job", "lindung-kafka-setup")["spec"]["template"]["spec"]
    assert job["containers"][0]["command"][-1] == "/etc/lindung/kafka/kafka-setup.sh"
    setup = next(o for o in objects if o["metadata"]["name"].startswith("lindung-kafka-setup-"))
    for name in ("kafka-setup.sh", "topics", "acls"):
        assert setup["data"][name] == (KAFKA_SETUP / name).read_text(), name


def test_the_setup_script_turns_the_tables_into_kafka_calls(tmp_path: Path) -> None:
    """kafka-setup.sh against stand-ins for the Kafka tools that record their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    for tool in ("kafka-configs.sh", "kafka-topics.sh", "kafka-acls.sh"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n')
        script.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "KAFKA_BIN": str(bin_dir),
        "WORK_DIR": str(tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_ADMIN_USERNAME": "admin",
        "KAFKA_ADMIN_PASSWORD": "admin-secret",
        "KAFKA_PARTITIONS": "6",
        "KAFKA_REPLICATION_FACTOR": "1",
        **{password_variable(p): f"pw-{p}" for p in PRINCIPALS},
    }
    result = subprocess.run(
        ["/bin/sh", str(KAFKA_SETUP / "kafka-setup.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    users = {c.split("--entity-name ")[1].split()[0] for c in calls if "kafka-configs.sh" in c}
    assert users == set(PRINCIPALS)
    assert any("SCRAM-SHA-512=[iterations=8192,password=pw-lindung-payment]" in c for c in calls)
    created = {c.split("--topic ")[1].split()[0] for c in calls if "kafka-topics.sh" in c}
    assert created == {t for topic in topics.ALL for t in (topic, topics.dead_letter_topic(topic))}
    granted: set[Acl] = set()
    for call in calls:
        if not call.startswith("kafka-acls.sh") or "--add" not in call:
            continue
        words = call.split()
        principal = words[words.index("--allow-principal") + 1].removeprefix("User:")
        operation = words[words.index("--operation") + 1]
        pattern = words[words.index("--resource-pattern-type") + 1]
        for i, word in enumerate(words):
            if word in ("--topic", "--group"):
                granted.add(Acl(principal, operation, word[2:], pattern, words[i + 1]))
    assert granted == set(acls_in_deploy())
    admin = (tmp_path / "admin.properties").read_text()
    assert 'username="admin" password="admin-secret"' in admin

    del env[password_variable("lindung-village")]
    result = subprocess.run(
        ["/bin/sh", str(KAFKA_SETUP / "kafka-setup.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "LINDUNG_VILLAGE_PASSWORD" in result.stderr


def test_the_security_docs_acl_table_is_the_access_table() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    start, end = "<!-- acl-table -->", "<!-- /acl-table -->"
    assert start in text and end in text, f"docs/security.md has no {start} ... {end} section"
    table = text.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == acl_table_markdown(), (
        "docs/security.md's ACL table is stale:\n" + acl_table_markdown()
    )


def test_deploy_readme_names_every_kafka_secret() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for principal in (*PRINCIPALS, "admin"):
        name = secret_name(principal) if principal != "admin" else "lindung-kafka-admin"
        assert f"`{name}`" in readme, name
