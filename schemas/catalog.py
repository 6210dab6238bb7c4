"""Every contract with its topics, and which service (or department) consumes and produces each topic."""

from dataclasses import dataclass
from typing import Any, Literal

from schemas.disputes import (
    DISPUTES_INVALID,
    DISPUTES_REASSESS,
    DISPUTES_REPORTED,
    DISPUTES_TRIAGED,
    DisputeReported,
    DisputeTriaged,
    ReassessmentRequested,
)
from schemas.followups import (
    FOLLOWUPS_DUE,
    FOLLOWUPS_RESULTS,
    FOLLOWUPS_RESULTS_INVALID,
    FOLLOWUPS_TOPIC_PREFIX,
    FollowupDue,
    FollowupMessage,
    FollowupResult,
    ResultAnswered,
)
from schemas.rules import RULES_TRIAGE
from schemas.workorders import (
    DEPARTMENTS,
    WORKORDERS_EVENTS,
    WORKORDERS_EVENTS_INVALID,
    WORKORDERS_TOPIC_PREFIX,
    WORKORDERS_UPDATES,
    WORKORDERS_UPDATES_INVALID,
    CaseNotice,
    DepartmentMessage,
    OrderCancelled,
    UpdateAnswered,
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
    "CaseNotice": CaseNotice,
    "UpdateAnswered": UpdateAnswered,
    "OrderCancelled": OrderCancelled,
    "DepartmentMessage": DepartmentMessage,
    "WorkOrderUpdate": WorkOrderUpdate,
    "WorkOrderEvent": WorkOrderEvent,
    "FollowupDue": FollowupDue,
    "ResultAnswered": ResultAnswered,
    "FollowupMessage": FollowupMessage,
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
    WORKORDERS_TOPIC_PREFIX + "{department}", "DepartmentMessage",
    "Work orders (工单), notices about their cases, answers to the department's updates and cancellations of its orders "
    "(ce_type tells them apart), one topic per department",
)
DEPARTMENT_PLACEHOLDER = "{department}"
_UPDATES = Channel(
    WORKORDERS_TOPIC_PREFIX + DEPARTMENT_PLACEHOLDER + ".updates", "WorkOrderUpdate",
    "Departments' progress updates, one topic per department: the topic names the sender",
)
_EVENTS = Channel(WORKORDERS_EVENTS, "WorkOrderEvent", "Dispatch audit trail")
_DUE = Channel(
    FOLLOWUPS_TOPIC_PREFIX + DEPARTMENT_PLACEHOLDER + ".due", "FollowupMessage",
    "Revisits and deadline alerts (回头看), and answers to the department's revisit results, one topic per department: "
    "a revisit carries the parties as the revisit team may see them",
)
_DUE_FEED = Channel(FOLLOWUPS_DUE, "FollowupDue", "Every department's revisits and deadline alerts without parties: the operators' feed")
_RESULTS = Channel(
    FOLLOWUPS_TOPIC_PREFIX + DEPARTMENT_PLACEHOLDER + ".results", "FollowupResult",
    "Revisit results, one topic per department: the topic names the sender",
)

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
        (_DUE, _DUE_FEED, _REASSESS),
    ),
}

# What a department's own system does: read its orders and its dues, write its updates and its revisit teams' results.
# The shared followups.due carries every department's dues: operators alone read it, with no ACL of their own.
DEPARTMENT = ServiceTopology(
    "department", "A department's own system: one principal per department.", (_ORDERS, _DUE), (_UPDATES, _RESULTS)
)

# Development only: shared topics any department's simulator may write, the sender named by the payload alone.
# Services subscribe to them unless FENGQIAO_ENV is production, where no principal may write them.
DEVELOPMENT_TOPICS: dict[str, str] = {_UPDATES.topic: WORKORDERS_UPDATES, _RESULTS.topic: FOLLOWUPS_RESULTS}

# Where each input's rejected records go: kept per input as before, whatever topic the record came on.
DEAD_LETTERS: dict[str, str] = {
    DISPUTES_REPORTED: DISPUTES_INVALID,
    DISPUTES_REASSESS: DISPUTES_INVALID,
    DISPUTES_TRIAGED: DISPUTES_INVALID,
    _UPDATES.topic: WORKORDERS_UPDATES_INVALID,
    WORKORDERS_EVENTS: WORKORDERS_EVENTS_INVALID,
    _RESULTS.topic: FOLLOWUPS_RESULTS_INVALID,
}

# Read outside the contracts: triage follows the compacted rules topic, without a group, from the start.
EXTRA_READS: dict[str, tuple[str, ...]] = {"triage": (RULES_TRIAGE,)}

Environment = Literal["development", "production"]


def expand(topic: str) -> list[str]:
    """Spell a catalogue topic out: one name per department for a per-department topic, else the name itself."""
    if DEPARTMENT_PLACEHOLDER in topic:
        return [topic.replace(DEPARTMENT_PLACEHOLDER, d) for d in DEPARTMENTS]
    return [topic]


def input_topics(channel_topic: str, environment: Environment) -> list[str]:
    """List the topics a service subscribes to for one consumed channel: the shared development topic only outside production."""
    shared = DEVELOPMENT_TOPICS.get(channel_topic)
    return expand(channel_topic) + ([shared] if shared and environment != "production" else [])


def sender_departments(channel_topic: str) -> dict[str, str]:
    """Map each department's own topic of a per-department channel to that department: the transport's identity."""
    return {channel_topic.replace(DEPARTMENT_PLACEHOLDER, d): d for d in DEPARTMENTS} if DEPARTMENT_PLACEHOLDER in channel_topic else {}


UPDATES_CHANNEL = _UPDATES.topic
RESULTS_CHANNEL = _RESULTS.topic
