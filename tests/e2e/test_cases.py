"""One case per dispute through the real broker: triage and dispatch as processes, a department and three channels."""

import pytest

from schemas.disputes import DISPUTES_REASSESS, ReassessmentRequested
from tests.support.conditions import wait_for
from tests.support.department import Department, report
from tests.support.processes import read_all, services_env, start_service

CASE = "D-case"
# The grid app's report, as every one of this test's reports but the other matter: a family quarrel in 枫源村.
SAME_MATTER = {"category": "family_marriage"}


@pytest.fixture
async def stack(embedded_broker, kafka_settings, contract_topics_created, tmp_path):
    """Triage and dispatch processes sharing the test's topics."""
    env = services_env(embedded_broker.bootstrap_servers, kafka_settings.topic_prefix, tmp_path, "triage", "dispatch")
    services = [start_service("triage", env, tmp_path), start_service("dispatch", env, tmp_path)]
    try:
        for service in services:
            await service.wait_ready()
        yield services
    finally:
        for service in services:
            assert service.stop() == 0, service.log_tail()


async def reported_again(department, reported_id):
    """Wait for dispatch's record of a report that joined or reopened a case, and return it."""
    async def seen():
        return [e for e in await department.events() if e.kind == "reported_again" and e.reported_dispute_id == reported_id]

    await wait_for(seen, 60)
    [event] = await seen()
    return event


async def test_reports_of_one_quarrel_through_three_channels_make_one_case(embedded_broker, kafka_settings, stack):
    bootstrap = embedded_broker.bootstrap_servers
    department = Department(bootstrap, kafka_settings)

    # A grid worker reports a family quarrel; the first mediation fails: attempt 2 at level 2, led by the mediation room.
    await report(bootstrap, kafka_settings, CASE, source="grid_app", **SAME_MATTER)
    first = await department.wait_order(CASE, "community_police", 1)
    await department.update(first, "mediation_failed")
    lead = await department.wait_order(CASE, "mediation_room", 2)
    assert lead.level == 2

    # Reported again through 110 under the case's id: graded 1 on its own, it keeps the case at level 2 and its order.
    await report(bootstrap, kafka_settings, CASE, event_id="evt-110", source="police_110", **SAME_MATTER)
    again = await reported_again(department, CASE)
    assert (again.outcome, again.matched_by, again.level, again.source) == ("joined", "same_dispute_id", 2, "police_110")
    holders = {o.department: o.work_order_id for o in await department.orders(CASE) if o.attempt == 2}
    notices = await department.notices(CASE)
    assert {(n.department, n.source) for n in notices} == {(d, "police_110") for d in holders}
    assert {n.department: n.work_order_ids for n in notices}["mediation_room"] == [lead.work_order_id]

    # The 12345 hotline's platform reports it under its own id: no order, and the record names both ids.
    await report(bootstrap, kafka_settings, "H-12345-1", source="hotline_12345", **SAME_MATTER)
    merged = await reported_again(department, "H-12345-1")
    assert (merged.dispute_id, merged.outcome, merged.matched_by) == (CASE, "joined", "same_matter")
    # The case's departments are told on their own topics, each notice naming the case and the hotline's id.
    told = [n for n in await department.notices(CASE) if n.reported_dispute_id == "H-12345-1"]
    assert {(n.department, n.dispute_id, n.source) for n in told} == {(d, CASE, "hotline_12345") for d in holders}

    # The same complainant in a wage dispute is another matter: a case of its own, flagged as a repeat party.
    await report(bootstrap, kafka_settings, "W-other", category="labor_wage")
    other = await department.wait_order("W-other", "mediation_room", 1)
    assert other.level == 2 and "L2-repeat" in {r.id for r in other.matched_rules}

    # The case is resolved; reported again soon after, it is reopened as a rebound (attempt 3), not a fresh case.
    await department.update(lead, "resolved")

    async def resolved():
        return any(e.kind == "dispute_resolved" and e.dispute_id == CASE for e in await department.events())

    await wait_for(resolved, 60)
    await report(bootstrap, kafka_settings, "P-110-2", source="police_110", **SAME_MATTER)
    reopened = await reported_again(department, "P-110-2")
    assert (reopened.dispute_id, reopened.outcome) == (CASE, "reopened")
    third = await department.wait_order(CASE, "mediation_room", 3)
    assert third.level >= 2 and "L2-repeat" in {r.id for r in third.matched_rules}  # history.rebounds >= 1
    # Triage was asked to grade it again as a rebound: one rebound more than the case had (none), its history kept.
    [again_graded] = [r for r in await reassessments(bootstrap, kafka_settings, CASE) if r.reason == "rebound"]
    assert (again_graded.history.rebounds, again_graded.history.failed_mediations) == (1, 1)

    # Counted once: orders only ever went to the case and the other matter, never to the ids that joined them.
    assert {o.dispute_id for o in await department.orders()} == {CASE, "W-other"}


async def reassessments(bootstrap, kafka_settings, dispute_id):
    """Read the reassessments dispatch asked triage for, of one dispute."""
    found = [ReassessmentRequested.model_validate_json(r.value) for r in await read_all(bootstrap, [kafka_settings.topic(DISPUTES_REASSESS)])]
    return [r for r in found if r.dispute_id == dispute_id]


async def test_a_hotline_duplicate_of_a_level_1_case_joins_it_at_level_1(embedded_broker, kafka_settings, stack):
    bootstrap = embedded_broker.bootstrap_servers
    department = Department(bootstrap, kafka_settings)
    # A family quarrel from the grid app: level 1, the community police on site.
    await report(bootstrap, kafka_settings, CASE, source="grid_app", **SAME_MATTER)
    first = await department.wait_order(CASE, "community_police", 1)
    assert first.level == 1

    # The 12345 hotline's platform reports it minutes later under its own id. Triage finds the same matter and does not
    # count it as the parties quarrelling again (no repeat_parties, no L2-repeat): it grades 1, so the case keeps its
    # order and its level; graded 2 it would have started a new attempt and superseded the police's order.
    await report(bootstrap, kafka_settings, "H-12345-9", source="hotline_12345", reported_at="2026-03-02T09:40:00+08:00", **SAME_MATTER)
    merged = await reported_again(department, "H-12345-9")
    assert (merged.dispute_id, merged.outcome, merged.matched_by, merged.level, merged.attempt) == (CASE, "joined", "same_matter", 1, 1)
    [told] = [n for n in await department.notices(CASE) if n.reported_dispute_id == "H-12345-9"]
    assert (told.department, told.work_order_ids, told.source) == ("community_police", [first.work_order_id], "hotline_12345")
    assert [(o.dispute_id, o.attempt, o.level) for o in await department.orders()] == [(CASE, 1, 1)]  # no order for H-12345-9
    assert not [e for e in await department.events() if e.kind == "status_changed" and e.status in ("superseded", "cancelled")]
