"""Dispatch as a real process with triage running and a simulated department, on the real broker."""

import json

import pytest

from schemas.disputes import DISPUTES_REPORTED, DISPUTES_TRIAGED
from schemas.workorders import WORKORDERS_UPDATES_INVALID
from tests.support.conditions import wait_for
from tests.support.department import Department, report
from tests.support.postgres import empty_postgres
from tests.support.processes import (
    services_env,
    produce,
    read_all,
    start_service,
    wait_until_committed,
)
from tests.support.samples import report_payload


@pytest.fixture(params=["sqlite", "postgres"])
async def stack(request, embedded_broker, kafka_settings, contract_topics_created, tmp_path):
    """Triage and dispatch processes sharing the test's topics and database."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'dispatch.db'}" if request.param == "sqlite" else await empty_postgres()
    env = services_env(embedded_broker.bootstrap_servers, kafka_settings.topic_prefix, tmp_path, "triage", "dispatch") | {"DISPATCH_BATCH_SIZE": "50"}
    triage = start_service("triage", env, tmp_path)
    dispatch = start_service("dispatch", env | {"DATABASE_URL": url}, tmp_path)
    services = {"triage": triage, "dispatch": dispatch, "env": env | {"DATABASE_URL": url}}
    try:
        await triage.wait_ready()
        await dispatch.wait_ready()
        yield services
    finally:
        for name in ("dispatch", "triage"):
            assert services[name].stop() == 0, services[name].log_tail()


async def test_three_failed_mediations_reach_joint_consultation_on_attempt_4(embedded_broker, kafka_settings, stack):
    bootstrap = embedded_broker.bootstrap_servers
    department = Department(bootstrap, kafka_settings)
    await report(bootstrap, kafka_settings, "D-fail")
    lead = await department.wait_order("D-fail", "community_police", 1)
    for attempt, next_lead in ((1, "mediation_room"), (2, "mediation_room"), (3, "joint_consultation")):
        await department.update(lead, "mediation_failed")
        lead = await department.wait_order("D-fail", next_lead, attempt + 1)
    assert (lead.level, lead.tier, lead.attempt) == (3, "joint_consultation", 4)
    orders = await department.orders("D-fail")
    support = [o for o in orders if o.role == "support" and o.attempt in (2, 3)]
    assert {o.department for o in support} == {"women_federation"}
    events = await department.events()
    superseded = {e.work_order_id for e in events if e.kind == "status_changed" and e.status == "superseded"}
    assert {o.work_order_id for o in support} <= superseded
    assert [e.to for e in events if e.kind == "escalated" and e.dispute_id == "D-fail"] == ["triage"] * 3

    # An update from a department that does not own the order is refused and changes nothing.
    await department.update(lead, "resolved", department="court")

    async def refused():
        dead = await read_all(bootstrap, [kafka_settings.topic(WORKORDERS_UPDATES_INVALID)])
        return any(dict(r.headers)["dlq_reason"].startswith(b"department: department_mismatch") for r in dead)

    await wait_for(refused, 60)
    await wait_until_committed(bootstrap, f"{stack['env']['DISPATCH_GROUP_ID']}.updates", department.updates_topics())
    assert not [e for e in await department.events() if getattr(e, "work_order_id", None) == lead.work_order_id and e.kind == "status_changed"]


async def test_a_returned_order_reaches_the_governance_centre(embedded_broker, kafka_settings, stack):
    bootstrap = embedded_broker.bootstrap_servers
    department = Department(bootstrap, kafka_settings)
    await report(bootstrap, kafka_settings, "D-ret", category="neighbor", party_count=4)
    support = await department.wait_order("D-ret", "justice_office", 1)
    await department.update(support, "returned")
    centre = await department.wait_order("D-ret", "governance_centre", 1)
    assert (centre.role, centre.level) == ("support", 2)
    events = await department.events()
    assert [(e.reason, e.to) for e in events if e.kind == "escalated" and e.dispute_id == "D-ret"] == [("returned", "governance_centre")]


async def test_restarting_dispatch_mid_stream_issues_no_duplicate_orders(embedded_broker, kafka_settings, stack, tmp_path):
    bootstrap = embedded_broker.bootstrap_servers
    department = Department(bootstrap, kafka_settings)
    # 400 quarrels between different people: with the same complainant, category and community they would be one case.
    reports = [
        (f"D-{n}".encode(), json.dumps(report_payload(event_id=f"evt-{n}", dispute_id=f"D-{n}", party_count=1 + n % 5, parties=_parties(n))).encode())
        for n in range(400)
    ]
    await produce(bootstrap, kafka_settings.topic(DISPUTES_REPORTED), reports)

    async def some_orders():
        return len(await department.orders()) >= 50

    await wait_for(some_orders, 60)
    stack["dispatch"].kill()
    restarted = start_service("dispatch", stack["env"], tmp_path)
    stack["dispatch"] = restarted
    await restarted.wait_ready()
    await wait_until_committed(bootstrap, stack['env']['TRIAGE_GROUP_ID'], [kafka_settings.topic(DISPUTES_REPORTED)], 90)
    await wait_until_committed(bootstrap, f"{stack['env']['DISPATCH_GROUP_ID']}.triaged", [kafka_settings.topic(DISPUTES_TRIAGED)], 90)
    orders = await department.orders()
    by_slot = {}
    for order in orders:
        by_slot.setdefault((order.dispute_id, order.department, order.attempt), set()).add(order.work_order_id)
    assert {d for d, _, _ in by_slot} == {f"D-{n}" for n in range(400)}
    assert all(len(ids) == 1 for ids in by_slot.values()), "one order per dispute, department and attempt"
    assert {a for _, _, a in by_slot} == {1}
    # Orders published but not recorded before the kill are published again with the same id.
    assert len(orders) - len(by_slot) <= 4 * 50


def _parties(n: int) -> list[dict]:
    return [{"role": "complainant", "kind": "person", "name": "王某", "phone": f"139{n:08d}"}, {"role": "respondent", "kind": "person", "name": "李某"}]
