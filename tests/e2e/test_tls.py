"""Kafka over TLS: stunnel terminates TLS in front of the embedded broker, which advertises the TLS port."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError

from schemas.disputes import DISPUTES_REPORTED, DISPUTES_TRIAGED, DisputeTriaged
from schemas.followups import FollowupDue, due_topic
from services.runtime.kafka import client_options, ssl_context
from services.runtime.settings import KafkaSettings
from services.runtime.topics import contract_topics, ensure_topics
from tests.conftest import fresh_prefix
from tests.support.conditions import wait_for
from tests.support.department import Department, followup_messages, report
from tests.support.loop import ANSWERING_SPEED, SERVICES, START
from tests.support.processes import TEST_ENVIRONMENT, produce, read_all, services_env, start_service
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


def _services_env(tls_broker: TlsBroker, kafka: KafkaSettings, tmp_path) -> dict[str, str]:
    """Return triage's, dispatch's and follow-up's environment: SSL verified by the test CA, each its own group and data."""
    client = {"KAFKA_SSL_CERTFILE": str(kafka.ssl_certfile), "KAFKA_SSL_KEYFILE": str(kafka.ssl_keyfile)} if kafka.ssl_certfile else {}
    return services_env(tls_broker.bootstrap_servers, kafka.topic_prefix, tmp_path / "var", *SERVICES) | client | {
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CAFILE": str(kafka.ssl_cafile),
        "TRIAGE_HMAC_KEY": "test-hmac-key-of-32-bytes-0123456",
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

    service = start_service("triage", _services_env(tls_broker, kafka, tmp_path), tmp_path)
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


async def test_a_report_goes_through_triage_dispatch_and_follow_up_all_over_tls(tls_broker, tmp_path):
    bootstrap = tls_broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=bootstrap, security_protocol="SSL", ssl_cafile=tls_broker.authority.cert_path, topic_prefix=fresh_prefix())
    tls = ssl_context(kafka)
    await ensure_topics(kafka, bootstrap, contract_topics(partitions=2))
    # A fast simulated clock: the revisit a resolved order schedules comes due a simulated day later, in seconds.
    env = _services_env(tls_broker, kafka, tmp_path) | {
        "FENGQIAO_CLOCK_SPEED": str(ANSWERING_SPEED),
        "FENGQIAO_CLOCK_EPOCH": datetime.now(timezone.utc).isoformat(),
        "FENGQIAO_CLOCK_START": START,
        "FOLLOWUP_REVISIT_DAYS": "[1]",
    }
    services = {name: start_service(name, env, tmp_path) for name in SERVICES}
    try:
        for service in services.values():
            await service.wait_ready()
        # Triage grades the report, dispatch issues the order on the police's topic and takes its update, follow-up
        # times the revisit from dispatch's event and fires it on the police's due topic: every hop through stunnel.
        department = Department(bootstrap, kafka, tls=tls)
        await report(bootstrap, kafka, "D-tls-chain", tls=tls)
        order = await department.wait_order("D-tls-chain", "community_police", 1)
        await department.update(order, "resolved")

        async def revisit_due() -> list[FollowupDue]:
            messages = await followup_messages(bootstrap, kafka, [due_topic("community_police")], tls=tls)
            return [m for m in messages if isinstance(m, FollowupDue) and m.kind == "revisit" and m.dispute_id == "D-tls-chain"]

        await wait_for(revisit_due, 60)
        [due] = await revisit_due()
        # A revisit is of the dispute, not of one order: it names the department that led the resolved order.
        assert (due.dispute_id, due.department, due.revisit_number) == (order.dispute_id, order.department, 1)
    finally:
        for name in reversed(SERVICES):
            assert services[name].stop() == 0, services[name].log_tail()


@pytest.mark.parametrize(
    ("command", "cafile", "said"),
    [
        ("triage", "wrong-ca", "triage cannot start: the broker at {bootstrap} presented a certificate that failed verification"),
        ("triage", "missing-ca", "triage cannot start: cannot load the TLS files (KAFKA_SSL_CAFILE="),
        ("dispatch", "wrong-ca", "dispatch cannot start: the broker at {bootstrap} presented a certificate that failed verification"),
        ("followup", "wrong-ca", "followup cannot start: the broker at {bootstrap} presented a certificate that failed verification"),
        ("topics create", "wrong-ca", "fengqiao topics create: the broker at {bootstrap} presented a certificate that failed verification"),
    ],
    ids=["triage-wrong-ca", "triage-missing-ca", "dispatch-wrong-ca", "followup-wrong-ca", "topics-wrong-ca"],
)
def test_a_broker_certificate_that_does_not_verify_stops_the_command_with_one_clear_line(tls_broker, tmp_path, command, cafile, said):
    path = make_authority(tmp_path, "wrong-ca").cert_path if cafile == "wrong-ca" else tmp_path / "no-such-ca.pem"
    kafka = KafkaSettings(bootstrap_servers=tls_broker.bootstrap_servers, ssl_cafile=path, topic_prefix=fresh_prefix())
    env = os.environ | TEST_ENVIRONMENT | _services_env(tls_broker, kafka, tmp_path) | {f"{s.upper()}_HTTP_PORT": "0" for s in SERVICES}
    done = subprocess.run(
        [sys.executable, "-m", "services.runtime", *command.split()], env=env, capture_output=True, timeout=60, check=False
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert said.format(bootstrap=tls_broker.bootstrap_servers) in stderr and str(path) in stderr, stderr
    if cafile == "wrong-ca":
        assert "certificate verify failed: unable to get local issuer certificate" in stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1, stderr
