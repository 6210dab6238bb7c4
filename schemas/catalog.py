"""Every contract with its topics, and which service consumes and produces each topic."""

from dataclasses import dataclass
from typing import Any

from schemas.disputes import (
    DISPUTES_REASSESS,
    DISPUTES_REPORTED,
    DISPUTES_TRIAGED,
    DisputeReported,
    DisputeTriaged,
    ReassessmentRequested,
)
from schemas.followups import FOLLOWUPS_DUE, FOLLOWUPS_RESULTS, FollowupDue, FollowupResult
from schemas.workorders import (
    WORKORDERS_EVENTS,
    WORKORDERS_TOPIC_PREFIX,
    WORKORDERS_UPDATES,
    WorkOrderEvent,
    WorkOrderIssued,
    WorkOrderUpdate,
)

# Contract name (and JSON Schema file name) -> the type on the wire.
CONTRACTS: dict[str, Any] = {
    "DisputeReported": DisputeReported,
    "ReassessmentRequested": ReassessmentRequested,
    "DisputeTriaged": DisputeTriaged,
    "WorkOrderIssued": WorkOrderIssued,
    "WorkOrderUpdate": WorkOrderUpdate,
    "WorkOrderEvent": WorkOrderEvent,
    "FollowupDue": FollowupDue,
    "FollowupResult": FollowupResult,
}


@dataclass(frozen=True)
class Channel:
    """A topic one service consumes or produces, with the contract on it."""

    topic: str
    contract: str
    description: str


@dataclass(frozen=True)
class ServiceTopology:
    """The topics a service reads and writes; dead-letter topics are derived from the inputs."""

    name: str
    description: str
    consumes: tuple[Channel, ...]
    produces: tuple[Channel, ...]


_REPORTED = Channel(DISPUTES_REPORTED, "DisputeReported", "Reports from upstream platforms (上报)")
_REASSESS = Channel(DISPUTES_REASSESS, "ReassessmentRequested", "Requests to grade a dispute again")
_TRIAGED = Channel(DISPUTES_TRIAGED, "DisputeTriaged", "Graded disputes (分级)")
_ORDERS = Channel(
    WORKORDERS_TOPIC_PREFIX + "{department}", "WorkOrderIssued", "Work orders (工单), one topic per department"
)
_UPDATES = Channel(WORKORDERS_UPDATES, "WorkOrderUpdate", "Departments' progress updates")
_EVENTS = Channel(WORKORDERS_EVENTS, "WorkOrderEvent", "Dispatch audit trail")
_DUE = Channel(FOLLOWUPS_DUE, "FollowupDue", "Revisits and deadline alerts (回头看)")
_RESULTS = Channel(FOLLOWUPS_RESULTS, "FollowupResult", "Revisit results")

SERVICES: dict[str, ServiceTopology] = {
    "triage": ServiceTopology(
        "triage", "Grades each dispute report into level 1-3 with an urgency and the reasons.", (_REPORTED, _REASSESS), (_TRIAGED,)
    ),
    "dispatch": ServiceTopology(
        "dispatch",
        "Turns graded disputes into work orders with deadlines; takes updates; escalates failed mediation.",
        (_TRIAGED, _UPDATES),
        (_ORDERS, _EVENTS, _REASSESS),
    ),
    "followup": ServiceTopology(
        "followup",
        "Watches deadlines, revisits every resolved dispute and sends rebounds back for re-grading.",
        (_EVENTS, _RESULTS),
        (_DUE, _REASSESS),
    ),
}
