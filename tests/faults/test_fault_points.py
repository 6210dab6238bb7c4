"""Kills exactly at the pipeline boundaries (`services/runtime/faults.py`), each service a real process on the
real broker: killed after a batch is published but not recorded, its outputs come again under the same ids, one
batch at most; killed after it is recorded but before its offsets are committed, nothing comes again at all."""

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest

from schemas.disputes import DISPUTES_REPORTED, DISPUTES_TRIAGED, DisputeTriaged
from services.dispatch.routing import assign, work_order_id
from services.triage.handlers import triaged_event_id
from services.triage.ruleset import DEFAULT_RULES, load_ruleset
from tests.support.fed import TABLE, Fed, fed, triaged
from tests.support.processes import (
    ServiceProcess,
    produce,
    read_all,
    start_service,
    wait_until_committed,
)
from tests.support.triage import reports

# Small batches, so a kill at the third lands mid-stream and one batch bounds the repeats.
BATCH = 10
INPUTS = 60
KILL_AT = 3
VERSION = load_ruleset(DEFAULT_RULES).version


@dataclass
class Case:
    """A service under a fault: how to start it, feed it and read its effects, and what its pipelines promise."""

    name: str
    env: dict
    subject: Fed
    pipeline: str  # the pipeline whose boundaries are the fault points
    repeats_after_publish: bool  # whether that pipeline publishes the effects counted (follow-up's events only set timers)
    duplicates_metric: str | None  # counts redelivered inputs skipped, where the service has one


def triage_case(triage_env, bootstrap, settings) -> Case:
    async def triaged() -> list[str]:
        return [DisputeTriaged.model_validate_json(r.value).event_id for r in await read_all(bootstrap, [settings.topic(DISPUTES_TRIAGED)])]

    subject = Fed(
        "triage", settings.topic(DISPUTES_REPORTED), [triage_env["TRIAGE_GROUP_ID"]],
        lambda numbers: reports(numbers.start, len(numbers)),
        lambda numbers: {triaged_event_id(f"evt-{n}", VERSION) for n in numbers},
        triaged, "fengqiao_triage_latency_seconds_count",
    )
    return Case("triage", triage_env | {"TRIAGE_BATCH_SIZE": str(BATCH)}, subject, "reports", True, "fengqiao_triage_duplicates_total")


@pytest.fixture(params=["triage", "dispatch", "followup-events", "followup-timers"])
def case(request, embedded_broker, kafka_settings, contract_topics_created, triage_env, tmp_path) -> Case:
    bootstrap = embedded_broker.bootstrap_servers
    if request.param == "triage":
        return triage_case(triage_env, bootstrap, kafka_settings)
    name, _, pipeline = request.param.partition("-")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        f"{name.upper()}_GROUP_ID": f"{name}-{uuid.uuid4().hex[:8]}",
        f"{name.upper()}_BATCH_SIZE": str(BATCH),
        "FOLLOWUP_FIRE_BATCH": str(BATCH),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / (name + '.db')}",
    }
    if name == "dispatch":
        return Case(name, env, fed(name, env, bootstrap, kafka_settings), "triaged", True, 'fengqiao_dispatch_duplicates_total{topic="triaged"}')
    return Case(name, env, fed(name, env, bootstrap, kafka_settings), pipeline, pipeline == "timers", None)


async def killed_by_its_fault(service: ServiceProcess, timeout: float = 60) -> None:
    """Wait until the process has ended by itself at its fault point."""

    async def ended() -> bool:
        return service.process.poll() is not None

    await service.wait_for(ended, timeout)
    assert service.process.returncode == 137, service.log_tail()
    assert "FENGQIAO_FAULT: killed at" in service.log_tail(), service.log_tail()


async def run_through_the_fault(case: Case, fault: str, bootstrap: str, tmp_path) -> tuple[list[str], list[str], float]:
    """Feed a service that kills itself at `fault`, restart it without, drain; return effects before and after, and repeats skipped."""
    service = start_service(case.name, case.env | {"FENGQIAO_FAULT": fault}, tmp_path)
    await service.wait_ready()
    await produce(bootstrap, case.subject.input_topic, case.subject.inputs(range(INPUTS)))
    await killed_by_its_fault(service)
    before = await case.subject.effects()
    restarted = start_service(case.name, case.env, tmp_path)
    try:
        await restarted.wait_ready()
        await wait_until_committed(bootstrap, case.subject.groups[0], [case.subject.input_topic], timeout=60)
        expected = case.subject.expected(range(INPUTS))

        async def complete() -> bool:
            return set(await case.subject.effects()) >= expected

        await restarted.wait_for(complete, 60)
        skipped = await restarted.metric(case.duplicates_metric) if case.duplicates_metric else 0.0
        return before, await case.subject.effects(), skipped
    finally:
        assert await asyncio.to_thread(restarted.stop) == 0, restarted.log_tail()


def repeated(effects: list[str]) -> dict[str, int]:
    return {effect: count for effect, count in Counter(effects).items() if count > 1}


async def test_killed_after_publishing_a_batch_republishes_it_under_the_same_ids_and_loses_nothing(case, embedded_broker, tmp_path):
    expected = case.subject.expected(range(INPUTS))
    before, effects, _ = await run_through_the_fault(case, f"{case.pipeline}.after_publish:{KILL_AT}", embedded_broker.bootstrap_servers, tmp_path)
    assert len(set(before)) < len(expected), "the kill must land mid-stream"
    assert set(effects) == expected, "nothing lost, and no id but the expected ones"
    again = repeated(effects)
    assert all(count == 2 for count in again.values()), again
    if not case.repeats_after_publish:
        assert not again, "this pipeline publishes none of the effects counted"
    elif case.name == "dispatch":
        # A dispute issues several orders: the bound is one batch of disputes.
        dispute_of = {work_order_id(f"D-{n}", a.department, 1): n for n in range(INPUTS) for a in assign(triaged(n), TABLE)}
        assert again and len({dispute_of[order] for order in again}) <= BATCH, again
    else:
        assert 0 < len(again) <= BATCH, again


async def test_killed_after_recording_a_batch_before_its_offsets_commit_repeats_nothing(case, embedded_broker, tmp_path):
    expected = case.subject.expected(range(INPUTS))
    before, effects, skipped = await run_through_the_fault(case, f"{case.pipeline}.after_record:{KILL_AT}", embedded_broker.bootstrap_servers, tmp_path)
    assert len(set(before)) < len(expected), "the kill must land mid-stream"
    assert sorted(effects) == sorted(expected), "each effect exactly once: the redelivered batch is skipped"
    if case.duplicates_metric:
        assert skipped > 0, "the recorded batch came again and was skipped"
