"""Kafka over TLS: stunnel terminates TLS in front of the embedded broker, which advertises the TLS port."""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError

from schemas.disputes import DISPUTES_REPORTED, DISPUTES_TRIAGED, DisputeTriaged
from services.runtime.kafka import client_options, ssl_context
from services.runtime.settings import KafkaSettings
from services.runtime.topics import contract_topics, ensure_topics
from tests.conftest import fresh_prefix
from tests.support.processes import TEST_ENVIRONMENT, produce, read_all, start_service
from tests.support.samples import report_payload
from tests.support.tls import HOST, TlsBroker, make_authority


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory) -> Iterator[TlsBroker]:
    """Start the embedded broker behind stunnel for this module's tests."""
    with TlsBroker(tmp_path_factory.mktemp("tls")) as broker:
        yield broker


@pytest.fixture(scope="module")
def mutual_tls_broker(tmp_path_factory) -> Iterator[TlsBroker]:
    """Start the embedded broker behind a stunnel that also requires a client certificate from the test CA."""
    with TlsBroker(tmp_path_factory.mktemp("mtls"), mutual=True) as broker:
        yield broker


def _triage_env(tls_broker: TlsBroker, kafka: KafkaSettings, tmp_path) -> dict[str, str]:
    client = {"KAFKA_SSL_CERTFILE": str(kafka.ssl_certfile), "KAFKA_SSL_KEYFILE": str(kafka.ssl_keyfile)} if kafka.ssl_certfile else {}
    return client | {
        "KAFKA_BOOTSTRAP_SERVERS": tls_broker.bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CAFILE": str(kafka.ssl_cafile),
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "TRIAGE_GROUP_ID": f"triage-{uuid.uuid4().hex[:8]}",
        "TRIAGE_HMAC_KEY": "test-hmac-key-of-32-bytes-0123456",
        "TRIAGE_DATA_DIR": str(tmp_path / "var"),
    }


@pytest.mark.parametrize("mutual", [False, True], ids=["server-certificate", "client-certificate-too"])
async def test_triage_verifies_the_broker_certificate_and_triages_a_report_over_tls(request, tmp_path, mutual):
    tls_broker: TlsBroker = request.getfixturevalue("mutual_tls_broker" if mutual else "tls_broker")
    bootstrap = tls_broker.bootstrap_servers
    client_cert, client_key = tls_broker.client_cert or (None, None)
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap,
        security_protocol="SSL",
        ssl_cafile=tls_broker.authority.cert_path,
        ssl_certfile=client_cert,
        ssl_keyfile=client_key,
        topic_prefix=fresh_prefix(),
    )
    tls = ssl_context(kafka)
    if mutual:  # the terminator really asks: without the client certificate no request is answered
        with pytest.raises(KafkaConnectionError):
            await ensure_topics(kafka.model_copy(update={"ssl_certfile": None, "ssl_keyfile": None}), bootstrap, contract_topics(partitions=2))
    await ensure_topics(kafka, bootstrap, contract_topics(partitions=2))

    # After bootstrap clients go where the metadata points: only the TLS port may be there, or they would bypass stunnel.
    client = AIOKafkaClient(**client_options(kafka, bootstrap))
    await client.bootstrap()
    try:
        assert {(b.host, b.port) for b in client.cluster.brokers()} == {(HOST, tls_broker.tls_port)}
    finally:
        await client.close()

    service = start_service("triage", _triage_env(tls_broker, kafka, tmp_path), tmp_path)
    try:
        await service.wait_ready()
        report = report_payload(event_id="tls-1", dispute_id="D-tls")
        await produce(bootstrap, kafka.topic(DISPUTES_REPORTED), [(b"D-tls", json.dumps(report).encode())], tls=tls)
        triaged: list[DisputeTriaged] = []

        async def triaged_over_tls() -> bool:
            triaged[:] = [DisputeTriaged.model_validate_json(r.value) for r in await read_all(bootstrap, [kafka.topic(DISPUTES_TRIAGED)], tls=tls)]
            return bool(triaged)

        await service.wait_for(triaged_over_tls, 60)
        assert [(t.source_event_id, t.dispute_id) for t in triaged] == [("tls-1", "D-tls")]
    finally:
        assert service.stop() == 0, service.log_tail()


@pytest.mark.parametrize(
    ("command", "cafile", "said"),
    [
        ("triage", "wrong-ca", "triage cannot start: the broker at {bootstrap} presented a certificate that failed verification"),
        ("triage", "missing-ca", "triage cannot start: cannot load the TLS files (KAFKA_SSL_CAFILE="),
        ("topics create", "wrong-ca", "fengqiao topics create: the broker at {bootstrap} presented a certificate that failed verification"),
    ],
    ids=["triage-wrong-ca", "triage-missing-ca", "topics-wrong-ca"],
)
def test_a_broker_certificate_that_does_not_verify_stops_the_command_with_one_clear_line(tls_broker, tmp_path, command, cafile, said):
    path = make_authority(tmp_path, "wrong-ca").cert_path if cafile == "wrong-ca" else tmp_path / "no-such-ca.pem"
    kafka = KafkaSettings(bootstrap_servers=tls_broker.bootstrap_servers, ssl_cafile=path, topic_prefix=fresh_prefix())
    env = os.environ | TEST_ENVIRONMENT | _triage_env(tls_broker, kafka, tmp_path) | {"TRIAGE_HTTP_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "services.runtime", *command.split()], env=env, capture_output=True, timeout=60, check=False
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert said.format(bootstrap=tls_broker.bootstrap_servers) in stderr and str(path) in stderr, stderr
    if cafile == "wrong-ca":
        assert "certificate verify failed: unable to get local issuer certificate" in stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1, stderr
