"""Only the report -> work order path polls the broker eagerly; inputs nobody waits on in real time let it gather records.
Every input bounds what one fetch brings, so a consumer catching up on a backlog holds little."""

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from services.dispatch.app import create_app as dispatch_app
from services.dispatch.settings import DispatchSettings
from services.followup.app import create_app as followup_app
from services.followup.settings import FollowupSettings
from services.runtime.kafka import client_options
from services.runtime.settings import KafkaSettings, ServiceSettings
from services.runtime.topics import TopicSpec, ensure_topics
from services.triage.app import create_app as triage_app
from services.triage.settings import TriageSettings

EAGER, RELAXED = (10, 1), (200, 1024 * 1024)  # (fetch_max_wait_ms, fetch_min_bytes) with default settings

CASES = [
    (triage_app, TriageSettings, "disputes.reported", EAGER),
    (triage_app, TriageSettings, "disputes.reassess", EAGER),
    (dispatch_app, DispatchSettings, "disputes.triaged", EAGER),
    (dispatch_app, DispatchSettings, "workorders.updates", RELAXED),
    (followup_app, FollowupSettings, "workorders.events", RELAXED),
    (followup_app, FollowupSettings, "followups.results", RELAXED),
]


def test_each_input_polls_as_its_readers_need(tmp_path):
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    for create_app, settings, topic, expected in CASES:
        [broker] = create_app(settings(data_dir=tmp_path), kafka, registry=CollectorRegistry()).brokers
        [subscriber] = [s for s in broker.subscribers if topic in {getattr(t, "name", t) for t in s.topics}]
        options = subscriber._connection_args  # what the aiokafka consumer is built with
        assert (options["fetch_max_wait_ms"], options["fetch_min_bytes"]) == expected, topic
        assert options["fetch_max_bytes"] == ServiceSettings().fetch_max_bytes == 1024 * 1024, topic


@pytest.mark.broker
async def test_a_lagging_consumer_gets_no_more_than_its_fetch_limit_at_a_time(embedded_broker, kafka_settings):
    topic, limit, batch = kafka_settings.topic("backlog"), 256 * 1024, 16 * 1024
    options = client_options(kafka_settings, embedded_broker.bootstrap_servers)
    await ensure_topics(kafka_settings, embedded_broker.bootstrap_servers, [TopicSpec(topic, 1)])
    producer = AIOKafkaProducer(**options, linger_ms=5, max_batch_size=batch)
    await producer.start()
    try:
        pending = [await producer.send(topic, b"x" * 1000) for _ in range(4000)]  # 4 MB waiting
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**options, fetch_max_bytes=limit, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        # One partition, so what the first wait returns is what one fetch brought.
        fetched = await consumer.getmany(timeout_ms=10_000, max_records=100_000)
    finally:
        await consumer.stop()
    received = sum(len(record.value) for records in fetched.values() for record in records)
    assert 0 < received <= limit + batch  # without the limit this fetch brought 996 kB
