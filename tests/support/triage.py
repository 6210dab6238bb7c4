"""Triage as a process: its environment, reports to feed it, what it published, a restart that drains."""

import asyncio
import json
import shutil
import uuid

import pytest

from schemas.disputes import (
    DISPUTES_INVALID,
    DISPUTES_REPORTED,
    DISPUTES_TRIAGED,
    DisputeTriaged,
)
from services.runtime.embedded import free_port
from services.triage.ruleset import DEFAULT_RULES
from tests.support.processes import ServiceProcess, read_all, wait_until_committed
from tests.support.samples import report_payload


@pytest.fixture
def triage_env(embedded_broker, kafka_settings, contract_topics_created, tmp_path):
    rules = tmp_path / "rules.yaml"
    shutil.copy(DEFAULT_RULES, rules)
    return {
        "KAFKA_BOOTSTRAP_SERVERS": embedded_broker.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "TRIAGE_GROUP_ID": f"triage-{uuid.uuid4().hex[:8]}",
        "TRIAGE_RULES_FILE": str(rules),
        "TRIAGE_RULES_POLL_SECONDS": "0.2",
        "TRIAGE_BATCH_SIZE": "100",
        "TRIAGE_HMAC_KEY": "test-hmac-key-of-32-bytes-0123456",
        "TRIAGE_DATA_DIR": str(tmp_path / "var"),
    }


# Invalid reports of several kinds, each a dead letter with a reason.
INVALID_KINDS = [
    b"",
    b"{not json",
    json.dumps(report_payload(reported_at="2026-03-01T08:00:00")).encode(),
    json.dumps(report_payload(category="gambling")).encode(),
    json.dumps(report_payload(parties=[])).encode(),
    json.dumps(report_payload(secret_field=1)).encode(),
]


def start_triage(env, tmp_path, store_url=None) -> ServiceProcess:
    env = env | {"TRIAGE_HTTP_PORT": str(free_port())} | ({"DATABASE_URL": store_url} if store_url else {})
    return ServiceProcess("triage", env, int(env["TRIAGE_HTTP_PORT"]), tmp_path / "triage.log").start()


def reports(first: int, count: int, invalid_every: int = 0) -> list[tuple[bytes, bytes]]:
    messages = []
    for n in range(first, first + count):
        key = f"D-{n % 97}".encode()
        if invalid_every and n % invalid_every == 0:
            messages.append((key, INVALID_KINDS[n // invalid_every % len(INVALID_KINDS)]))
        else:
            payload = report_payload(event_id=f"evt-{n}", dispute_id=f"D-{n % 97}", party_count=1 + n % 12)
            messages.append((key, json.dumps(payload).encode()))
    return messages


async def outputs(bootstrap, settings):
    triaged = await read_all(bootstrap, [settings.topic(DISPUTES_TRIAGED)])
    dead = await read_all(bootstrap, [settings.topic(DISPUTES_INVALID)])
    return [DisputeTriaged.model_validate_json(r.value) for r in triaged], dead


async def restart_and_drain(triage_env, tmp_path, bootstrap, settings, store_url=None) -> tuple[list[DisputeTriaged], float]:
    """Start triage again, let it commit every report, and return all triaged events and its count of repeats skipped."""
    restarted = start_triage(triage_env, tmp_path, store_url)
    try:
        await restarted.wait_ready()
        await wait_until_committed(bootstrap, triage_env["TRIAGE_GROUP_ID"], [settings.topic(DISPUTES_REPORTED)], timeout=90)
        triaged, _ = await outputs(bootstrap, settings)
        return triaged, await restarted.metric("fengqiao_triage_duplicates_total")
    finally:
        assert await asyncio.to_thread(restarted.stop) == 0, restarted.log_tail()
