"""Hostile input on every consumed topic, through each service's batch pipeline with a real SQLite store.

Every bad message becomes one dead letter whose reason names the field (or the size) at fault and
repeats none of the message; the good messages around it take effect; odd but valid text is kept
verbatim. Hypothesis adds random bytes and random JSON in every field.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from schemas.disputes import DisputeTriaged
from services.followup.store import orders as followup_orders
from tests.support.hostile import ODD_TEXT, assert_clean_reason, bad_messages
from tests.support.pipelines import (
    Published,
    Record,
    dispatch_pipeline,
    followup_pipeline,
    triage_pipeline,
)
from tests.support.samples import REASSESS, TRIAGED, at, order_issued, report_payload

NOW = at("2026-03-10T10:00:00+08:00")
LIMIT = 256 * 1024


@dataclass
class Consumer:
    """One consumed topic: a valid payload, how to make another, the pipeline, and what a good message does."""

    topic: str
    invalid_topic: str
    valid: Callable[[int], dict]
    fields: tuple[str, str, str]  # a number field, a timestamp, a bounded text field
    run: Callable[[list], Awaitable[None]]
    took_effect: Callable[[list[int]], Awaitable[bool]]


async def triage_consumer(tmp_path, topic) -> tuple[Consumer, Published]:
    processor, published, _ = await triage_pipeline(f"sqlite+aiosqlite:///{tmp_path}/triage.db", LIMIT)

    async def triaged(numbers):
        return {f"evt-{n}" for n in numbers} <= {e.source_event_id for e in published.triaged()}

    if topic == "disputes.reported":
        def valid(n):
            return report_payload(event_id=f"evt-{n}", dispute_id=f"D-{n}")
        fields = ("party_count", "reported_at", "description")
    else:
        def valid(n):
            return json.loads(REASSESS.model_copy(update={"event_id": f"evt-{n}"}).to_bytes())
        # no top-level integer: the history object stands in for the number cases
        fields = ("history", "requested_at", "caused_by")
    return Consumer(topic, "disputes.invalid", valid, fields, processor.process, triaged), published


async def dispatch_consumer(tmp_path, topic) -> tuple[Consumer, Published]:
    processor, published, _ = await dispatch_pipeline(f"sqlite+aiosqlite:///{tmp_path}/dispatch.db")
    if topic == "disputes.triaged":
        def valid(n):
            report = TRIAGED.report.model_copy(update={"dispute_id": f"D-{n}", "event_id": f"evt-{n}"})
            return json.loads(TRIAGED.model_copy(update={"dispute_id": f"D-{n}", "source_event_id": f"evt-{n}", "report": report}).to_bytes())

        async def took_effect(numbers):
            return {f"D-{n}" for n in numbers} <= {o.dispute_id for o in published.orders()}

        return Consumer(topic, "disputes.invalid", valid, ("level", "triaged_at", "ruleset_version"), processor.on_triaged, took_effect), published

    await processor.on_triaged([Record("disputes.triaged", TRIAGED.to_bytes())])
    lead = published.orders("joint_consultation")[0]
    published.clear()

    def valid(n):
        return {"event_id": f"upd-{n}", "work_order_id": lead.work_order_id, "dispute_id": lead.dispute_id,
                "department": lead.department, "status": "accepted" if n % 2 else "in_progress", "note": "已联系双方", "at": NOW.isoformat()}

    async def took_effect(numbers):
        return any(o.topic == "workorders.events" for o in published)

    return Consumer(topic, "workorders.updates.invalid", valid, ("event_id", "at", "note"), processor.on_updates, took_effect), published


async def followup_consumer(tmp_path, topic) -> tuple[Consumer, Published]:
    processor, published, engine = await followup_pipeline(f"sqlite+aiosqlite:///{tmp_path}/followup.db", NOW)
    if topic == "workorders.events":
        def valid(n):
            return json.loads(order_issued(order=f"wo-{n}", dispute=f"D-{n}").to_bytes())

        async def took_effect(numbers):
            async with engine.connect() as connection:
                stored = (await connection.execute(select(func.count()).select_from(followup_orders))).scalar()
            return stored >= len(set(numbers))

        return Consumer(topic, "workorders.events.invalid", valid, ("attempt", "due_at", "work_order_id"), processor.on_events, took_effect), published

    def valid(n):  # well formed, about no revisit this store knows: refused by content, still a dead letter with a reason
        return {"event_id": f"res-{n}", "followup_id": f"fu-{n}", "dispute_id": f"D-{n}", "satisfaction": 5,
                "agreement_fulfilled": True, "rebound": False, "at": NOW.isoformat()}

    async def took_effect(numbers):
        return True

    return Consumer(topic, "followups.results.invalid", valid, ("satisfaction", "at", "note"), processor.on_results, took_effect), published


TOPICS = {
    "disputes.reported": triage_consumer, "disputes.reassess": triage_consumer, "disputes.triaged": dispatch_consumer,
    "workorders.updates": dispatch_consumer, "workorders.events": followup_consumer, "followups.results": followup_consumer,
    # The departments' own topics (production's only): the lead of the sample dispute is the joint consultation.
    "workorders.joint_consultation.updates": dispatch_consumer, "followups.joint_consultation.results": followup_consumer,
}


@pytest.mark.parametrize("topic", list(TOPICS))
async def test_every_bad_message_is_dead_lettered_with_a_reason_and_the_good_ones_take_effect(topic, tmp_path):
    consumer, published = await TOPICS[topic](tmp_path, topic)
    cases = bad_messages(consumer.valid(0), *consumer.fields)
    batch = []
    for n, (_, value) in enumerate(cases, start=1):
        batch += [Record(topic, json.dumps(consumer.valid(1000 + n), ensure_ascii=False).encode(), offset=2 * n),
                  Record(topic, value, key=b"bad", offset=2 * n + 1)]
    await consumer.run(batch)
    dead = {int(o.header("dlq_source_offset")): o for o in published if o.topic == consumer.invalid_topic}
    # A department's update that passes the contract (an event id "1") is answered, refused, on its own topic instead.
    refused = {a.update_event_id: a.reason for a in published.answers("refused")}
    for n, (case, value) in enumerate(cases, start=1):
        if 2 * n + 1 not in dead and topic.startswith("workorders.") and json.loads(value).get("event_id") in refused:
            assert_clean_reason(refused[json.loads(value)["event_id"]])
            continue
        assert 2 * n + 1 in dead, f"{topic}: {case} was not dead-lettered"
        assert_clean_reason(dead[2 * n + 1].header("dlq_reason"))
        assert dead[2 * n + 1].value == value[: len(dead[2 * n + 1].value)]
    assert await consumer.took_effect([1000 + n for n in range(1, len(cases) + 1)])


@pytest.mark.parametrize("case, text", ODD_TEXT, ids=[c for c, _ in ODD_TEXT])
async def test_odd_but_valid_text_is_graded_and_kept_verbatim(case, text, tmp_path):
    consumer, published = await triage_consumer(tmp_path, "disputes.reported")
    payload = report_payload(event_id="evt-odd", dispute_id="D-odd", description=text)
    payload["parties"][0]["name"] = text[:200]
    await consumer.run([Record("disputes.reported", json.dumps(payload, ensure_ascii=False).encode())])
    [event] = published.triaged()
    assert event.report.description == text and event.report.parties[0].name == text[:200]
    assert DisputeTriaged.model_validate_json(event.to_bytes()).report.description == text


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@pytest.fixture(scope="module")
async def prepared_stores(tmp_path_factory) -> Path:
    """Create and migrate each service's store once; every Hypothesis example starts from a copy."""
    folder = tmp_path_factory.mktemp("prepared")
    for topic in ("disputes.reported", "disputes.triaged", "workorders.events"):
        await TOPICS[topic](folder, topic)
    return folder


@pytest.mark.parametrize("topic", list(TOPICS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_random_input_is_either_processed_or_dead_lettered_never_fatal(topic, tmp_path_factory, prepared_stores, data):
    folder = tmp_path_factory.mktemp("h")
    for store in prepared_stores.glob("*.db"):
        shutil.copy(store, folder)  # schema made, no rows: the example's pipeline finds its store current
    consumer, published = await TOPICS[topic](folder, topic)
    valid = consumer.valid(7)
    if data.draw(st.booleans(), label="bytes"):
        value = data.draw(st.binary(max_size=2000), label="random bytes")
    else:
        field = data.draw(st.sampled_from(sorted(valid)), label="field")
        value = json.dumps(valid | {field: data.draw(JSON_VALUES, label="value")}, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")
    await consumer.run([Record(topic, value, key=b"x", offset=1), Record(topic, json.dumps(consumer.valid(8), ensure_ascii=False).encode(), offset=2)])
    dead = [o for o in published if o.topic == consumer.invalid_topic and o.header("dlq_source_offset") == "1"]
    for letter in dead:
        assert_clean_reason(letter.header("dlq_reason"))
    assert await consumer.took_effect([8])
