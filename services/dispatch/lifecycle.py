"""The pure decisions of dispatch: what a graded dispute and a department's update change, and what they announce."""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from schemas.common import TIER_BY_LEVEL
from schemas.disputes import DisputeReported, DisputeTriaged, History, ReassessmentRequested
from schemas.workorders import (
    DisputeResolved,
    Notice,
    OrderCancelled,
    OrderEscalated,
    OrderIssued,
    OrderStatusChanged,
    UpdateAnswered,
    WorkOrderIssued,
    WorkOrderUpdate,
)
from services.dispatch.calendar import WorkingCalendar
from services.dispatch.disclosure import DisclosurePolicy, for_events
from services.dispatch.routing import Assignment, RoutingTable, issue_order, route, work_order_id

OPEN = ("issued", "accepted", "in_progress")
# Where each status may go next; every other status is final.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "issued": ("accepted", "in_progress", "resolved", "mediation_failed", "returned"),
    "accepted": ("in_progress", "resolved", "mediation_failed", "returned"),
    "in_progress": ("resolved", "mediation_failed", "returned"),
}


def derived_id(prefix: str, *parts: str) -> str:
    """Derive an output event id from what caused it, so reprocessing repeats the same id."""
    return f"{prefix}-{hashlib.sha256(chr(31).join(parts).encode()).hexdigest()[:40]}"


@dataclass(frozen=True)
class Order:
    """What dispatch remembers of one work order."""

    work_order_id: str
    dispute_id: str
    department: str
    role: str
    attempt: int
    level: int
    status: str
    issued_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class Dispute:
    """What dispatch remembers of one dispute: its current attempt, grade, report, history and the routing it was routed by."""

    dispute_id: str
    attempt: int
    level: int
    urgency: str
    report: DisputeReported
    history: History
    routing_id: str | None = None  # None for rows written before routings were pinned: they follow the current table
    holidays_id: str | None = None  # likewise for holidays files: None follows the file in use
    resolved_at: datetime | None = None  # when its current attempt was resolved; None while it is open


@dataclass(frozen=True)
class ReportTaken:
    """A report dispatch took, as figures only: which case it went to and what it did there (new, joined, regraded...)."""

    event_id: str  # the report's own event id, as dispatch deduplicates its gradings
    case_id: str
    dispute_id: str  # the id it was reported under: the case's, or another platform's
    source: str
    reported_at: datetime
    outcome: str  # new, or one of schemas.workorders.ReportOutcome


@dataclass
class Effects:
    """Everything one input changes: rows to write and records to publish."""

    disputes: dict[str, Dispute] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    issued: list[WorkOrderIssued] = field(default_factory=list)
    events: list = field(default_factory=list)
    reassessments: list[ReassessmentRequested] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)  # on the departments' own topics
    # A dispute id reported under another platform's id → the case it joined.
    aliases: dict[str, str] = field(default_factory=dict)
    reports: list[ReportTaken] = field(default_factory=list)  # the reports taken, for "reports received" vs cases

    def merge(self, other: "Effects") -> None:
        """Add another input's effects; later state of the same row wins."""
        self.disputes.update(other.disputes)
        self.orders.update(other.orders)
        self.issued.extend(other.issued)
        self.events.extend(other.events)
        self.reassessments.extend(other.reassessments)
        self.notices.extend(other.notices)
        self.aliases.update(other.aliases)
        self.reports.extend(other.reports)


# Refusals that say the sender may not speak of the order at all: dead-lettered for the operators, never answered on
# a department's topic (the named department did not send it; the sender learns nothing of another's order).
UNAUTHORISED = ("department_mismatch",)


class Rejection(Exception):
    """An update that must not be applied; `reason` labels the metric and the answer, the message names the field."""

    def __init__(self, field: str, reason: str, detail: str):
        super().__init__(f"{field}: {reason}: {detail}")
        self.reason = reason

    @property
    def unauthorised(self) -> bool:
        """Tell whether the sender may not speak of this order: a dead letter, not an answer."""
        return self.reason in UNAUTHORISED


def _order(issued: WorkOrderIssued) -> Order:
    return Order(
        issued.work_order_id, issued.dispute_id, issued.department, issued.role, issued.attempt,
        issued.level, "issued", issued.issued_at, issued.due_at,
    )


def _issued_event(issued: WorkOrderIssued, report: DisputeReported) -> OrderIssued:
    # `report` as the audit stream may carry it (`for_events`): follow-up needs no more.
    return OrderIssued(
        event_id=derived_id("ev", issued.work_order_id, "issued"),
        dispute_id=issued.dispute_id,
        attempt=issued.attempt,
        at=issued.issued_at,
        work_order_id=issued.work_order_id,
        department=issued.department,
        role=issued.role,
        level=issued.level,
        urgency=issued.urgency,
        first_response=issued.first_response,
        issued_at=issued.issued_at,
        due_at=issued.due_at,
        disclosure=issued.disclosure,
        report=report,
    )


def _status_event(order: Order, status: str, cause: str, now: datetime) -> OrderStatusChanged:
    return OrderStatusChanged(
        event_id=derived_id("ev", order.work_order_id, status, cause),
        dispute_id=order.dispute_id,
        attempt=order.attempt,
        at=now,
        work_order_id=order.work_order_id,
        department=order.department,
        role=order.role,
        previous_status=order.status,
        status=status,
    )


def dispatch(
    triaged: DisputeTriaged,
    dispute: Dispute | None,
    open_orders: list[Order],
    now: datetime,
    table: RoutingTable,
    calendar: WorkingCalendar,
    disclosure: DisclosurePolicy,
    routing: str | None = None,
    holidays: str | None = None,
) -> Effects:
    """Issue the orders of a graded dispute; a dispute seen before gets the next attempt and its open orders are superseded.

    `routing` names `table` and `disclosure`, `holidays` `calendar`'s file, in the store: the attempt's later updates are
    judged by the same table and disclosed by the same policy, their deadlines walked on the same calendar.
    """
    attempt = 1 if dispute is None else dispute.attempt + 1
    triaged = with_known_parties(triaged, dispute)
    effects = Effects()
    orders = route(triaged, attempt, now, table, calendar, disclosure)
    successors = {issued.department: issued.work_order_id for issued in orders}
    for order in open_orders:
        effects.events.append(_status_event(order, "superseded", triaged.event_id, now))
        effects.orders[order.work_order_id] = replace(order, status="superseded")
        effects.notices.append(_cancelled(order, successors.get(order.department), attempt, triaged, now))
    audited = for_events(disclosure, triaged.report)  # one copy for every order's event: encoded once
    for issued in orders:
        effects.issued.append(issued)
        effects.orders[issued.work_order_id] = _order(issued)
        effects.events.append(_issued_event(issued, audited))
    effects.disputes[triaged.dispute_id] = Dispute(
        triaged.dispute_id, attempt, triaged.level, triaged.urgency, triaged.report, triaged.report.history, routing, holidays
    )
    return effects


def _cancelled(order: Order, replaced_by: str | None, attempt: int, triaged: DisputeTriaged, now: datetime) -> OrderCancelled:
    # The department's system would otherwise keep working an order nobody will accept an update for.
    return OrderCancelled(
        notice="order_cancelled",
        event_id=derived_id("can", order.work_order_id, triaged.event_id),
        work_order_id=order.work_order_id,
        dispute_id=order.dispute_id,
        department=order.department,
        role=order.role,
        attempt=order.attempt,
        reason="superseded" if replaced_by else "rerouted",
        replaced_by=replaced_by,
        next_attempt=attempt,
        level=triaged.level,
        at=now,
    )


def with_known_parties(triaged: DisputeTriaged, dispute: Dispute | None) -> DisputeTriaged:
    """Give a re-graded dispute the parties dispatch holds: a reassessment from follow-up carries the audit stream's."""
    # Reassessment never changes the parties, but follow-up only ever saw them as workorders.events discloses them
    # (no ID numbers by default): the police and courts of the next attempt must receive them whole again.
    if dispute is None or triaged.cause == "reported" or triaged.report.parties == dispute.report.parties:
        return triaged
    report = triaged.report.model_copy(update={"parties": dispute.report.parties})
    return triaged.model_copy(update={"report": report})


def update_time(update: WorkOrderUpdate, order: Order) -> datetime:
    """Date an update's effects: its own `at`, but never before the order was issued."""
    # The effects must repeat byte for byte when the record is redelivered, so the time comes from the record,
    # never the clock. Not the broker's timestamp: by default the producer (the department) sets it, so it is no
    # more trustworthy than `at`, and it is real time while a simulated clock (FENGQIAO_CLOCK_SPEED) runs ahead.
    # The bound keeps a wrong clock at the department from dating a change, or a rerouted order, before the order.
    return max(update.at, order.issued_at)


def update_key(update: WorkOrderUpdate) -> str:
    """Name an update's processed id: event ids are the sender's, so they are unique only within its department."""
    return f"update:{update.department}:{update.event_id}"


def legacy_update_key(update: WorkOrderUpdate) -> str:
    """Name an update's processed id as written before ids were scoped by department."""
    return f"update:{update.event_id}"


def content_hash(value: bytes) -> str:
    """Fingerprint an update's content, to tell a repeat from a reuse of its id."""
    return hashlib.sha256(value).hexdigest()


UNSEEN = ""  # no sha256 is empty: the processed id was never recorded


def is_repeat(earlier: str | None, content: str) -> bool:
    """Tell a silent duplicate (True) from a first sight (`earlier` is UNSEEN, False); raise Rejection for other content.

    `earlier` is the content hash recorded under the update's id; None for an id recorded before hashes were
    kept, which can only count as a duplicate: it was applied once already.
    """
    if earlier == UNSEEN:
        return False
    if earlier is None or earlier == content:
        return True
    raise Rejection("event_id", "event_id_conflict", "this department used this event id before for another update")


def answer(update: WorkOrderUpdate, content: str, order: Order | None, rejection: Rejection | None = None, replaced_by: str | None = None) -> UpdateAnswered:
    """Answer one update on its department's topic: applied (no `rejection`), superseded, or refused with the reason.

    `order` is the order as it stands after the update; the answer's id derives from the update's key and content, so
    a redelivery repeats it and a reused id with other content gets an answer of its own.
    """
    outcome = "applied" if rejection is None else "superseded" if rejection.reason == "superseded" else "refused"
    return UpdateAnswered(
        notice="update_answered",
        event_id=derived_id("ans", update_key(update), content),
        update_event_id=update.event_id,
        dispute_id=update.dispute_id,
        department=update.department,
        work_order_id=update.work_order_id,
        status=update.status,
        outcome=outcome,
        order_status=order.status if order else None,
        refusal=rejection.reason if outcome == "refused" else None,
        reason=str(rejection) if rejection else None,
        replaced_by=replaced_by,
        at=update_time(update, order) if order else update.at,
    )


def successor(order: Order, dispute: Dispute | None, dispute_orders: Iterable[Order]) -> str | None:
    """Name the department's order in the case's current attempt, which replaced `order`; None when it has none."""
    if dispute is None or dispute.attempt == order.attempt:
        return None
    return next((o.work_order_id for o in dispute_orders if o.attempt == dispute.attempt and o.department == order.department), None)


def waits_for_order(rejection: Rejection, first_seen: datetime, now: datetime, patience: timedelta) -> bool:
    """Tell whether a refused update is parked instead: its order may not be visible yet, until its deadline."""
    # Departments see an order before dispatch commits it: an update in that window is early, not wrong.
    return rejection.reason == "unknown_work_order" and now - first_seen < patience


def check_sender(update: WorkOrderUpdate, sender: str | None) -> None:
    """Refuse an update naming another department than the one whose topic it came on; None is the shared development topic."""
    # The ACLs let each department write only its own topic, so the topic is who sent it; the payload is only a claim.
    if sender is not None and update.department != sender:
        raise Rejection("department", "department_mismatch", "the topic it came on is another department's")


def check_update(update: WorkOrderUpdate, order: Order | None, table: RoutingTable) -> Order:
    """Authorise and validate an update against its order; raise Rejection with the reason otherwise."""
    if order is None:
        raise Rejection("work_order_id", "unknown_work_order", "no order has this id")
    if update.department != order.department:
        raise Rejection("department", "department_mismatch", "not the department of this order")
    if update.dispute_id != order.dispute_id:
        raise Rejection("dispute_id", "dispute_mismatch", "not the dispute of this order")
    if order.status == "superseded":
        raise Rejection("work_order_id", "superseded", "a newer attempt of the case replaced this order")
    if update.status not in TRANSITIONS.get(order.status, ()):
        raise Rejection("status", "illegal_transition", f"{order.status} -> {update.status}")
    if update.status == "returned" and order.department == table.returned_to:
        raise Rejection("status", "illegal_transition", f"{table.returned_to} cannot return an order to itself")
    return order


def apply_update(
    update: WorkOrderUpdate,
    order: Order,
    dispute: Dispute,
    attempt_orders: list[Order],
    now: datetime,
    table: RoutingTable,
    calendar: WorkingCalendar,
    disclosure: DisclosurePolicy,
) -> Effects:
    """Apply a checked update: change the order, and escalate or resolve the dispute when it must."""
    effects = Effects()
    changed = replace(order, status=update.status)
    effects.orders[order.work_order_id] = changed
    effects.events.append(_status_event(order, update.status, update.event_id, now))
    siblings = {o.work_order_id: o for o in attempt_orders} | {changed.work_order_id: changed}
    if update.status == "mediation_failed" and order.role == "lead":
        _escalate_to_triage(update, order, dispute, now, effects)
    elif update.status == "returned":
        _reroute(update, order, dispute, siblings, now, table, calendar, disclosure, effects)
    elif update.status == "resolved":
        if leads := resolved_leads(siblings.values()):
            effects.disputes[dispute.dispute_id] = replace(dispute, resolved_at=now)
            effects.events.append(
                DisputeResolved(
                    event_id=derived_id("ev", update.event_id, "dispute_resolved"),
                    dispute_id=dispute.dispute_id,
                    attempt=dispute.attempt,
                    at=now,
                    resolving_department=order.department if order.role == "lead" else leads[-1].department,
                    level=dispute.level,
                    disclosure=disclosure.version,
                    report=for_events(disclosure, dispute.report.model_copy(update={"history": dispute.history})),
                )
            )
    return effects


def resolved_leads(attempt_orders: Iterable[Order]) -> list[Order]:
    """Return an attempt's standing lead orders when every one is resolved (the dispute is), else none."""
    leads = [o for o in attempt_orders if o.role == "lead" and o.status not in ("returned", "superseded")]
    return leads if leads and all(o.status == "resolved" for o in leads) else []


def _escalate_to_triage(update: WorkOrderUpdate, order: Order, dispute: Dispute, now: datetime, effects: Effects) -> None:
    history = dispute.history.model_copy(
        update={
            "mediation_attempts": dispute.history.mediation_attempts + 1,
            "failed_mediations": dispute.history.failed_mediations + 1,
            "previous_level": dispute.level,
        }
    )
    effects.disputes[dispute.dispute_id] = replace(dispute, history=history)
    effects.reassessments.append(
        ReassessmentRequested(
            event_id=derived_id("rea", update.event_id),
            dispute_id=dispute.dispute_id,
            requested_at=now,
            reason="mediation_failed",
            caused_by=update.event_id,
            report=dispute.report,
            history=history,
        )
    )
    effects.events.append(_escalation(update, order, "mediation_failed", "triage", now))


def _reroute(
    update: WorkOrderUpdate,
    order: Order,
    dispute: Dispute,
    siblings: dict[str, Order],
    now: datetime,
    table: RoutingTable,
    calendar: WorkingCalendar,
    disclosure: DisclosurePolicy,
    effects: Effects,
) -> None:
    effects.events.append(_escalation(update, order, "returned", "governance_centre", now))
    target = work_order_id(dispute.dispute_id, table.returned_to, dispute.attempt)
    existing = siblings.get(target)
    if existing is not None:
        # The centre already works on this attempt; it takes over the lead when a lead was returned.
        if order.role == "lead" and existing.role != "lead":
            effects.orders[target] = replace(existing, role="lead")
        return
    grade = (dispute.level, TIER_BY_LEVEL[dispute.level], dispute.urgency)
    issued = issue_order(
        dispute.report, Assignment(table.returned_to, order.role), grade, dispute.attempt, now,
        table.instructions.returned, [], table, calendar, disclosure,
    )
    effects.issued.append(issued)
    effects.orders[target] = _order(issued)
    effects.events.append(_issued_event(issued, for_events(disclosure, dispute.report)))


def _escalation(update: WorkOrderUpdate, order: Order, reason: str, to: str, now: datetime) -> OrderEscalated:
    return OrderEscalated(
        event_id=derived_id("ev", update.event_id, "escalated"),
        dispute_id=order.dispute_id,
        attempt=order.attempt,
        at=now,
        work_order_id=order.work_order_id,
        department=order.department,
        reason=reason,
        to=to,
    )
