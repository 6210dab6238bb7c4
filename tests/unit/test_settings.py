"""Settings come from the environment and turn into correct Kafka client configuration."""

import re
import ssl

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faststream.security import SASLScram256, SASLScram512
from pydantic import ValidationError

from services.runtime.kafka import TlsSetupError, client_options, faststream_security, ssl_context
from services.runtime.settings import KafkaSettings, ServiceSettings
from services.triage.settings import TriageSettings
from services.triage.signing import public_key_text


class TriageLikeSettings(ServiceSettings):
    model_config = {"env_prefix": "TRIAGE_"}


def test_kafka_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "triage")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    settings = KafkaSettings()
    assert settings.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert "s3cret" not in repr(settings)
    options = client_options(settings, settings.bootstrap_servers)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "triage"
    assert options["sasl_plain_password"] == "s3cret"
    security = faststream_security(settings)
    assert isinstance(security, SASLScram512) and not security.use_ssl


def test_sasl_needs_credentials():
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256")


def test_mechanism_without_sasl_protocol_is_refused():
    with pytest.raises(ValidationError, match="needs KAFKA_SECURITY_PROTOCOL"):
        KafkaSettings(sasl_mechanism="PLAIN")


def test_plaintext_has_no_security_object():
    settings = KafkaSettings()
    assert faststream_security(settings) is None
    assert "ssl_context" not in client_options(settings, "localhost:9092")


def test_sasl_ssl_uses_tls_with_the_system_trust_store():
    settings = KafkaSettings(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="u", sasl_password="p"
    )
    security = faststream_security(settings)
    assert isinstance(security, SASLScram256) and security.use_ssl
    assert isinstance(client_options(settings, "k:9093")["ssl_context"], ssl.SSLContext)


def test_topic_prefix_namespaces_every_topic():
    assert KafkaSettings(topic_prefix="city-a.").topic("disputes.reported") == "city-a.disputes.reported"


def test_service_settings_use_their_prefix_and_the_shared_database_url(monkeypatch, tmp_path):
    monkeypatch.setenv("TRIAGE_BATCH_SIZE", "250")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://127.0.0.1/test")
    settings = TriageLikeSettings(data_dir=tmp_path)
    assert settings.batch_size == 250
    assert settings.database_url == "postgresql+asyncpg://127.0.0.1/test"
    assert settings.sqlite_default("triage") == f"sqlite+aiosqlite:///{tmp_path}/triage.db"



DEVELOPMENT_KEY = "fengqiao-development-only-key"
# Production also needs a rules signing key; a valid one keeps these tables about the HMAC key and the database.
RULES_KEY = public_key_text(Ed25519PrivateKey.generate().public_key())


@pytest.mark.parametrize(
    ("environment", "key", "refusal"),
    [
        ("development", None, None),  # a newcomer runs with no secrets
        ("development", DEVELOPMENT_KEY, None),
        ("development", "short", None),
        ("production", None, "TRIAGE_HMAC_KEY is required"),
        ("production", DEVELOPMENT_KEY, "the development key"),
        ("production", "CHANGE-ME-to-a-random-secret", "CHANGE-ME placeholder"),
        ("production", "change-me-" + "x" * 40, "CHANGE-ME placeholder"),
        ("production", "", "has 0 bytes"),
        ("production", "x" * 31, "has 31 bytes; production needs at least 32"),
        ("production", "x" * 32, None),
        ("production", "键" * 11, None),  # bytes count, not characters: 33 bytes in UTF-8
        ("production", "键" * 10, "has 30 bytes"),
    ],
)
def test_production_refuses_weak_and_known_hmac_keys(environment, key, refusal):
    values = {"FENGQIAO_ENV": environment, "DATABASE_URL": None, "rules_public_keys": RULES_KEY}
    values |= {"hmac_key": key} if key is not None else {}
    if refusal is None:
        assert TriageSettings(**values).environment == environment
        return
    with pytest.raises(ValidationError, match=re.escape(refusal)) as refused:
        TriageSettings(**values)
    assert not key or key not in str(refused.value), "a refusal must not quote the key"


@pytest.mark.parametrize(
    ("environment", "url", "refused"),
    [
        ("production", "postgresql+asyncpg://fengqiao:CHANGE-ME@postgres:5432/fengqiao", True),
        ("production", "postgresql+asyncpg://fengqiao:Ab3-real-password@postgres:5432/fengqiao", False),
        ("production", "postgresql+asyncpg://postgres@127.0.0.1:5432/fengqiao", False),  # no password: trust or peer auth
        ("production", None, False),
        ("development", "postgresql+asyncpg://fengqiao:CHANGE-ME@postgres:5432/fengqiao", False),
    ],
)
def test_production_refuses_the_manifests_placeholder_database_password(environment, url, refused):
    values = {"FENGQIAO_ENV": environment, "DATABASE_URL": url}
    if not refused:
        assert TriageLikeSettings(**values).database_url == url
        return
    with pytest.raises(ValidationError, match="CHANGE-ME password") as error:
        TriageLikeSettings(**values)
    assert url not in str(error.value)


def test_refused_settings_never_quote_their_input():
    with pytest.raises(ValidationError) as error:
        KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_password="pa55-word-in-env")
    assert "pa55-word-in-env" not in str(error.value)


@pytest.mark.parametrize(
    ("files", "said"),
    [
        ({"ssl_cafile": "absent.pem"}, "KAFKA_SSL_CAFILE={tmp}/absent.pem"),
        ({"ssl_cafile": "garbage.pem"}, "KAFKA_SSL_CAFILE={tmp}/garbage.pem"),
        ({"ssl_certfile": "absent.pem", "ssl_keyfile": "absent.key"}, "KAFKA_SSL_CERTFILE={tmp}/absent.pem"),
    ],
    ids=["missing-ca", "ca-not-pem", "missing-client-cert"],
)
def test_unreadable_tls_files_are_named_before_any_connection(tmp_path, files, said):
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    settings = KafkaSettings(security_protocol="SSL", **{name: tmp_path / file for name, file in files.items()})
    with pytest.raises(TlsSetupError, match="cannot load the TLS files") as refused:
        ssl_context(settings)
    assert said.format(tmp=tmp_path) in str(refused.value)


def test_tls_checks_the_brokers_host_name_against_the_trusted_cas():
    context = ssl_context(KafkaSettings(security_protocol="SSL"))
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
