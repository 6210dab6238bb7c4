"""Faults around a real triage process on the real broker: SIGTERM mid-stream, five kills under load, the
database gone through several retry schedules, the broker restarted."""

import asyncio
import random
import sqlite3

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.disputes import DISPUTES_REPORTED
from services.runtime.embedded import EmbeddedBroker, free_port
from services.runtime.topics import contract_topics, ensure_topics
from tests.support.conditions import wait_for
from tests.support.db_proxy import TcpProxy
from tests.support.postgres import empty_postgres
from tests.support.processes import (
    OUTAGE_SECONDS,
    produce,
    ride_out,
    wait_until_committed,
    wait_until_rejoined,
)
from tests.support.triage import outputs, reports, restart_and_drain, start_triage


async def test_sigterm_mid_stream_finishes_the_batch_and_the_next_start_repeats_nothing(embedded_broker, kafka_settings, triage_env, tmp_path):
    bootstrap = embedded_broker.bootstrap_servers
    inputs = [kafka_settings.topic(DISPUTES_REPORTED)]
    service = start_triage(triage_env, tmp_path)
    await service.wait_ready()
    await produce(bootstrap, inputs[0], reports(0, 3000))

    async def some_triaged() -> bool:
        return await service.metric("fengqiao_triage_batch_duration_seconds_count") >= 3

    await wait_for(some_triaged, 60)
    assert service.stop() == 0, service.log_tail()
    before, _ = await outputs(bootstrap, kafka_settings)
    assert 0 < len(before) < 3000, "the stop must land mid-stream"

    triaged, repeats = await restart_and_drain(triage_env, tmp_path, bootstrap, kafka_settings)
    # Every batch in flight at SIGTERM was finished and committed: not one report graded twice.
    assert sorted(t.source_event_id for t in triaged) == sorted(f"evt-{n}" for n in range(3000))
    assert repeats == 0


class SqliteLock:
    """Another process's exclusive write lock on the service's SQLite file."""

    def __init__(self, path):
        self.path = path

    async def __aenter__(self):
        self.connection = sqlite3.connect(self.path, isolation_level=None)
        self.connection.execute("BEGIN EXCLUSIVE")

    async def __aexit__(self, *_):
        self.connection.execute("COMMIT")
        self.connection.close()


async def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        return sum([await consumer.committed(TopicPartition(topic, p)) or 0 for p in consumer.partitions_for_topic(topic) or ()])
    finally:
        await consumer.stop()


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_database_gone_through_several_retry_schedules_stops_commits_goes_not_ready_and_resumes_without_loss(
    database, embedded_broker, kafka_settings, triage_env, tmp_path
):
    bootstrap = embedded_broker.bootstrap_servers
    topic = kafka_settings.topic(DISPUTES_REPORTED)
    group = triage_env["TRIAGE_GROUP_ID"]
    if database == "sqlite":
        path = tmp_path / "triage.db"
        url, outage, proxy = f"sqlite+aiosqlite:///{path}", SqliteLock(path), None
    else:
        proxy = TcpProxy("127.0.0.1", 5432)
        await proxy.start()
        url = (await empty_postgres()).replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        outage = proxy.outage()
    service = start_triage(triage_env, tmp_path, url)
    try:
        await service.wait_ready()
        await produce(bootstrap, topic, reports(0, 200))
        await wait_until_committed(bootstrap, group, [topic], timeout=60)

        async with outage:
            await produce(bootstrap, topic, reports(200, 300))

            async def not_ready() -> bool:
                return (await service.get("/health/ready"))[0] == 503

            await wait_for(not_ready, OUTAGE_SECONDS)
            stuck_at = await committed(bootstrap, group, topic)
            await ride_out(service, "fengqiao_triage_store_retries_total")
            assert await committed(bootstrap, group, topic) == stuck_at < 500, "no offset may be committed while the store is gone"
            assert service.process.poll() is None, "the service must ride the outage out"
        await service.wait_ready(60)
        await wait_until_committed(bootstrap, group, [topic], timeout=90)
        triaged, _ = await outputs(bootstrap, kafka_settings)
        assert sorted({t.source_event_id for t in triaged}) == sorted(f"evt-{n}" for n in range(500))
        assert len({t.event_id for t in triaged}) == 500
        assert await service.metric("fengqiao_triage_store_retries_total") > 0
    finally:
        # Stopped off the event loop: the proxy runs on it and must keep serving the shutdown.
        assert await asyncio.to_thread(service.stop) == 0, service.log_tail()
        if proxy:
            await proxy.stop()


async def test_five_kills_at_random_points_under_steady_load_lose_and_double_nothing(embedded_broker, kafka_settings, triage_env, tmp_path):
    bootstrap = embedded_broker.bootstrap_servers
    inputs = [kafka_settings.topic(DISPUTES_REPORTED)]
    rng, killed, produced = random.Random(8), asyncio.Event(), []

    async def steady_load() -> None:  # about 62 reports a second until the fifth kill
        while not killed.is_set():
            first = len(produced)
            await produce(bootstrap, inputs[0], reports(first, 100))
            produced.extend(range(first, first + 100))
            await asyncio.sleep(1.6)

    load = asyncio.create_task(steady_load())
    service = start_triage(triage_env, tmp_path)
    try:
        for _ in range(5):
            await service.wait_ready()
            start = await service.metric("fengqiao_triage_batch_duration_seconds_count")

            async def working(start=start, service=service) -> bool:
                return await service.metric("fengqiao_triage_batch_duration_seconds_count") >= start + 1

            await wait_for(working, 60)
            await asyncio.sleep(rng.uniform(0, 1.5))
            service.kill()
            service = start_triage(triage_env, tmp_path)
        killed.set()
        await load
        await service.wait_ready()
        await wait_until_committed(bootstrap, triage_env["TRIAGE_GROUP_ID"], inputs, timeout=120)
        triaged, _ = await outputs(bootstrap, kafka_settings)
    finally:
        load.cancel()
        assert await asyncio.to_thread(service.stop) == 0, service.log_tail()
    total = len(produced)
    assert total >= 500 and {t.source_event_id for t in triaged} == {f"evt-{n}" for n in range(total)}
    # Each report has one effect: one output id, however often a killed batch was published again.
    assert len({t.event_id for t in triaged}) == total
    assert len({(t.source_event_id, t.event_id) for t in triaged}) == total  # a repeat is the same event, not a second grade


async def test_a_restarted_broker_is_rejoined_without_restarting_the_service(kafka_settings, triage_env, tmp_path):
    # The embedded broker keeps nothing across a restart: this checks reconnection, not retention.
    port = free_port()
    broker = EmbeddedBroker(port=port)
    broker.start()
    env = triage_env | {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
    service = None
    try:
        await ensure_topics(kafka_settings, broker.bootstrap_servers, contract_topics(2))
        service = start_triage(env, tmp_path)
        await service.wait_ready()
        await produce(broker.bootstrap_servers, kafka_settings.topic(DISPUTES_REPORTED), reports(0, 100))
        await wait_for(lambda: _triaged(broker.bootstrap_servers, kafka_settings, range(0, 100)), 60)
        await wait_until_committed(broker.bootstrap_servers, env["TRIAGE_GROUP_ID"], [kafka_settings.topic(DISPUTES_REPORTED)])

        broker.stop()
        broker = EmbeddedBroker(port=port)
        broker.start()
        await ensure_topics(kafka_settings, broker.bootstrap_servers, contract_topics(2))
        await wait_until_rejoined(kafka_settings, broker.bootstrap_servers, env["TRIAGE_GROUP_ID"])
        await produce(broker.bootstrap_servers, kafka_settings.topic(DISPUTES_REPORTED), reports(100, 100))
        await service.wait_for(lambda: _triaged(broker.bootstrap_servers, kafka_settings, range(100, 200)), 120)
        assert service.process.poll() is None, "the same process carried on"
    finally:
        if service is not None:
            assert await asyncio.to_thread(service.stop) == 0, service.log_tail()
        broker.stop()


async def _triaged(bootstrap, settings, numbers) -> bool:
    triaged, _ = await outputs(bootstrap, settings)
    return {f"evt-{n}" for n in numbers} <= {t.source_event_id for t in triaged}
