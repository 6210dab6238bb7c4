"""Domain-like inputs: a plain report as JSON-ready data, and one realistic instance of every contract."""

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from schemas.disputes import DisputeReported, DisputeTriaged, History, ReassessmentRequested
from schemas.followups import FollowupDue, FollowupResult, ResultAnswered
from schemas.workorders import (
    CaseNotice,
    DisputeResolved,
    OrderCancelled,
    OrderEscalated,
    OrderIssued,
    OrderStatusChanged,
    UpdateAnswered,
    WorkOrderIssued,
    WorkOrderUpdate,
)

BEIJING = timezone(timedelta(hours=8))


def report_payload(**overrides: Any) -> dict[str, Any]:
    """Return a plain family dispute as JSON-ready data, reported by a grid worker."""
    payload: dict[str, Any] = {
        "event_id": "evt-0001",
        "dispute_id": "D-2026-0001",
        "reported_at": "2026-03-02T09:30:00+08:00",
        "source": "grid_app",
        "region": {"county": "诸暨市", "town": "枫桥镇", "community": "枫源村", "grid_id": "G-07"},
        "category": "family_marriage",
        "description": "夫妻因家务琐事争吵，妻子请求调解。",
        "parties": [
            {"role": "complainant", "kind": "person", "name": "王某", "phone": "13800000001", "age": 34},
            {"role": "respondent", "kind": "person", "name": "李某", "id_number": "33068119900101001X"},
        ],
        "party_count": 2,
    }
    payload.update(overrides)
    return payload


def at(text: str) -> datetime:
    """Parse an RFC 3339 time, for fixtures that read like the domain."""
    return datetime.fromisoformat(text)


REPORT = DisputeReported.model_validate_json(json.dumps(report_payload()))
WAGE_REPORT = DisputeReported.model_validate_json(
    json.dumps(report_payload(
        event_id="evt-0002",
        dispute_id="D-2026-0002",
        category="labor_wage",
        description="四十名工人讨要工资，扬言要拉横幅堵路。",
        parties=[
            {"role": "complainant", "kind": "person", "name": "张某", "phone": "13900000002", "vulnerable": ["elderly"]},
            {"role": "respondent", "kind": "organization", "name": "某某建筑劳务有限公司"},
        ],
        party_count=40,
        amount_cny=386000.0,
        risk={"mass_gathering": True, "petition_history": True},
        history={"mediation_attempts": 1, "failed_mediations": 1},
    ))
)
TRIAGED = DisputeTriaged(
    event_id="tri-5f1c",
    dispute_id=WAGE_REPORT.dispute_id,
    source_event_id=WAGE_REPORT.event_id,
    level=3,
    tier="joint_consultation",
    urgency="urgent",
    flags=["mass_gathering", "detected:mass_gathering"],
    matched_rules=[{"id": "L3-mass", "reason": "涉及人数十人以上或有聚集苗头"}],
    ruleset_version="2026.03.1",
    triaged_at=at("2026-03-02T09:30:01+08:00"),
    report=WAGE_REPORT,
)
REASSESS = ReassessmentRequested(
    event_id="rea-77aa",
    dispute_id=REPORT.dispute_id,
    requested_at=at("2026-03-09T10:00:00+08:00"),
    reason="mediation_failed",
    caused_by="upd-0009",
    report=REPORT,
    history=History(mediation_attempts=2, failed_mediations=2, previous_level=2),
)
ORDER = WorkOrderIssued(
    work_order_id="wo-d1-lab-1",
    dispute_id=WAGE_REPORT.dispute_id,
    department="labor_arbitration",
    role="support",
    level=3,
    tier="joint_consultation",
    urgency="urgent",
    attempt=1,
    issued_at=at("2026-03-02T09:30:02+08:00"),
    due_at=at("2026-03-23T09:30:02+08:00"),
    category="labor_wage",
    region=WAGE_REPORT.region,
    description=WAGE_REPORT.description,
    instructions="协助会商研判，核实欠薪金额。",
    parties=WAGE_REPORT.parties,
    matched_rules=TRIAGED.matched_rules,
)
NOTICE = CaseNotice(
    notice="reported_again",
    event_id="ntc-0001",
    dispute_id=ORDER.dispute_id,
    department=ORDER.department,
    role=ORDER.role,
    work_order_ids=[ORDER.work_order_id],
    reported_dispute_id="H-12345-0001",
    source="hotline_12345",
    reported_at=at("2026-03-02T11:10:00+08:00"),
    description="12345热线转办：" + WAGE_REPORT.description,
    parties=WAGE_REPORT.parties[:1],
    at=at("2026-03-02T11:10:01+08:00"),
)
UPDATE = WorkOrderUpdate(
    event_id="upd-0001",
    work_order_id=ORDER.work_order_id,
    dispute_id=ORDER.dispute_id,
    department="labor_arbitration",
    status="accepted",
    note="已受理",
    at=at("2026-03-02T11:00:00+08:00"),
)
ANSWER = UpdateAnswered(
    notice="update_answered",
    event_id="ans-0001",
    update_event_id=UPDATE.event_id,
    dispute_id=ORDER.dispute_id,
    department=ORDER.department,
    work_order_id=ORDER.work_order_id,
    status="accepted",
    outcome="refused",
    order_status="resolved",
    refusal="illegal_transition",
    reason="status: illegal_transition: resolved -> accepted",
    at=at("2026-03-02T11:00:00+08:00"),
)
CANCELLATION = OrderCancelled(
    notice="order_cancelled",
    event_id="can-0001",
    work_order_id=ORDER.work_order_id,
    dispute_id=ORDER.dispute_id,
    department=ORDER.department,
    role=ORDER.role,
    attempt=1,
    reason="superseded",
    replaced_by="wo-next-attempt",
    next_attempt=2,
    level=3,
    at=at("2026-03-04T09:00:00+08:00"),
)
_EVENT_BASE = {"dispute_id": ORDER.dispute_id, "attempt": 1, "at": at("2026-03-02T09:30:02+08:00")}
ORDER_EVENTS = [
    OrderIssued(
        event_id="ev-1", work_order_id=ORDER.work_order_id, department=ORDER.department, role="support",
        level=3, urgency="urgent", issued_at=ORDER.issued_at, due_at=ORDER.due_at, report=WAGE_REPORT, **_EVENT_BASE,
    ),
    OrderStatusChanged(
        event_id="ev-2", work_order_id=ORDER.work_order_id, department=ORDER.department, role="support",
        previous_status="issued", status="accepted", **_EVENT_BASE,
    ),
    DisputeResolved(event_id="ev-3", resolving_department="joint_consultation", level=3, report=WAGE_REPORT, **_EVENT_BASE),
    OrderEscalated(
        event_id="ev-4", work_order_id=ORDER.work_order_id, department=ORDER.department, reason="returned",
        to="governance_centre", **_EVENT_BASE,
    ),
]
DUE = FollowupDue(
    followup_id="fu-d2-revisit-1",
    kind="revisit",
    dispute_id=WAGE_REPORT.dispute_id,
    department="joint_consultation",
    due_at=at("2026-03-30T09:00:00+08:00"),
    fired_at=at("2026-03-30T09:00:00+08:00") + timedelta(seconds=2),
    revisit_number=1,
    parties=WAGE_REPORT.parties,
)
RESULT = FollowupResult(
    event_id="res-0001",
    followup_id=DUE.followup_id,
    dispute_id=DUE.dispute_id,
    satisfaction=5,
    agreement_fulfilled=True,
    rebound=False,
    note="工资已结清",
    at=at("2026-03-30T15:00:00+08:00"),
)
RESULT_ANSWER = ResultAnswered(
    notice="result_answered",
    event_id="fu-answer-0001",
    result_event_id=RESULT.event_id,
    followup_id=DUE.followup_id,
    dispute_id=DUE.dispute_id,
    department=DUE.department,
    outcome="refused",
    refusal="already_answered",
    reason="followup_id: already_answered: another result for this revisit counted",
    at=RESULT.at,
)
ALL = [REPORT, WAGE_REPORT, TRIAGED, REASSESS, ORDER, UPDATE, *ORDER_EVENTS, DUE, RESULT, ANSWER, CANCELLATION, RESULT_ANSWER]

ISSUED_AT = at("2026-03-02T10:00:00+08:00")
DUE_AT = ISSUED_AT + timedelta(days=10)


def order_issued(order="wo-1", attempt=1, role="lead", department="mediation_room", dispute="D-2026-0002", event=None):
    """Return an `issued` event of an order due ten days after it was issued."""
    return OrderIssued(
        event_id=event or f"ev-{order}-{attempt}", dispute_id=dispute, attempt=attempt, at=ISSUED_AT, work_order_id=order,
        department=department, role=role, level=2, urgency="routine", issued_at=ISSUED_AT, due_at=DUE_AT,
        report=WAGE_REPORT.model_copy(update={"dispute_id": dispute}),
    )


def overdue_order(report: DisputeReported, tag: str, now: datetime) -> OrderIssued:
    """Return the support order `wo-{tag}` of this report, issued an hour before its deadline, a minute past."""
    due = now - timedelta(minutes=1)  # its warning and its breach are both due at once
    return OrderIssued(
        event_id=f"iss-{tag}", dispute_id=report.dispute_id, attempt=1, at=due - timedelta(hours=1), work_order_id=f"wo-{tag}",
        department="community_police", role="support", level=1, urgency="routine", issued_at=due - timedelta(hours=1), due_at=due, report=report,
    )


def graded(report: DisputeReported, event_id: str, source_event_id: str | None = None, at: datetime = TRIAGED.triaged_at) -> DisputeTriaged:
    """Return TRIAGED's grade given to another report, under its own event ids (the source is the report's unless named)."""
    return TRIAGED.model_copy(update={
        "report": report, "dispute_id": report.dispute_id, "source_event_id": source_event_id or report.event_id, "event_id": event_id,
        "triaged_at": at,
    })


# Seventy flag rules a report with 1,000 parties matches: a valid ruleset whose graded event would carry more
# flags than the contract's 64, so building the output fails for that report.
FLAG_RULES = "".join(
    f"""
  - id: X-flag-{n:02d}
    reason: 人数极多，逐项标记
    when: {{party_count: {{">=": 1000}}}}
    then: {{flag: crowd_{n:02d}}}"""
    for n in range(70)
)
