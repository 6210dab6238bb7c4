"""Every input bounds what one fetch brings, so a consumer catching up on a backlog holds little."""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.runtime.kafka import client_options
from services.runtime.topics import TopicSpec, ensure_topics


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
