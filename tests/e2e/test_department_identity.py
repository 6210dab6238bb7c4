"""The topic a department writes names it: updates and revisit results on department topics, through the real broker.

Each department may write only its own `workorders.<department>.updates` and `followups.<department>.results`
(deploy/acls): a payload naming another department there is an impostor, dead-lettered without effect.
"""

import pytest

from schemas.followups import FOLLOWUPS_RESULTS_INVALID, FollowupDue, ResultAnswered, due_topic, results_topic
from schemas.workorders import WORKORDERS_UPDATES_INVALID, updates_topic
from tests.support.department import Department, followup_messages, report
from tests.support.loop import ANSWERING_SPEED
from tests.support.processes import read_all, wait_until_committed

# Every test here answers an order or a revisit: the clock leaves a department time to answer before the deadline.
pytestmark = pytest.mark.parametrize("loop", [ANSWERING_SPEED], indirect=True)


async def dead_letters_from(bootstrap, settings, invalid_topic, source_topic):
    """Return the reasons of the dead letters that came from `source_topic`."""
    records = await read_all(bootstrap, [settings.topic(invalid_topic)])
    headers = [dict(r.headers) for r in records]
    return [h["dlq_reason"].decode() for h in headers if h["dlq_source_topic"].decode() == settings.topic(source_topic)]


async def changes_of(department, order):
    return [e.status for e in await department.events() if e.kind == "status_changed" and e.work_order_id == order.work_order_id]


async def test_an_update_on_the_department_s_own_topic_takes_effect(embedded_broker, kafka_settings, loop):
    bootstrap = embedded_broker.bootstrap_servers
    department = Department(bootstrap, kafka_settings)
    await report(bootstrap, kafka_settings, "D-own")
    lead = await department.wait_order("D-own", "community_police", 1)
    await department.update(lead, "accepted", topic=updates_topic("community_police"))

    async def accepted():
        return "accepted" in await changes_of(department, lead)

    await loop["dispatch"].wait_for(accepted, 60)


async def test_a_resolution_written_on_another_department_s_topic_closes_nothing(embedded_broker, kafka_settings, loop):
    bootstrap = embedded_broker.bootstrap_servers
    department = Department(bootstrap, kafka_settings)
    await report(bootstrap, kafka_settings, "D-forged")
    lead = await department.wait_order("D-forged", "community_police", 1)
    # The attack: the traffic police may write only their own topic, and write there that the police resolved it.
    await department.update(lead, "resolved", department="community_police", topic=updates_topic("traffic_police"), event_id="upd-forged")

    async def refused():
        reasons = await dead_letters_from(bootstrap, kafka_settings, WORKORDERS_UPDATES_INVALID, updates_topic("traffic_police"))
        return any(r.startswith("department: department_mismatch: ") for r in reasons)

    await loop["dispatch"].wait_for(refused, 60)
    await wait_until_committed(bootstrap, f"{loop['env']['DISPATCH_GROUP_ID']}.updates", department.updates_topics())
    assert "resolved" not in await changes_of(department, lead)
    assert not [e for e in await department.events() if e.kind == "dispute_resolved" and e.dispute_id == "D-forged"]
    # The police's own update, with the very event id the forger used, still counts.
    await department.update(lead, "resolved", event_id="upd-forged")

    async def resolved():
        return "resolved" in await changes_of(department, lead)

    await loop["dispatch"].wait_for(resolved, 60)


async def test_a_revisit_result_on_another_department_s_topic_regrades_nothing(embedded_broker, kafka_settings, loop):
    bootstrap = embedded_broker.bootstrap_servers
    department = Department(bootstrap, kafka_settings)
    await report(bootstrap, kafka_settings, "D-revisit")
    lead = await department.wait_order("D-revisit", "community_police", 1)
    await department.update(lead, "resolved")

    async def revisit():
        # As the police's revisit team reads it: off the police's own due topic, the only one its ACL lets it read.
        found = await followup_messages(bootstrap, kafka_settings, [due_topic("community_police")])
        return next((d for d in found if isinstance(d, FollowupDue) and d.kind == "revisit" and d.dispute_id == "D-revisit"), None)

    await loop["followup"].wait_for(revisit, 60)
    due = await revisit()
    assert due.department == "community_police"
    # A forged rebound on the court's own topic would send the dispute back to triage, were it believed.
    await department.answer(due, department="court", event_id="res-forged")

    async def refused():
        reasons = await dead_letters_from(bootstrap, kafka_settings, FOLLOWUPS_RESULTS_INVALID, results_topic("court"))
        return any(r.startswith("department: department_mismatch: ") for r in reasons)

    await loop["followup"].wait_for(refused, 60)
    await wait_until_committed(bootstrap, f"{loop['env']['FOLLOWUP_GROUP_ID']}.results", department.results_topics())
    assert not [o for o in await department.orders("D-revisit") if o.attempt > 1], "the forged rebound re-graded nothing"
    # The police's own answer, with the same event id, is believed: the rebound re-grades the dispute.
    await department.answer(due, event_id="res-forged")
    await department.wait_order("D-revisit", "mediation_room", 2)

    async def answered():
        # The police's revisit team hears back on its own due topic: counted, and sent to triage again.
        found = await followup_messages(bootstrap, kafka_settings, [due_topic("community_police")])
        return [(a.result_event_id, a.outcome, a.reassessed) for a in found if isinstance(a, ResultAnswered)]

    await loop["followup"].wait_for(answered, 60)
    assert await answered() == [("res-forged", "accepted", True)]
