"""Triage as a real process on the real broker: nothing lost, nothing doubled, crash-safe, hot reload."""

import json

import pytest

from schemas.disputes import DISPUTES_INVALID, DISPUTES_REPORTED, DisputeTriaged
from schemas.rules import RULES_TRIAGE, RULES_TRIAGE_KEY
from tests.support.conditions import wait_for
from tests.support.postgres import empty_postgres
from tests.support.processes import produce, read_all, wait_until_committed
from tests.support.samples import report_payload
from tests.support.triage import outputs, reports, restart_and_drain, start_triage


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'triage.db'}"
    return await empty_postgres()


async def test_mixed_reports_none_lost_none_doubled_and_resent_ids_ignored(embedded_broker, kafka_settings, triage_env, tmp_path, store_url):
    bootstrap = embedded_broker.bootstrap_servers
    inputs = [kafka_settings.topic(DISPUTES_REPORTED)]
    service = start_triage(triage_env, tmp_path, store_url)
    try:
        await service.wait_ready()
        await produce(bootstrap, inputs[0], reports(0, 1000, invalid_every=20))
        await wait_until_committed(bootstrap, triage_env["TRIAGE_GROUP_ID"], inputs, timeout=90)
        triaged, dead = await outputs(bootstrap, kafka_settings)
        assert len(triaged) == 950 and len({t.event_id for t in triaged}) == 950
        assert {t.source_event_id for t in triaged} == {f"evt-{n}" for n in range(1000) if n % 20}
        assert len(dead) == 50
        assert all(dict(r.headers)[b"dlq_reason".decode()] for r in dead)
        assert await service.metric('fengqiao_triage_invalid_total{reason="message:json_invalid"}') >= 8

        # The same event ids again: committed, but no second triaged event.
        await produce(bootstrap, inputs[0], reports(0, 200, invalid_every=20))
        await wait_until_committed(bootstrap, triage_env["TRIAGE_GROUP_ID"], inputs, timeout=60)
        again, _ = await outputs(bootstrap, kafka_settings)
        assert len(again) == 950 and len(await read_all(bootstrap, [kafka_settings.topic(DISPUTES_INVALID)])) == 60
        assert await service.metric("fengqiao_triage_duplicates_total") == 190
    finally:
        assert service.stop() == 0, service.log_tail()


async def test_killed_mid_stream_loses_nothing(embedded_broker, kafka_settings, triage_env, tmp_path, store_url):
    bootstrap = embedded_broker.bootstrap_servers
    inputs = [kafka_settings.topic(DISPUTES_REPORTED)]
    service = start_triage(triage_env, tmp_path, store_url)
    await service.wait_ready()
    await produce(bootstrap, inputs[0], reports(0, 3000))

    async def some_triaged() -> bool:
        return await service.metric('fengqiao_triage_batch_duration_seconds_count') >= 3

    await wait_for(some_triaged, 60)
    service.kill()
    before, _ = await outputs(bootstrap, kafka_settings)
    assert 0 < len(before) < 3000, "the kill must land mid-stream"

    triaged, _ = await restart_and_drain(triage_env, tmp_path, bootstrap, kafka_settings, store_url)
    assert {t.source_event_id for t in triaged} == {f"evt-{n}" for n in range(3000)}
    # A batch published but not recorded before the kill is published again with the same ids:
    # at-least-once with recognisable repeats, at most one batch per partition.
    assert len({t.event_id for t in triaged}) == 3000
    assert len(triaged) - 3000 <= 4 * 100


async def test_rules_reload_from_file_and_topic_while_serving(embedded_broker, kafka_settings, triage_env, tmp_path):
    bootstrap = embedded_broker.bootstrap_servers
    topic = kafka_settings.topic(DISPUTES_REPORTED)
    rules = tmp_path / "rules.yaml"
    service = start_triage(triage_env, tmp_path)
    sent = iter(range(10_000))

    async def grade_one(party_count: int) -> DisputeTriaged:
        n = next(sent)
        await produce(bootstrap, topic, [(b"D-r", json.dumps(report_payload(event_id=f"r-{n}", dispute_id="D-r", party_count=party_count)).encode())])

        async def graded() -> bool:
            return any(t.source_event_id == f"r-{n}" for t in (await outputs(bootstrap, kafka_settings))[0])

        await wait_for(graded, 60)
        return next(t for t in (await outputs(bootstrap, kafka_settings))[0] if t.source_event_id == f"r-{n}")

    def active(version: str):
        async def check() -> bool:
            return await service.metric(f'fengqiao_triage_ruleset_active{{version="{version}"}}') == 1

        return check

    try:
        await service.wait_ready()
        first = await grade_one(2)
        assert (first.ruleset_version, first.level) == ("2026.11.1", 1)

        # A good new version in the file: swapped in without a restart.
        text = rules.read_text(encoding="utf-8")
        rules.write_text(text.replace('version: "2026.11.1"', 'version: "2026.11.2"').replace('party_count: {">=": 3}', 'party_count: {">=": 2}'), encoding="utf-8")
        await wait_for(active("2026.11.2"), 30)
        second = await grade_one(2)
        assert (second.ruleset_version, second.level) == ("2026.11.2", 2)

        # A broken version: rejected, counted, and the running version keeps serving.
        rules.write_text(text.replace('version: "2026.11.1"', 'version: "2026.11.3"').replace("level_at_least: 3", "level_at_least: 9"), encoding="utf-8")

        async def rejected() -> bool:
            return await service.metric('fengqiao_triage_ruleset_reloads_total{origin="file",reason="invalid",result="rejected"}') == 1

        await wait_for(rejected, 30)
        third = await grade_one(2)
        assert (third.ruleset_version, third.level) == ("2026.11.2", 2)
        assert "rejected ruleset from file, keeping 2026.11.2" in service.log_tail(200)

        # A version published on the compacted rules topic.
        topic_version = text.replace('version: "2026.11.1"', 'version: "2026.11.4"')
        await produce(bootstrap, kafka_settings.topic(RULES_TRIAGE), [(RULES_TRIAGE_KEY, topic_version.encode())])
        await wait_for(active("2026.11.4"), 30)
        fourth = await grade_one(2)
        assert (fourth.ruleset_version, fourth.level) == ("2026.11.4", 1)
    finally:
        assert service.stop() == 0, service.log_tail()
