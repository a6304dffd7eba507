"""Kafka security settings reach every client the same way: aiokafka clients and FastStream's
broker (TLS, SASL/SCRAM); PLAINTEXT adds nothing."""

from __future__ import annotations

import ssl

import pytest
from faststream.kafka.security import parse_security

from lindung_runtime.kafka import broker_security, client_options
from lindung_runtime.settings import LindungSettings


def test_plaintext_adds_no_options() -> None:
    settings = LindungSettings()
    assert client_options(settings) == {}
    assert broker_security(settings) is None


def test_sasl_scram_over_tls_reaches_aiokafka_and_faststream_alike() -> None:
    settings = LindungSettings(
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKA_SASL_USERNAME="lindung-billing",
        KAFKA_SASL_PASSWORD="s3cret",
    )
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "lindung-billing",
        "s3cret",
    )
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    parsed = parse_security(broker_security(settings))
    assert {k: parsed[k] for k in ("security_protocol", "sasl_mechanism")} == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
    }
    assert parsed["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(settings)  # the password is a secret in logs and reprs


def test_sasl_without_credentials_fails_loudly() -> None:
    settings = LindungSettings(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT")
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME"):
        client_options(settings)


def test_tls_only_gives_an_ssl_context_and_no_sasl() -> None:
    settings = LindungSettings(KAFKA_SECURITY_PROTOCOL="SSL")
    options = client_options(settings)
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    assert parse_security(broker_security(settings))["security_protocol"] == "SSL"
