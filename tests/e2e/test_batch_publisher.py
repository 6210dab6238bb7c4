"""The batch publisher on the real broker: keyed records land where the producer's own partitioner puts them, in order."""

from aiokafka import AIOKafkaProducer, TopicPartition

from services.runtime.kafka import BatchPublisher, Outgoing
from services.runtime.topics import TopicSpec, ensure_topics
from tests.support.processes import end_offsets, read_all


async def test_records_land_on_the_default_partitioner_s_partition_in_order(embedded_broker, kafka_settings):
    bootstrap = embedded_broker.bootstrap_servers
    ours, theirs = kafka_settings.topic("ours"), kafka_settings.topic("theirs")
    # The same keys on a topic of another layout in the same call: a key's place depends on the layout.
    ours_3, theirs_3 = kafka_settings.topic("ours3"), kafka_settings.topic("theirs3")
    specs = [TopicSpec("ours", 4), TopicSpec("theirs", 4), TopicSpec("ours3", 3), TopicSpec("theirs3", 3)]
    await ensure_topics(kafka_settings, bootstrap, specs)
    keys = [f"D-{n % 37}".encode() for n in range(600)]
    publisher = BatchPublisher(kafka_settings, bootstrap)
    await publisher.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await publisher(
            [Outgoing(ours, key, str(n).encode(), [("ce_id", str(n).encode())]) for n, key in enumerate(keys)]
            + [Outgoing(ours_3, key, str(n).encode()) for n, key in enumerate(keys)]
        )
        for n, key in enumerate(keys):
            await producer.send(theirs, str(n).encode(), key=key)
            await producer.send(theirs_3, str(n).encode(), key=key)
        await producer.flush()
    finally:
        await publisher.stop()
        await producer.stop()
    records = await read_all(bootstrap, [ours, theirs, ours_3, theirs_3])
    placed = {(r.topic, r.value): r.partition for r in records}
    assert len(records) == 2400
    assert all(placed[ours, str(n).encode()] == placed[theirs, str(n).encode()] for n in range(600))
    assert all(placed[ours_3, str(n).encode()] == placed[theirs_3, str(n).encode()] for n in range(600))
    assert {placed[ours_3, str(n).encode()] for n in range(600)} == {0, 1, 2}
    for partition in range(4):
        values = [int(r.value) for r in sorted(records, key=lambda r: r.offset) if r.topic == ours and r.partition == partition]
        assert values == sorted(values)  # the order of the call, per partition
    assert {r.headers for r in records if r.topic == ours and r.value == b"5"} == {(("ce_id", b"5"),)}


async def _publish_to_one_partition(kafka_settings, bootstrap: str, name: str, calls: list[list[tuple[bytes, bytes]]]) -> str:
    """Publish each call's (key, value) pairs with one publisher to a fresh one-partition topic; return it."""
    topic = kafka_settings.topic(name)
    await ensure_topics(kafka_settings, bootstrap, [TopicSpec(name, 1)])
    publisher = BatchPublisher(kafka_settings, bootstrap)
    await publisher.start()
    try:
        for pairs in calls:
            await publisher([Outgoing(topic, key, value) for key, value in pairs])
    finally:
        await publisher.stop()
    return topic


async def test_a_batch_larger_than_one_record_batch_is_split_not_lost(embedded_broker, kafka_settings):
    bootstrap = embedded_broker.bootstrap_servers
    big = [(b"k", bytes([65 + n % 26]) * 300_000) for n in range(10)]  # 3 MB in one call
    topic = await _publish_to_one_partition(kafka_settings, bootstrap, "big", [big])
    records = await read_all(bootstrap, [topic])
    assert [r.value[:1] for r in records] == [bytes([65 + n % 26]) for n in range(10)]


async def test_the_test_readers_find_the_end_of_a_topic_written_in_large_batches(embedded_broker, kafka_settings):
    # The embedded broker's ListOffsets answers the base offset of the last record batch: a reader
    # trusting it stops one batch short and a commit check passes before the work is done.
    bootstrap = embedded_broker.bootstrap_servers
    calls = [[(b"k", str(n).encode()) for n in range(call * 50, call * 50 + 50)] for call in range(4)]
    topic = await _publish_to_one_partition(kafka_settings, bootstrap, "batched", calls)
    assert [int(r.value) for r in await read_all(bootstrap, [topic])] == list(range(200))
    assert await end_offsets(bootstrap, [TopicPartition(topic, 0)]) == {TopicPartition(topic, 0): 200}


async def test_every_record_batch_is_sent_closed_so_none_waits_out_the_linger(embedded_broker, kafka_settings):
    # An open batch sits in the producer for linger_ms waiting for records that never come; each hop paid it.
    bootstrap = embedded_broker.bootstrap_servers
    topic = kafka_settings.topic("closed")
    await ensure_topics(kafka_settings, bootstrap, [TopicSpec("closed", 4)])
    publisher = BatchPublisher(kafka_settings, bootstrap)
    await publisher.start()
    sent_closed = []
    send_batch = publisher._producer.send_batch

    async def recording(batch, *args, **kwargs):
        sent_closed.append(batch.closed())
        return await send_batch(batch, *args, **kwargs)

    publisher._producer.send_batch = recording
    try:
        await publisher([Outgoing(topic, f"D-{n}".encode(), b"x" * 400_000) for n in range(12)])
    finally:
        await publisher.stop()
    assert len(sent_closed) > 4 and all(sent_closed)  # some partition needed two batches; every one closed
    assert len(await read_all(bootstrap, [topic])) == 12
