"""Work orders (工单) to departments, their updates and the dispatch audit trail (topics `workorders.*`)."""

from typing import Annotated, Literal, Union, get_args

from pydantic import Field, StringConstraints, Tag, TypeAdapter

from schemas.common import (
    NO_CONTROL,
    TEXT,
    Category,
    Contract,
    Integral,
    DisputeId,
    EventId,
    Level,
    DisclosureVersion,
    MatchedRule,
    Note,
    Party,
    Tier,
    Timestamp,
    Urgency,
    by_notice,
)
from schemas.disputes import DisputeReported, Region, Source

# The shared updates topic is for development only: anyone allowed to write it could speak for any department.
# In production each department writes its own topic (updates_topic), which one ACL per principal authorises.
WORKORDERS_UPDATES = "workorders.updates"
WORKORDERS_UPDATES_INVALID = "workorders.updates.invalid"
WORKORDERS_EVENTS = "workorders.events"
WORKORDERS_EVENTS_INVALID = "workorders.events.invalid"
WORKORDERS_TOPIC_PREFIX = "workorders."

Department = Literal[
    "community_police",
    "mediation_room",
    "joint_consultation",
    "governance_centre",
    "justice_office",
    "court",
    "women_federation",
    "civil_affairs",
    "labor_arbitration",
    "housing_construction",
    "natural_resources",
    "ecology_environment",
    "traffic_police",
    "education",
    "health",
    "market_supervision",
    "petition_office",
    "psychological_counseling",
    "law_enforcement",
    "legal_aid",
]
DEPARTMENTS: tuple[str, ...] = get_args(Department)


def department_topic(prefix: str, department: str, suffix: str = "") -> str:
    """Name one department's own topic of a family; an unknown department is refused, never given a topic."""
    if department not in DEPARTMENTS:
        raise ValueError(f"unknown department: {department}")
    return f"{prefix}{department}{suffix}"


def work_order_topic(department: str) -> str:
    """Name the topic that only `department`'s system reads (least privilege)."""
    return department_topic(WORKORDERS_TOPIC_PREFIX, department)


def updates_topic(department: str) -> str:
    """Name the topic only `department` may write its updates to: the topic, not the payload, says who sent them."""
    return department_topic(WORKORDERS_TOPIC_PREFIX, department, ".updates")


WorkOrderId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL), Field(description="Deterministic per dispute, department and attempt")]
Role = Literal["lead", "support"]
Attempt = Annotated[int, Field(ge=1, le=1000), Integral]
UpdateStatus = Literal["accepted", "in_progress", "resolved", "mediation_failed", "returned"]
OrderStatus = Literal["issued", "accepted", "in_progress", "resolved", "mediation_failed", "returned", "superseded"]


class WorkOrderIssued(Contract):
    """A work order for one department, published on that department's own topic."""

    ce_type = "cn.fengqiao.workorder.issued.v1"

    work_order_id: WorkOrderId
    dispute_id: DisputeId
    department: Department
    role: Role
    level: Level
    tier: Tier
    urgency: Urgency
    attempt: Attempt
    first_response: bool = Field(False, description="The one-hour first-response order (三个第一时间)")
    issued_at: Timestamp
    due_at: Timestamp
    category: Category
    region: Region
    description: Annotated[str, StringConstraints(min_length=1, max_length=5000, pattern=TEXT)]
    instructions: Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=TEXT)]
    parties: Annotated[list[Party], Field(min_length=1, max_length=200)]
    matched_rules: Annotated[list[MatchedRule], Field(max_length=256)]
    disclosure: DisclosureVersion | None = None


class WorkOrderUpdate(Contract):
    """A department's progress report on one of its own work orders (按期上报)."""

    ce_type = "cn.fengqiao.workorder.update.v1"

    event_id: EventId
    work_order_id: WorkOrderId
    dispute_id: DisputeId
    department: Department
    status: UpdateStatus
    note: Note = ""
    at: Timestamp


class _OrderEventBase(Contract):
    event_id: EventId
    dispute_id: DisputeId
    attempt: Attempt
    at: Timestamp


class _AboutOneOrder(_OrderEventBase):
    work_order_id: WorkOrderId
    department: Department


class OrderIssued(_AboutOneOrder):
    """Audit record of an issued order; carries the report so follow-up can ask for reassessment."""

    ce_type = "cn.fengqiao.workorder.event.issued.v1"

    kind: Literal["issued"] = "issued"
    role: Role
    level: Level
    urgency: Urgency
    first_response: bool = False
    issued_at: Timestamp
    due_at: Timestamp
    disclosure: DisclosureVersion | None = None
    report: DisputeReported


class OrderStatusChanged(_AboutOneOrder):
    """An order moved from one status to another."""

    ce_type = "cn.fengqiao.workorder.event.status_changed.v1"

    kind: Literal["status_changed"] = "status_changed"
    role: Role
    previous_status: OrderStatus
    status: OrderStatus


class DisputeResolved(_OrderEventBase):
    """Every lead order of the current attempt is resolved; follow-up schedules the revisits."""

    ce_type = "cn.fengqiao.workorder.event.dispute_resolved.v1"

    kind: Literal["dispute_resolved"] = "dispute_resolved"
    resolving_department: Department
    level: Level
    disclosure: DisclosureVersion | None = None
    report: DisputeReported


class OrderEscalated(_AboutOneOrder):
    """An order or dispute was sent higher: re-routed to the governance centre or back to triage."""

    ce_type = "cn.fengqiao.workorder.event.escalated.v1"

    kind: Literal["escalated"] = "escalated"
    reason: Literal["returned", "mediation_failed"]
    to: Literal["governance_centre", "triage"]


ReportOutcome = Literal["joined", "regraded", "reopened", "renewed"]
MatchReason = Literal["same_dispute_id", "same_matter"]


class CaseReportedAgain(_OrderEventBase):
    """Another report of a case: under its own id through another channel, or under another platform's id (merged).

    `outcome`: joined the open case (no order issued or superseded); graded higher, so a new attempt follows;
    reopened a case resolved within the routing file's window, as a rebound sent to triage; or renewed one resolved
    longer ago, as a new attempt that keeps its history.
    """

    ce_type = "cn.fengqiao.workorder.event.reported_again.v1"

    kind: Literal["reported_again"] = "reported_again"
    reported_dispute_id: DisputeId = Field(description="The id the report came under: the case's own, or the one merged into it")
    source_event_id: EventId
    source: Source
    reported_at: Timestamp
    matched_by: MatchReason
    outcome: ReportOutcome
    level: Level = Field(description="The case's level after the report")


class CaseNotice(Contract):
    """News of a case for a department holding open orders on it, on that department's own topic (since 1.2.0).

    `reported_again`: the dispute was reported again, through another channel or under another platform's id; it
    joined the case, so the department's orders stand, and the new report's description and parties (as the
    disclosure policy shows them to this department) are added to what it knows.
    """

    ce_type = "cn.fengqiao.workorder.notice.v1"

    notice: Literal["reported_again"]
    event_id: EventId
    dispute_id: DisputeId
    department: Department
    role: Role = Field(description="The department's role in the case: the parties are as the disclosure policy shows them to it")
    work_order_ids: Annotated[list[WorkOrderId], Field(min_length=1, max_length=8)]
    reported_dispute_id: DisputeId
    source: Source
    reported_at: Timestamp
    description: Annotated[str, StringConstraints(min_length=1, max_length=5000, pattern=TEXT)]
    parties: Annotated[list[Party], Field(min_length=1, max_length=200)]
    at: Timestamp
    disclosure: DisclosureVersion | None = None


AnswerOutcome = Literal["applied", "superseded", "refused"]
RefusalReason = Literal["unknown_work_order", "dispute_mismatch", "illegal_transition", "event_id_conflict"]


class UpdateAnswered(Contract):
    """Dispatch's answer to one update the department sent, on the department's own topic (since 1.4.0).

    `applied`: the order now has the status asked. `superseded`: a newer attempt replaced the order before the update
    came, so nothing changed; `replaced_by` names the department's order in that attempt, if it has one. `refused`:
    nothing changed; `reason` names the field and why. Each update is answered once: a resend of the same update
    (same event id, same content) changes nothing and is not answered again.
    """

    ce_type = "cn.fengqiao.workorder.update_answered.v1"

    notice: Literal["update_answered"]
    event_id: EventId
    update_event_id: EventId = Field(description="The event_id of the department's update this answers")
    dispute_id: DisputeId
    department: Department
    work_order_id: WorkOrderId
    status: UpdateStatus = Field(description="The status the update asked for")
    outcome: AnswerOutcome
    order_status: OrderStatus | None = Field(description="The order's status after the answer; null when no order has the id")
    refusal: RefusalReason | None = Field(None, description="Why it was refused, as a closed set; null unless refused")
    reason: Note | None = Field(None, description="The field and why, as `field: reason: detail`; null when applied")
    replaced_by: WorkOrderId | None = Field(None, description="The department's order in the attempt that superseded this one")
    at: Timestamp


CancelReason = Literal["superseded", "rerouted"]


class OrderCancelled(Contract):
    """One of the department's open orders withdrawn because the case went to a new attempt (since 1.4.0).

    `superseded`: the new attempt gives the department a new order, `replaced_by`, to work instead. `rerouted`: the
    new attempt does not involve the department: stop work on the case. Updates to a cancelled order are answered
    `superseded`.
    """

    ce_type = "cn.fengqiao.workorder.cancelled.v1"

    notice: Literal["order_cancelled"]
    event_id: EventId
    work_order_id: WorkOrderId
    dispute_id: DisputeId
    department: Department
    role: Role
    attempt: Attempt = Field(description="The cancelled order's attempt")
    reason: CancelReason
    replaced_by: WorkOrderId | None = Field(description="The department's order in the new attempt; null when rerouted")
    next_attempt: Attempt
    level: Level = Field(description="The case's level in the new attempt")
    at: Timestamp


Notice = CaseNotice | UpdateAnswered | OrderCancelled


DepartmentMessage = Annotated[
    Union[
        Annotated[WorkOrderIssued, Tag("order")],
        Annotated[CaseNotice, Tag("reported_again")],
        Annotated[UpdateAnswered, Tag("update_answered")],
        Annotated[OrderCancelled, Tag("order_cancelled")],
    ],
    Field(
        discriminator=by_notice("order"),
        description=(
            "What a department's own topic carries: its work orders; notices about their cases (since 1.2.0); answers to "
            "its updates and cancellations of its orders (since 1.4.0). A record with a `notice` field is a notice."
        ),
    ),
]
# What a department's own topic carries: its orders, and notices about the cases they belong to (tell them by ce_type).
DEPARTMENT_MESSAGE = TypeAdapter(DepartmentMessage)


WorkOrderEvent = Annotated[
    Union[OrderIssued, OrderStatusChanged, DisputeResolved, OrderEscalated, CaseReportedAgain],
    Field(discriminator="kind", description="One entry of the dispatch audit trail on workorders.events"),
]
WORK_ORDER_EVENT = TypeAdapter(WorkOrderEvent)
