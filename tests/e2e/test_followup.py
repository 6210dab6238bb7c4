"""The whole loop on the real broker with a simulated clock: deadlines breach, revisits come due, rebounds re-grade."""

import json
from collections import Counter

import pytest

from schemas.disputes import DISPUTES_REPORTED
from schemas.followups import (
    FOLLOWUPS_DUE,
    FOLLOWUPS_RESULTS,
    FollowupDue,
    FollowupResult,
    due_topic,
)
from schemas.workorders import DEPARTMENTS
from services.dispatch.disclosure import DEFAULT_DISCLOSURE, disclose, load_disclosure
from tests.support.conditions import wait_for
from tests.support.department import Department, followup_messages, report
from tests.support.loop import ANSWERING_SPEED
from tests.support.processes import produce, start_service
from tests.support.samples import report_payload

POLICY = load_disclosure(DEFAULT_DISCLOSURE)


async def due_messages(bootstrap, settings, topics=(FOLLOWUPS_DUE,)):
    # A department's due topic also carries answers to its revisit results: the dues are what names no `notice`.
    return [m for m in await followup_messages(bootstrap, settings, topics) if isinstance(m, FollowupDue)]


EVERY_DUE_TOPIC = tuple(due_topic(d) for d in DEPARTMENTS)


async def test_an_overdue_order_warns_once_breaches_once_and_is_regraded_higher(embedded_broker, kafka_settings, loop):
    bootstrap = embedded_broker.bootstrap_servers
    department = Department(bootstrap, kafka_settings)
    await report(bootstrap, kafka_settings, "D-late")
    first = await department.wait_order("D-late", "community_police", 1)
    second = await department.wait_order("D-late", "mediation_room", 2)  # after the breach and the re-grading
    assert (first.level, second.level) == (1, 2)
    about_first = [d for d in await due_messages(bootstrap, kafka_settings) if d.work_order_id == first.work_order_id]
    assert sorted((d.kind, d.department) for d in about_first) == [("sla_breached", "governance_centre"), ("sla_warning", "community_police")]
    warning = next(d for d in about_first if d.kind == "sla_warning")
    assert warning.fired_at < first.due_at


@pytest.mark.parametrize("loop", [ANSWERING_SPEED], indirect=True)
async def test_a_resolved_dispute_is_revisited_and_a_rebound_is_regraded(embedded_broker, kafka_settings, loop):
    bootstrap = embedded_broker.bootstrap_servers
    department = Department(bootstrap, kafka_settings)
    await report(bootstrap, kafka_settings, "D-back")
    lead = await department.wait_order("D-back", "community_police", 1)
    await department.update(lead, "resolved")

    async def revisited():
        return any(d.kind == "revisit" and d.dispute_id == "D-back" for d in await due_messages(bootstrap, kafka_settings))

    await wait_for(revisited, 60)
    [shared] = [d for d in await due_messages(bootstrap, kafka_settings) if d.kind == "revisit" and d.dispute_id == "D-back" and d.revisit_number == 1]
    # The lead department's own due topic has it with the parties: the police lead received every detail, the revisit
    # team what its policy gives it (no ID numbers). The operators' shared feed has the same due without anyone's details.
    [revisit] = [d for d in await due_messages(bootstrap, kafka_settings, [due_topic("community_police")]) if d.followup_id == shared.followup_id]
    assert (revisit.department, revisit.revisit_number, revisit.parties) == ("community_police", 1, disclose(POLICY.revisit, lead.parties))
    assert [p.id_number for p in revisit.parties] == [None, None] != [p.id_number for p in lead.parties]
    assert (shared.parties, shared.disclosure, revisit.disclosure) == ([], None, POLICY.version)
    assert shared.model_dump(exclude={"parties", "disclosure"}) == revisit.model_dump(exclude={"parties", "disclosure"})
    # No other department's due topic has it.
    elsewhere = [t for t in EVERY_DUE_TOPIC if t != due_topic("community_police")]
    assert not [d for d in await due_messages(bootstrap, kafka_settings, elsewhere) if d.dispute_id == "D-back" and d.kind == "revisit"]
    answer = FollowupResult(
        event_id="res-back", followup_id=revisit.followup_id, dispute_id="D-back", satisfaction=2,
        agreement_fulfilled=False, rebound=True, note="双方再次争吵", at=revisit.fired_at,
    )
    await produce(bootstrap, kafka_settings.topic(FOLLOWUPS_RESULTS), [(b"D-back", answer.to_bytes())])
    regraded = await department.wait_order("D-back", "mediation_room", 2)
    assert regraded.level >= 2
    assert any(r.id == "L2-repeat" for r in regraded.matched_rules)


async def test_killing_followup_mid_schedule_loses_no_timer(embedded_broker, kafka_settings, loop, tmp_path):
    bootstrap = embedded_broker.bootstrap_servers
    department = Department(bootstrap, kafka_settings)
    disputes = [f"D-k{n}" for n in range(60)]
    # Different people in each dispute, so none is correlated with another.
    reports = [
        (d.encode(), json.dumps(report_payload(event_id=f"evt-{d}", dispute_id=d, parties=[{"role": "complainant", "kind": "person", "name": "某", "phone": f"1380000{n:04d}"}])).encode())
        for n, d in enumerate(disputes)
    ]
    await produce(bootstrap, kafka_settings.topic(DISPUTES_REPORTED), reports)

    async def some_warnings():
        return sum(d.kind == "sla_warning" for d in await due_messages(bootstrap, kafka_settings)) >= 1

    await wait_for(some_warnings, 60)
    loop["followup"].kill()
    restarted = start_service("followup", loop["env"], tmp_path)
    loop["followup"] = restarted
    await restarted.wait_ready()
    first_orders = {o.work_order_id for o in await department.orders() if o.attempt == 1 and o.dispute_id in disputes}
    assert len(first_orders) == 60

    async def every_first_order_breached():
        fired = {(d.work_order_id, d.kind) for d in await due_messages(bootstrap, kafka_settings)}
        return all((o, "sla_breached") in fired and (o, "sla_warning") in fired for o in first_orders)

    await wait_for(every_first_order_breached, 90)
    counts = Counter(d.followup_id for d in await due_messages(bootstrap, kafka_settings) if d.work_order_id in first_orders)
    assert len(counts) == 120
    # A round published but not recorded before the kill fires again with the same followup_id.
    assert sum(counts.values()) - len(counts) <= 500
    # And again on both topics: each department's topic holds exactly the dues the shared feed shows of it.
    async def each_on_its_department_topic() -> bool:
        dues = await due_messages(bootstrap, kafka_settings, EVERY_DUE_TOPIC)
        return {d.followup_id for d in dues if d.work_order_id in first_orders} == set(counts)

    await wait_for(each_on_its_department_topic, 30)
