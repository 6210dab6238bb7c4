"""The pure decisions of dispatch: attempts, superseding, authorisation, transitions, escalation, resolution."""

import json
from datetime import timedelta

import pytest

from schemas.disputes import DisputeTriaged
from schemas.workorders import WorkOrderUpdate
from services.dispatch.calendar import WorkingCalendar
from services.dispatch.disclosure import DEFAULT_DISCLOSURE, load_disclosure
from services.dispatch.lifecycle import UNSEEN, Rejection, apply_update, check_sender, check_update, dispatch, is_repeat, waits_for_order
from services.dispatch.routing import DEFAULT_ROUTING, load_routing
from tests.support.samples import TRIAGED, at

TABLE = load_routing(DEFAULT_ROUTING)
POLICY = load_disclosure(DEFAULT_DISCLOSURE)
CALENDAR = WorkingCalendar()
NOW = at("2026-03-02T10:00:00+08:00")
TIERS = {1: "on_site", 2: "mediation_room", 3: "joint_consultation"}


def graded(level, event="tri-1", urgency="routine", category="labor_wage", history=None):
    raw = TRIAGED.model_dump(mode="json") | {"event_id": event, "source_event_id": f"src-{event}", "level": level, "tier": TIERS[level], "urgency": urgency, "flags": []}
    raw["report"] |= {"category": category, "history": history or {}}
    return DisputeTriaged.model_validate_json(json.dumps(raw))


def first_dispatch(level=2, **kwargs):
    effects = dispatch(graded(level, **kwargs), None, [], NOW, TABLE, CALENDAR, POLICY)
    return effects, effects.disputes[TRIAGED.dispute_id], list(effects.orders.values())


def update(order, status, event="upd-1", department=None, dispute_id=None):
    return WorkOrderUpdate(
        event_id=event, work_order_id=order.work_order_id, dispute_id=dispute_id or order.dispute_id,
        department=department or order.department, status=status, at=NOW + timedelta(hours=2),
    )


def test_first_dispatch_is_attempt_one():
    effects, dispute, orders = first_dispatch(2)
    assert dispute.attempt == 1 and {o.attempt for o in orders} == {1}
    assert [(o.department, o.role) for o in orders] == [("mediation_room", "lead"), ("labor_arbitration", "support"), ("civil_affairs", "support")]
    assert [e.kind for e in effects.events] == ["issued"] * 3


def test_a_second_grading_opens_the_next_attempt_and_supersedes_open_orders():
    _, dispute, orders = first_dispatch(2)
    effects = dispatch(graded(3, event="tri-2", urgency="urgent"), dispute, orders, NOW, TABLE, CALENDAR, POLICY)
    superseded = [e for e in effects.events if e.kind == "status_changed"]
    assert [(e.work_order_id, e.previous_status, e.status) for e in superseded] == [(o.work_order_id, "issued", "superseded") for o in orders]
    assert {o.attempt for o in effects.issued} == {2}
    assert effects.issued[0].department == "joint_consultation"


# (case, who sends the update and what, the field the dead letter names, rejection reason)
REJECTIONS = [
    ("unknown order", lambda o: update(o, "accepted").model_copy(update={"work_order_id": "wo-nope"}), "work_order_id", "unknown_work_order"),
    ("another department", lambda o: update(o, "resolved", department="court"), "department", "department_mismatch"),
    ("another dispute", lambda o: update(o, "resolved", dispute_id="D-other"), "dispute_id", "dispute_mismatch"),
]


# (case, the department the payload names, the department whose topic it came on (None: the shared development topic), refused)
SENDERS = [
    ("on its own topic", "community_police", "community_police", False),
    ("naming another department on its own topic", "community_police", "traffic_police", True),
    ("naming itself on another department's topic", "traffic_police", "community_police", True),
    ("on the shared development topic, the payload is trusted", "community_police", None, False),
]


@pytest.mark.parametrize("case, named, sender, refused", SENDERS, ids=[r[0] for r in SENDERS])
def test_the_topic_an_update_came_on_must_be_the_department_it_names(case, named, sender, refused):
    _, _, orders = first_dispatch(1)
    sent = update(orders[0], "resolved", department=named)
    if not refused:
        assert check_sender(sent, sender) is None
        return
    with pytest.raises(Rejection) as caught:
        check_sender(sent, sender)
    assert caught.value.reason == "department_mismatch"
    assert str(caught.value).startswith("department: department_mismatch: ")
    assert named not in str(caught.value) and sender not in str(caught.value), "the reason names the field, not the departments"


@pytest.mark.parametrize("case, make, field, reason", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_unauthorised_or_unknown_updates_are_rejected_naming_the_field(case, make, field, reason):
    _, _, orders = first_dispatch(2)
    known = {o.work_order_id: o for o in orders}
    sent = make(orders[0])
    with pytest.raises(Rejection) as caught:
        check_update(sent, known.get(sent.work_order_id), TABLE)
    assert caught.value.reason == reason
    assert str(caught.value).startswith(f"{field}: {reason}: ")


# (case, current status, new status, the refusal's field and reason; None: allowed)
ILLEGAL = "status: illegal_transition"
TRANSITIONS = [
    ("accept", "issued", "accepted", None),
    ("progress", "accepted", "in_progress", None),
    ("resolve", "in_progress", "resolved", None),
    ("fail", "accepted", "mediation_failed", None),
    ("return", "issued", "returned", None),
    ("anything after resolved", "resolved", "in_progress", ILLEGAL),
    ("resolved twice", "resolved", "resolved", ILLEGAL),
    ("after failure", "mediation_failed", "resolved", ILLEGAL),
    ("after superseded: answered superseded, not refused", "superseded", "accepted", "work_order_id: superseded"),
    ("back to accepted", "in_progress", "accepted", ILLEGAL),
]


@pytest.mark.parametrize("case, current, new, refusal", TRANSITIONS, ids=[t[0] for t in TRANSITIONS])
def test_status_transitions(case, current, new, refusal):
    _, _, orders = first_dispatch(2)
    order = orders[0].__class__(**{**orders[0].__dict__, "status": current})
    if refusal is None:
        assert check_update(update(order, new), order, TABLE) is order
    else:
        with pytest.raises(Rejection, match=f"^{refusal}: "):
            check_update(update(order, new), order, TABLE)


def test_failed_mediation_on_the_lead_asks_triage_again_with_the_history():
    _, dispute, orders = first_dispatch(2, history={"failed_mediations": 1, "mediation_attempts": 1})
    lead = orders[0]
    effects = apply_update(update(lead, "mediation_failed"), lead, dispute, orders, NOW, TABLE, CALENDAR, POLICY)
    [request] = effects.reassessments
    assert (request.reason, request.caused_by) == ("mediation_failed", "upd-1")
    assert (request.history.failed_mediations, request.history.mediation_attempts, request.history.previous_level) == (2, 2, 2)
    assert [e.kind for e in effects.events] == ["status_changed", "escalated"]
    assert effects.events[1].to == "triage"


def test_failed_mediation_on_a_support_order_only_changes_its_status():
    _, dispute, orders = first_dispatch(2)
    support = orders[1]
    effects = apply_update(update(support, "mediation_failed"), support, dispute, orders, NOW, TABLE, CALENDAR, POLICY)
    assert effects.reassessments == [] and [e.kind for e in effects.events] == ["status_changed"]


def test_a_returned_order_goes_to_the_governance_centre():
    _, dispute, orders = first_dispatch(2)
    lead = orders[0]
    effects = apply_update(update(lead, "returned"), lead, dispute, orders, NOW, TABLE, CALENDAR, POLICY)
    [new] = effects.issued
    assert (new.department, new.role, new.attempt, new.instructions) == ("governance_centre", "lead", 1, TABLE.instructions.returned)
    escalated = [e for e in effects.events if e.kind == "escalated"]
    assert [(e.reason, e.to) for e in escalated] == [("returned", "governance_centre")]


def test_the_centre_cannot_return_to_itself():
    _, dispute, orders = first_dispatch(3, urgency="urgent")
    centre = next(o for o in orders if o.department == "governance_centre")
    with pytest.raises(Rejection, match="cannot return an order to itself"):
        check_update(update(centre, "returned"), centre, TABLE)


def test_the_dispute_is_resolved_when_every_lead_of_the_attempt_is():
    _, dispute, orders = first_dispatch(3, urgency="immediate")
    police, consultation = [o for o in orders if o.role == "lead"]
    first = apply_update(update(police, "resolved", "u1"), police, dispute, orders, NOW, TABLE, CALENDAR, POLICY)
    assert [e.kind for e in first.events] == ["status_changed"]
    after = [first.orders.get(o.work_order_id, o) for o in orders]
    second = apply_update(update(consultation, "resolved", "u2"), consultation, dispute, after, NOW, TABLE, CALENDAR, POLICY)
    resolved = [e for e in second.events if e.kind == "dispute_resolved"]
    assert [(e.resolving_department, e.attempt, e.level) for e in resolved] == [("joint_consultation", 1, 3)]
    assert resolved[0].report.parties == TRIAGED.report.parties


@pytest.mark.parametrize(
    "earlier, repeat",
    [(UNSEEN, False), ("h1", True), (None, True), ("h2", "event_id: event_id_conflict: ")],
    ids=["first_sight", "same_content", "recorded_before_hashes", "other_content"],
)
def test_a_repeated_update_id_is_a_duplicate_only_with_the_same_content(earlier, repeat):
    if isinstance(repeat, bool):
        assert is_repeat(earlier, "h1") is repeat
    else:
        with pytest.raises(Rejection, match=f"^{repeat}") as caught:
            is_repeat(earlier, "h1")
        assert caught.value.reason == "event_id_conflict"


@pytest.mark.parametrize(
    "reason, waited, parks",
    [("unknown_work_order", 0, True), ("unknown_work_order", 599, True), ("unknown_work_order", 600, False), ("illegal_transition", 0, False)],
)
def test_only_an_update_for_an_unknown_order_waits_and_only_until_its_deadline(reason, waited, parks):
    first = at("2026-03-02T10:00:00+08:00")
    rejection = Rejection("work_order_id", reason, "detail")
    assert waits_for_order(rejection, first, first + timedelta(seconds=waited), timedelta(seconds=600)) is parks
