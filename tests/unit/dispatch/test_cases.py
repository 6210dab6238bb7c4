"""One case per dispute, table-driven: where a graded report goes and what it does to the case it joins."""

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from schemas.disputes import DisputeTriaged
from services.dispatch.calendar import WorkingCalendar
from services.dispatch.cases import cases_for, gathered, take_report
from services.dispatch.disclosure import DEFAULT_DISCLOSURE, load_disclosure
from services.dispatch.lifecycle import dispatch
from services.dispatch.routing import DEFAULT_ROUTING, load_routing
from tests.support.samples import TRIAGED, at

TABLE = load_routing(DEFAULT_ROUTING)
POLICY = load_disclosure(DEFAULT_DISCLOSURE)
CALENDAR = WorkingCalendar()
T0 = at("2026-03-02T10:00:00+08:00")
TIERS = {1: "on_site", 2: "mediation_room", 3: "joint_consultation"}
CASE = TRIAGED.dispute_id
WINDOW = timedelta(days=TABLE.cases.reopen_within_days)


def graded(level, event, dispute=CASE, cause="reported", after=timedelta(0), same_matter=(), source="grid_app", history=None, phone="13800000001"):
    raw = TRIAGED.model_dump(mode="json") | {
        "event_id": event, "source_event_id": f"src-{event}", "dispute_id": dispute, "level": level, "tier": TIERS[level],
        "urgency": "routine", "flags": [], "cause": cause, "triaged_at": (T0 + after).isoformat(), "same_matter": list(same_matter),
    }
    raw["report"] |= {"dispute_id": dispute, "event_id": f"src-{event}", "source": source, "history": history or {},
                      "description": f"{source} 报称：{event}", "parties": [{"role": "complainant", "kind": "person", "name": "王某", "phone": phone}]}
    return DisputeTriaged.model_validate_json(json.dumps(raw))


def held(level=2, resolved=None, failed=0):
    """Return a case at `level` as dispatch holds it (attempt 1, after `failed` failed mediations), optionally resolved at a time."""
    first = graded(level, "tri-0", history={"failed_mediations": failed, "mediation_attempts": failed})
    effects = dispatch(first, None, [], T0, TABLE, CALENDAR, POLICY)
    dispute, orders = effects.disputes[CASE], {o.work_order_id: o for o in effects.orders.values()}
    if resolved is not None:
        dispute = replace(dispute, resolved_at=T0 + resolved)
        orders = {i: replace(o, status="resolved") for i, o in orders.items()}
    return {CASE: dispute}, {CASE: orders}


def take(report, disputes, orders, aliases=None):
    own, matter = cases_for(report, aliases or {}, disputes, orders)
    return take_report(report, own, matter, TABLE, CALENDAR, POLICY)


def summary(effects):
    """Say what a report did: the attempts it issued, superseded orders, the audit outcome, notices, reassessments, aliases."""
    return {
        "issued": sorted({(o.dispute_id, o.attempt, o.level) for o in effects.issued}),
        "superseded": sum(e.kind == "status_changed" and e.status == "superseded" for e in effects.events),
        "outcome": [(e.reported_dispute_id, e.dispute_id, e.matched_by, e.outcome) for e in effects.events if e.kind == "reported_again"],
        "told": sorted(n.department for n in effects.notices if n.notice == "reported_again"),
        "cancelled": sorted((n.department, n.reason) for n in effects.notices if n.notice == "order_cancelled"),
        "reassessed": [(r.dispute_id, r.reason, r.history.rebounds) for r in effects.reassessments],
        "aliases": effects.aliases,
    }


NOTHING = {"issued": [], "superseded": 0, "outcome": [], "told": [], "cancelled": [], "reassessed": [], "aliases": {}}
HOLDERS = ["labor_arbitration", "mediation_room"]  # a level-2 wage dispute's lead and its category's support
# At level 3 the lead gets the new attempt's order in place of its own; the mediation room has no part in it.
CANCELLED = [("labor_arbitration", "superseded"), ("mediation_room", "rerouted")]
# (case, the held case, the report, what it does)
CASES = [
    ("a re-report of an open case grading lower joins it: no order, no level lost",
     held(2), graded(1, "tri-110", source="police_110"),
     NOTHING | {"outcome": [(CASE, CASE, "same_dispute_id", "joined")], "told": HOLDERS}),
    ("a re-report grading the same joins it",
     held(2), graded(2, "tri-110", source="police_110"),
     NOTHING | {"outcome": [(CASE, CASE, "same_dispute_id", "joined")], "told": HOLDERS}),
    ("a re-report grading higher: a new attempt at that level, the open orders superseded",
     held(2), graded(3, "tri-110", source="police_110"),
     NOTHING | {"issued": [(CASE, 2, 3)], "superseded": 2, "outcome": [(CASE, CASE, "same_dispute_id", "regraded")], "cancelled": CANCELLED}),
    ("the hotline under its own id, same matter as an open case: joins it, no order, the ids named",
     held(2), graded(1, "tri-12345", dispute="H-12345-77", same_matter=[CASE], source="hotline_12345"),
     NOTHING | {"outcome": [("H-12345-77", CASE, "same_matter", "joined")], "told": HOLDERS, "aliases": {"H-12345-77": CASE}}),
    # Triage grades the same matter without repeat_parties (one quarrel reported again), so a level-1 case stays level 1.
    ("the hotline under its own id, same matter as an open level-1 case, graded 1: joins it, the case stays level 1",
     held(1), graded(1, "tri-12345", dispute="H-12345-78", same_matter=[CASE], source="hotline_12345"),
     NOTHING | {"outcome": [("H-12345-78", CASE, "same_matter", "joined")], "told": ["community_police"], "aliases": {"H-12345-78": CASE}}),
    ("a re-report of an open level-1 case under its own id, graded 1: joins it",
     held(1), graded(1, "tri-110", source="police_110"),
     NOTHING | {"outcome": [(CASE, CASE, "same_dispute_id", "joined")], "told": ["community_police"]}),
    ("the same matter grading higher on its own account (a threat, say): a new attempt at that level",
     held(1), graded(2, "tri-12345", dispute="H-12345-78", same_matter=[CASE], source="hotline_12345"),
     NOTHING | {"issued": [(CASE, 2, 2)], "superseded": 1, "outcome": [("H-12345-78", CASE, "same_matter", "regraded")],
                "cancelled": [("community_police", "rerouted")], "aliases": {"H-12345-78": CASE}}),
    ("same person, another matter (triage names no same matter): a case of its own",
     held(2), graded(2, "tri-x", dispute="X-1"),
     NOTHING | {"issued": [("X-1", 1, 2)]}),
    ("a report of a case resolved ten days ago reopens it as a rebound",
     held(2, resolved=timedelta(days=1)), graded(1, "tri-back", dispute="H-2", same_matter=[CASE], after=timedelta(days=11)),
     NOTHING | {"outcome": [("H-2", CASE, "same_matter", "reopened")], "reassessed": [(CASE, "rebound", 1)], "aliases": {"H-2": CASE}}),
    ("a re-report under the case's id within the window reopens it too",
     held(2, resolved=timedelta(days=1)), graded(1, "tri-back", after=timedelta(days=31)),
     NOTHING | {"outcome": [(CASE, CASE, "same_dispute_id", "reopened")], "reassessed": [(CASE, "rebound", 1)]}),
    ("resolved longer ago than the window, under another id: a new case",
     held(2, resolved=timedelta(days=1)), graded(1, "tri-late", dispute="H-3", same_matter=[CASE], after=timedelta(days=32)),
     NOTHING | {"issued": [("H-3", 1, 1)]}),
    ("resolved longer ago, under its own id: a new attempt that keeps the history",
     held(2, resolved=timedelta(days=1)), graded(1, "tri-late", after=timedelta(days=32)),
     NOTHING | {"issued": [(CASE, 2, 1)], "outcome": [(CASE, CASE, "same_dispute_id", "renewed")]}),
    ("a reassessment is the next attempt, as ever",
     held(2), graded(3, "tri-rea", cause="mediation_failed"),
     NOTHING | {"issued": [(CASE, 2, 3)], "superseded": 2, "cancelled": CANCELLED}),
    ("a breach's re-grading of an open case is the next attempt",
     held(2), graded(3, "tri-breach", cause="sla_breached", after=timedelta(days=10)),
     NOTHING | {"issued": [(CASE, 2, 3)], "superseded": 2, "cancelled": CANCELLED}),
    ("a breach's re-grading of a case resolved before it arrived does nothing: the resolution stands, revisits follow",
     held(2, resolved=timedelta(days=9)), graded(3, "tri-breach", cause="sla_breached", after=timedelta(days=10)),
     NOTHING),
    ("a rebound's re-grading of a resolved case is the next attempt",
     held(2, resolved=timedelta(days=1)), graded(2, "tri-rebound", cause="rebound", after=timedelta(days=8)),
     NOTHING | {"issued": [(CASE, 2, 2)]}),
]


@pytest.mark.parametrize("case, holding, report, expected", CASES, ids=[c[0] for c in CASES])
def test_a_report_goes_where_its_case_is(case, holding, report, expected):
    disputes, orders = holding
    assert summary(take(report, disputes, orders)) == expected


def test_a_joined_report_keeps_the_level_and_history_and_adds_its_parties_and_description():
    disputes, orders = held(2, failed=1)
    report = graded(1, "tri-110", dispute="P-110-9", same_matter=[CASE], source="police_110", phone="13900000009")
    effects = take(report, disputes, orders)
    case = effects.disputes[CASE]
    assert (case.level, case.attempt, case.history.failed_mediations) == (2, 1, 1)
    assert [p.phone for p in case.report.parties] == ["13800000001", "13900000009"]
    assert case.report.description.endswith("police_110 报称：tri-110") and "P-110-9" in case.report.description
    lead = next(n for n in effects.notices if n.department == "mediation_room")
    assert (lead.dispute_id, lead.reported_dispute_id, lead.source, lead.notice) == (CASE, "P-110-9", "police_110", "reported_again")
    assert lead.work_order_ids == [o.work_order_id for o in orders[CASE].values() if o.department == "mediation_room"]


def test_a_regraded_report_carries_the_cases_history_into_the_new_attempt():
    disputes, orders = held(2, failed=1)
    effects = take(graded(3, "tri-110", source="police_110"), disputes, orders)
    assert effects.disputes[CASE].history.failed_mediations == 1 and effects.disputes[CASE].level == 3


def test_a_later_report_under_a_merged_id_finds_the_case():
    disputes, orders = held(2)
    first = take(graded(1, "tri-1", dispute="H-1", same_matter=[CASE]), disputes, orders)
    again = take(graded(1, "tri-2", dispute="H-1"), disputes, orders, aliases=first.aliases)  # triage named no matter this time
    assert summary(again)["outcome"] == [("H-1", CASE, "same_matter", "joined")]


@pytest.mark.parametrize("parties, room", [(199, 1), (200, 0)], ids=["one_more_fits", "full"])
def test_a_gathered_report_stays_within_the_reports_limits(parties, room):
    case = TRIAGED.report.model_copy(update={"parties": [TRIAGED.report.parties[0].model_copy(update={"name": f"人{n}"}) for n in range(parties)],
                                             "description": "甲" * 4990})
    report = graded(1, "tri-x").report
    merged = gathered(case, report)
    assert len(merged.parties) == parties + room and len(merged.description) <= 5000
    type(case).model_validate_json(merged.to_bytes())  # still a valid report
