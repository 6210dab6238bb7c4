"""The embedded broker and the contracts on it: real Kafka protocol, real clients."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from schemas.catalog import CONTRACTS
from schemas.disputes import DISPUTES_INVALID, DISPUTES_REPORTED
from schemas.followups import FOLLOWUPS_DUE, FOLLOWUPS_RESULTS
from schemas.workorders import WORKORDERS_UPDATES
from schemas.workorders import WORK_ORDER_EVENT
from services.runtime.embedded import EmbeddedBroker
from services.runtime.kafka import client_options, encode_event
from services.runtime.settings import KafkaSettings
from services.runtime.topics import DEAD_LETTER_RETENTION_MS, contract_topics, ensure_topics
from services.cli import app as cli
from tests.conftest import fresh_prefix
from tests.support.conditions import wait_for
from tests.support.samples import ALL


async def test_contract_topics_are_created_with_their_partitions(embedded_broker, kafka_settings, contract_topics_created):
    assert len(contract_topics_created) == len(contract_topics())
    admin = AIOKafkaAdminClient(**client_options(kafka_settings, embedded_broker.bootstrap_servers))
    await admin.start()
    try:
        [described] = await admin.describe_topics([kafka_settings.topic(DISPUTES_REPORTED)])
    finally:
        await admin.close()
    assert len(described["partitions"]) == 2


async def test_existing_topics_are_left_alone(embedded_broker, kafka_settings, contract_topics_created):
    from services.runtime.topics import ensure_topics

    assert await ensure_topics(kafka_settings, embedded_broker.bootstrap_servers, contract_topics(2)) == []


def _decode(value: bytes, ce_type: str):
    for contract in CONTRACTS.values():
        if getattr(contract, "ce_type", None) == ce_type:
            return contract.model_validate_json(value)
    return WORK_ORDER_EVENT.validate_json(value)


def test_records_of_one_batch_share_headers_but_keep_their_own_id_and_written_time():
    utc = datetime(2026, 3, 2, 2, tzinfo=timezone.utc)
    beijing = utc.astimezone(ZoneInfo("Asia/Shanghai"))  # the same instant, written another way
    first, second, third = (
        encode_event("t", ALL[0], f"id-{n}", "/fengqiao/test", moment) for n, moment in enumerate((utc, beijing, utc))
    )
    assert [r.header("ce_id") for r in (first, second, third)] == ["id-0", "id-1", "id-2"]
    assert [r.header("ce_time") for r in (first, second, third)] == [
        "2026-03-02T02:00:00+00:00", "2026-03-02T10:00:00+08:00", "2026-03-02T02:00:00+00:00",
    ]
    assert first.header("ce_type") == ALL[0].ce_type and first.header("missing") is None


async def test_every_contract_crosses_the_broker_with_cloudevents_headers(embedded_broker, kafka_settings):
    topic = kafka_settings.topic("contracts.roundtrip")
    options = client_options(kafka_settings, embedded_broker.bootstrap_servers)
    producer = AIOKafkaProducer(**options, acks="all")
    await producer.start()
    try:
        outgoing = [
            encode_event(topic, event, f"id-{i}", "/fengqiao/test", _any_time(event))
            for i, event in enumerate(ALL)
        ]
        # Send the whole batch, then await every acknowledgement together.
        pending = [await producer.send(o.topic, o.value, key=o.key, headers=o.headers) for o in outgoing]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, **options, group_id=f"{topic}.g", auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    received = []
    try:
        async def all_arrived() -> bool:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                received.extend(batch)
            return len(received) >= len(ALL)

        await wait_for(all_arrived)
    finally:
        await consumer.stop()

    assert len(received) == len(ALL)
    for record in received:
        headers = {k: v.decode() for k, v in record.headers}
        event = ALL[int(headers["ce_id"].removeprefix("id-"))]
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_type"] == event.ce_type
        assert headers["ce_source"] == "/fengqiao/test"
        assert record.key == event.dispute_id.encode()
        assert _decode(record.value, headers["ce_type"]) == event


def _any_time(event):
    for name in ("at", "reported_at", "triaged_at", "requested_at", "issued_at", "fired_at"):
        if name in type(event).model_fields:
            return getattr(event, name)
    raise AssertionError(f"{type(event).__name__} has no timestamp")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_stopping_the_broker_ends_its_process_and_frees_the_port():
    broker = EmbeddedBroker()
    broker.start()
    port = broker.port
    assert broker.running and _listening(port)
    broker.stop()
    assert not broker.running and not _listening(port)


def test_fengqiao_broker_prints_its_address_and_stops_on_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "services.runtime", "broker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:"), line
        port = int(line.strip().rsplit(":", 1)[1])
        assert _listening(port)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert not _listening(port)
    finally:
        if process.poll() is None:
            process.kill()


# (FENGQIAO_ENV, whether the shared development topics are created): production creates only what someone may use.
TOPIC_COMMANDS = [("development", True), ("production", False)]


@pytest.mark.parametrize(("environment", "shared"), TOPIC_COMMANDS, ids=[row[0] for row in TOPIC_COMMANDS])
def test_topics_create_leaves_out_the_shared_development_topics_in_production(embedded_broker, monkeypatch, environment, shared):
    prefix = fresh_prefix()
    for name, value in {"KAFKA_BOOTSTRAP_SERVERS": embedded_broker.bootstrap_servers, "KAFKA_TOPIC_PREFIX": prefix, "FENGQIAO_ENV": environment}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["topics", "create", "--partitions", "1", "--replication-factor", "1"])
    assert result.exit_code == 0, result.output
    created = set(result.output.strip().split(": ", 1)[1].split(", "))
    assert created == {prefix + spec.name for spec in contract_topics(environment=environment)}
    assert {prefix + "followups.court.due", prefix + FOLLOWUPS_DUE} <= created
    assert ({prefix + WORKORDERS_UPDATES, prefix + FOLLOWUPS_RESULTS} <= created) is shared


async def test_ensure_topics_brings_an_existing_dead_letter_topics_retention_to_the_layouts(embedded_broker):
    bootstrap = embedded_broker.bootstrap_servers
    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=fresh_prefix())
    dead, flowing = settings.topic(DISPUTES_INVALID), settings.topic(DISPUTES_REPORTED)
    admin = AIOKafkaAdminClient(**client_options(settings, bootstrap))
    await admin.start()

    async def retention(topic: str) -> str | None:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        [resource] = response.resources
        return {entry[0]: entry[1] for entry in resource[4]}.get("retention.ms")

    try:
        # Made before the layout had a retention for dead letters, and a flowing topic an operator tuned by hand.
        await admin.create_topics([NewTopic(dead, 1, 1, topic_configs={"retention.ms": "-1"}), NewTopic(flowing, 2, 1, topic_configs={"retention.ms": "1000"})])
        created = await ensure_topics(settings, bootstrap, contract_topics(partitions=2))
        assert dead not in created and flowing not in created
        # The layout's configs are set on the topic that exists; a config the layout does not name is left alone.
        assert (await retention(dead), await retention(flowing)) == (str(DEAD_LETTER_RETENTION_MS), "1000")
        assert await ensure_topics(settings, bootstrap, contract_topics(partitions=2)) == []
        assert await retention(dead) == str(DEAD_LETTER_RETENTION_MS)
    finally:
        await admin.close()
