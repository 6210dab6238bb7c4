"""The dispatch pipelines with a real store (SQLite and PostgreSQL, migrated by Alembic) and a recording publisher."""

import json

import pytest
from sqlalchemy import select

from schemas.disputes import ReassessmentRequested
from schemas.workorders import WORK_ORDER_EVENT, WorkOrderUpdate, updates_topic
from services.dispatch.store import disputes, orders
from tests.support.pipelines import DISPATCH_NOW as NOW
from tests.support.pipelines import Record, dispatch_pipeline
from tests.support.samples import TRIAGED


@pytest.fixture
async def pipeline(database_url):
    processor, published, engine = await dispatch_pipeline(database_url)
    await processor.store.migrate()  # a second start finds the schema current
    yield processor, published, engine
    await engine.dispose()


def issued(published):
    return published.orders()


def events(published):
    return [WORK_ORDER_EVENT.validate_json(o.value) for o in published if o.topic == "workorders.events"]


def send_update(order, status, event, department=None):
    body = WorkOrderUpdate(
        event_id=event, work_order_id=order.work_order_id, dispute_id=order.dispute_id,
        department=department or order.department, status=status, at=NOW,
    )
    return Record("workorders.updates", body.to_bytes())


async def test_graded_dispute_becomes_orders_once(pipeline):
    processor, published, engine = pipeline
    await processor.on_triaged([Record("disputes.triaged", TRIAGED.to_bytes())])
    await processor.on_triaged([Record("disputes.triaged", TRIAGED.to_bytes())])  # redelivered
    orders_out = issued(published)
    assert [(o.department, o.role, o.attempt) for o in orders_out] == [
        ("joint_consultation", "lead", 1), ("labor_arbitration", "support", 1), ("governance_centre", "support", 1),
        ("civil_affairs", "support", 1),
    ]
    assert {o.topic for o in published if o.topic.startswith("workorders.") and o.topic != "workorders.events"} == {
        f"workorders.{d}" for d in ("joint_consultation", "labor_arbitration", "governance_centre", "civil_affairs")
    }
    assert [e.kind for e in events(published)] == ["issued"] * 4
    # The report is encoded once and spliced into each event and the row: the bytes must be what pydantic writes.
    report = TRIAGED.report.model_dump_json()
    event_values = [o.value for o in published if o.topic == "workorders.events"]
    assert all(json.loads(v)["report"] == json.loads(report) for v in event_values)
    assert event_values == [e.to_bytes() for e in events(published)]
    async with engine.connect() as connection:
        assert len((await connection.execute(select(orders))).all()) == 4
        assert (await connection.execute(select(disputes.c.report))).scalar_one() == report


async def test_updates_are_authorised_and_failed_mediation_is_escalated(pipeline):
    processor, published, engine = pipeline
    await processor.on_triaged([Record("disputes.triaged", TRIAGED.to_bytes())])
    lead, support = issued(published)[:2]
    published.clear()
    await processor.on_updates([
        send_update(lead, "accepted", "u1"),
        send_update(support, "resolved", "u2", department="court"),  # not court's order
        Record("workorders.updates", b"{}", partition=1, offset=7),
        send_update(lead, "mediation_failed", "u3"),
        send_update(lead, "mediation_failed", "u3"),  # repeated event id
    ])
    dead = [o for o in published if o.topic == "workorders.updates.invalid"]
    assert sorted(o.header("dlq_reason").split(":")[0] for o in dead) == ["department", "event_id"]
    assert any(o.header("dlq_reason").startswith("department: department_mismatch: ") for o in dead)
    assert [(e.kind, getattr(e, "status", None)) for e in events(published)] == [
        ("status_changed", "accepted"), ("status_changed", "mediation_failed"), ("escalated", None),
    ]
    [request] = [ReassessmentRequested.model_validate_json(o.value) for o in published if o.topic == "disputes.reassess"]
    assert request.history.failed_mediations == 2 and request.history.previous_level == 3
    async with engine.connect() as connection:
        status = dict((await connection.execute(select(orders.c.work_order_id, orders.c.status))).all())
    assert status[support.work_order_id] == "issued", "the refused update changed nothing"
    assert status[lead.work_order_id] == "mediation_failed"
    assert processor.metrics.duplicates.labels("updates")._value.get() == 1


async def test_invalid_triaged_events_are_dead_lettered(pipeline):
    processor, published, _ = pipeline
    await processor.on_triaged([Record("disputes.triaged", json.dumps({"level": 9}).encode())])
    [dead] = published
    assert dead.topic == "disputes.invalid" and dead.header("dlq_source_topic") == "disputes.triaged"


async def test_an_impostor_on_its_own_topic_changes_nothing_and_leaves_the_event_id_free(pipeline):
    processor, published, engine = pipeline
    await processor.on_triaged([Record("disputes.triaged", TRIAGED.to_bytes())])
    lead = issued(published)[0]
    published.clear()
    forged = send_update(lead, "resolved", "u-same")
    # The traffic police write their own topic (all their ACL allows), naming the lead department in the payload.
    await processor.on_updates([Record(updates_topic("traffic_police"), forged.value, offset=1)])
    [dead] = published
    assert dead.topic == "workorders.updates.invalid" and dead.header("dlq_source_topic") == updates_topic("traffic_police")
    assert dead.header("dlq_reason").startswith("department: department_mismatch: ")
    published.clear()
    # The lead department's own update with the same event id is applied: the impostor did not claim it.
    await processor.on_updates([Record(updates_topic(lead.department), send_update(lead, "accepted", "u-same").value, offset=2)])
    assert [(e.kind, e.status) for e in events(published)] == [("status_changed", "accepted")]
    async with engine.connect() as connection:
        status = dict((await connection.execute(select(orders.c.work_order_id, orders.c.status))).all())
    assert status[lead.work_order_id] == "accepted"
    assert processor.metrics.rejected_updates.labels("department_mismatch")._value.get() == 1


async def test_orders_are_disclosed_by_the_policy_and_a_reassessment_from_follow_up_gets_the_stored_parties_back(pipeline):
    processor, published, engine = pipeline
    people = [{"role": "complainant", "kind": "person", "name": "王五", "id_number": "330681198001011233", "phone": "13700000002", "age": 46},
              {"role": "respondent", "kind": "person", "name": "赵六", "id_number": "330681197502021234", "phone": "13600000003"}]
    raw = TRIAGED.model_dump(mode="json")
    raw["report"] |= {"parties": people, "category": "traffic_accident"}
    raw |= {"level": 2, "tier": "mediation_room", "urgency": "immediate", "flags": []}
    first = TRIAGED.model_validate_json(json.dumps(raw))
    await processor.on_triaged([Record("disputes.triaged", first.to_bytes())])
    ids = {(o.department, o.role): [p.id_number for p in o.parties] for o in issued(published)}
    assert ids == {("community_police", "lead"): [p["id_number"] for p in people], ("mediation_room", "lead"): [None, None],
                   ("traffic_police", "support"): [p["id_number"] for p in people]}
    audited = [e.report for e in events(published)]
    assert audited and all(p.id_number is None for r in audited for p in r.parties)

    # Follow-up re-grades an overdue dispute with the audit stream's report: no ID numbers.
    published.clear()
    again = first.model_copy(update={"event_id": "tri-breach", "source_event_id": "rea-breach", "cause": "sla_breached", "report": audited[0]})
    await processor.on_triaged([Record("disputes.triaged", again.to_bytes())])
    police = [o for o in issued(published) if o.department == "community_police"]
    assert [(o.attempt, [p.id_number for p in o.parties]) for o in police] == [(2, [p["id_number"] for p in people])]


def reported_again(event, dispute, source, same_matter=()):
    """Return TRIAGED's dispute reported again through `source` under `dispute`, graded 1 on its own."""
    report = TRIAGED.report.model_copy(update={"dispute_id": dispute, "event_id": f"src-{event}", "source": source})
    return TRIAGED.model_copy(update={
        "event_id": event, "source_event_id": f"src-{event}", "dispute_id": dispute, "level": 1, "tier": "on_site",
        "urgency": "routine", "same_matter": list(same_matter), "report": report,
    })


def rereports(metrics):
    """Read fengqiao_dispatch_rereports_total by (source, matched_by, outcome), as a scrape shows it."""
    return {
        (s.labels["source"], s.labels["matched_by"], s.labels["outcome"]): s.value
        for family in metrics.rereports.collect() for s in family.samples if s.name == "fengqiao_dispatch_rereports_total"
    }


async def test_reports_of_a_held_case_are_counted_by_channel_match_and_outcome_once(pipeline):
    processor, published, _ = pipeline
    await processor.on_triaged([Record("disputes.triaged", TRIAGED.to_bytes())])
    assert rereports(processor.metrics) == {}  # a first report is no re-report
    by_110 = reported_again("tri-110", TRIAGED.dispute_id, "police_110")
    by_hotline = reported_again("tri-12345", "H-12345-1", "hotline_12345", same_matter=[TRIAGED.dispute_id])
    await processor.on_triaged([Record("disputes.triaged", by_110.to_bytes()), Record("disputes.triaged", by_hotline.to_bytes())])
    await processor.on_triaged([Record("disputes.triaged", by_hotline.to_bytes())])  # redelivered: counted once
    assert rereports(processor.metrics) == {
        ("police_110", "same_dispute_id", "joined"): 1.0,
        ("hotline_12345", "same_matter", "joined"): 1.0,
    }
