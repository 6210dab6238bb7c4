"""Work orders (工单) to departments, their updates and the dispatch audit trail (topics `workorders.*`)."""

from typing import Annotated, Literal, Union, get_args

from pydantic import Field, StringConstraints, TypeAdapter

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
)
from schemas.disputes import DisputeReported, Region

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


def work_order_topic(department: str) -> str:
    """Name the topic that only `department`'s system reads (least privilege)."""
    if department not in DEPARTMENTS:
        raise ValueError(f"unknown department: {department}")
    return f"{WORKORDERS_TOPIC_PREFIX}{department}"


def updates_topic(department: str) -> str:
    """Name the topic only `department` may write its updates to: the topic, not the payload, says who sent them."""
    if department not in DEPARTMENTS:
        raise ValueError(f"unknown department: {department}")
    return f"{WORKORDERS_TOPIC_PREFIX}{department}.updates"


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


WorkOrderEvent = Annotated[
    Union[OrderIssued, OrderStatusChanged, DisputeResolved, OrderEscalated],
    Field(discriminator="kind", description="One entry of the dispatch audit trail on workorders.events"),
]
WORK_ORDER_EVENT = TypeAdapter(WorkOrderEvent)
