"""Faults around real dispatch and follow-up processes fed directly on the real broker: five kills under a
steady load, SIGTERM mid-stream, their SQLite store locked through several retry schedules, the broker restarted.
Effects are counted by id."""

import asyncio
import random
import sqlite3
import uuid

import pytest

from services.runtime.embedded import EmbeddedBroker, free_port
from services.runtime.topics import contract_topics, ensure_topics
from tests.support.conditions import wait_for
from tests.support.fed import Fed, fed
from tests.support.processes import (
    OUTAGE_SECONDS,
    ServiceProcess,
    produce,
    ride_out,
    start_service,
    wait_until_committed,
    wait_until_rejoined,
)


@pytest.fixture(params=["dispatch", "followup"])
def service_env(request, embedded_broker, kafka_settings, contract_topics_created, tmp_path):
    run = uuid.uuid4().hex[:8]
    name = request.param
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": embedded_broker.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        f"{name.upper()}_GROUP_ID": f"{name}-{run}",
        f"{name.upper()}_BATCH_SIZE": "100",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / (name + '.db')}",
    }
    return name, env, fed(name, env, embedded_broker.bootstrap_servers, kafka_settings)


async def all_effects(subject: Fed, expected: set[str]) -> list[str]:
    """Wait until every expected effect is out, then return every effect id seen (repeats included)."""

    async def complete() -> bool:
        return set(await subject.effects()) >= expected

    await wait_for(complete, 60)
    return await subject.effects()


async def stop(service: ServiceProcess) -> None:
    assert await asyncio.to_thread(service.stop) == 0, service.log_tail()


async def test_five_kills_under_steady_load_lose_nothing_and_repeat_no_effect(service_env, embedded_broker, tmp_path):
    name, env, subject = service_env
    bootstrap, rng, killed, produced = embedded_broker.bootstrap_servers, random.Random(5), asyncio.Event(), []

    async def steady_load() -> None:  # 50 inputs a second until the fifth kill
        while not killed.is_set():
            first = len(produced)
            await produce(bootstrap, subject.input_topic, subject.inputs(range(first, first + 50)))
            produced.extend(range(first, first + 50))
            await asyncio.sleep(1.0)

    load = asyncio.create_task(steady_load())
    service = start_service(name, env, tmp_path)
    try:
        for _ in range(5):
            await service.wait_ready()
            start = await service.metric(subject.working_metric)

            async def working(start=start, service=service) -> bool:
                return await service.metric(subject.working_metric) > start

            await wait_for(working, 60)
            await asyncio.sleep(rng.uniform(0, 1.0))
            service.kill()
            service = start_service(name, env, tmp_path)
        killed.set()
        await load
        await service.wait_ready()
        await wait_until_committed(bootstrap, subject.groups[0], [subject.input_topic], timeout=120)
        expected = subject.expected(range(len(produced)))
        effects = await all_effects(subject, expected)
    finally:
        load.cancel()
        await stop(service)
    # Every input has its effects, each under one id; a killed batch repeats ids, never makes new ones.
    assert len(produced) >= 250 and set(effects) == expected


async def test_sigterm_mid_stream_finishes_in_flight_work_and_the_next_start_repeats_nothing(service_env, embedded_broker, tmp_path):
    name, env, subject = service_env
    # Input keeps arriving until the stop has landed, so the stop is mid-stream by construction, however fast the drain.
    bootstrap, produced, stopped = embedded_broker.bootstrap_servers, [0], asyncio.Event()

    async def streaming() -> None:  # 200 inputs every 50 ms until the service has stopped
        while not stopped.is_set():
            first = produced[0]
            await produce(bootstrap, subject.input_topic, subject.inputs(range(first, first + 200)))
            produced[0] = first + 200
            await asyncio.sleep(0.05)

    service = start_service(name, env, tmp_path)
    await service.wait_ready()
    load = asyncio.create_task(streaming())
    try:
        start = await service.metric(subject.working_metric)

        async def working() -> bool:
            return await service.metric(subject.working_metric) > start

        await wait_for(working, 60)
        await stop(service)
        assert not load.done(), "the stop must land while input is still arriving"
    finally:
        stopped.set()
        await load
    expected = subject.expected(range(produced[0]))
    restarted = start_service(name, env, tmp_path)
    try:
        await restarted.wait_ready()
        await wait_until_committed(bootstrap, subject.groups[0], [subject.input_topic], timeout=90)
        effects = await all_effects(subject, expected)
    finally:
        await stop(restarted)
    assert sorted(effects) == sorted(expected), "each effect exactly once: not even a repeat"


async def test_store_locked_through_several_retry_schedules_stops_commits_goes_not_ready_and_resumes(service_env, embedded_broker, tmp_path):
    name, env, subject = service_env
    bootstrap = embedded_broker.bootstrap_servers
    service = start_service(name, env, tmp_path)
    try:
        await service.wait_ready()
        await produce(bootstrap, subject.input_topic, subject.inputs(range(0, 100)))
        await wait_until_committed(bootstrap, subject.groups[0], [subject.input_topic], timeout=60)
        locker = sqlite3.connect(tmp_path / f"{name}.db", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            await produce(bootstrap, subject.input_topic, subject.inputs(range(100, 300)))

            async def not_ready() -> bool:
                return (await service.get("/health/ready"))[0] == 503

            await wait_for(not_ready, OUTAGE_SECONDS)
            await ride_out(service, f"fengqiao_{name}_store_retries_total")
            assert service.process.poll() is None, "the service must ride the outage out"
            assert not set(await subject.effects()) >= subject.expected(range(100, 300)), "nothing can be done while the store is locked"
        finally:
            locker.execute("COMMIT")
            locker.close()
        await service.wait_ready(60)
        await wait_until_committed(bootstrap, subject.groups[0], [subject.input_topic], timeout=90)
        expected = subject.expected(range(300))
        assert set(await all_effects(subject, expected)) == expected
        assert await service.metric(f"fengqiao_{name}_store_retries_total") > 0
    finally:
        await stop(service)


async def test_a_restarted_broker_is_rejoined_without_restarting_the_service(service_env, kafka_settings, tmp_path):
    # The embedded broker keeps nothing across a restart: this checks reconnection, not retention.
    name, env, _ = service_env
    port = free_port()
    broker = EmbeddedBroker(port=port)
    broker.start()
    env = env | {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
    subject = fed(name, env, broker.bootstrap_servers, kafka_settings)
    service = None

    async def done(numbers) -> bool:
        return set(await subject.effects()) >= subject.expected(numbers)

    try:
        await ensure_topics(kafka_settings, broker.bootstrap_servers, contract_topics(2))
        service = start_service(name, env, tmp_path)
        await service.wait_ready()
        await produce(broker.bootstrap_servers, subject.input_topic, subject.inputs(range(0, 50)))
        await wait_for(lambda: done(range(0, 50)), 60)
        await wait_until_committed(broker.bootstrap_servers, subject.groups[0], [subject.input_topic])

        broker.stop()
        broker = EmbeddedBroker(port=port)
        broker.start()
        await ensure_topics(kafka_settings, broker.bootstrap_servers, contract_topics(2))
        await wait_until_rejoined(kafka_settings, broker.bootstrap_servers, subject.groups[0])
        await produce(broker.bootstrap_servers, subject.input_topic, subject.inputs(range(50, 100)))
        await service.wait_for(lambda: done(range(50, 100)), 120)
        assert service.process.poll() is None, "the same process carried on"
    finally:
        if service is not None:
            await stop(service)
        broker.stop()
