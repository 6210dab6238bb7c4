"""Follow-up (回头看): due revisits and deadline alerts, and the revisit teams' results (topics `followups.*`)."""

from typing import Annotated, Literal, Union

from pydantic import Field, StringConstraints, Tag, TypeAdapter

from schemas.common import NO_CONTROL, Contract, by_notice, DisclosureVersion, DisputeId, EventId, Integral, Note, Party, Timestamp
from schemas.workorders import Department, WorkOrderId, department_topic

# The operators' and dashboards' feed: every due of every department, its parties emptied (minimum necessary).
# Each due with what its department may see goes to due_topic(department).
FOLLOWUPS_DUE = "followups.due"
# Development only, like workorders.updates: in production each department's revisit team writes results_topic.
FOLLOWUPS_RESULTS = "followups.results"
FOLLOWUPS_RESULTS_INVALID = "followups.results.invalid"

FOLLOWUPS_TOPIC_PREFIX = "followups."


def results_topic(department: str) -> str:
    """Name the topic only `department` may write its revisit results to; the result carries no department of its own."""
    return department_topic(FOLLOWUPS_TOPIC_PREFIX, department, ".results")


def due_topic(department: str) -> str:
    """Name the topic only `department` may read its dues from: its deadline warnings, and its revisits with the parties."""
    return department_topic(FOLLOWUPS_TOPIC_PREFIX, department, ".due")


FollowupId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL),
    Field(description="Deterministic per timer, so a fire repeated after a crash is recognisable"),
]


class FollowupDue(Contract):
    """A timer came due: a revisit to make (一事一回访) or a deadline about to pass or passed."""

    ce_type = "cn.fengqiao.followup.due.v1"

    followup_id: FollowupId
    kind: Literal["revisit", "sla_warning", "sla_breached"]
    dispute_id: DisputeId
    department: Department = Field(description="Who must act: the resolving lead department, or the governance centre")
    work_order_id: WorkOrderId | None = Field(None, description="The order whose deadline this is about (SLA kinds)")
    due_at: Timestamp
    fired_at: Timestamp
    revisit_number: Annotated[int, Field(ge=1, le=100), Integral] | None = None
    parties: Annotated[list[Party], Field(max_length=200)] = Field(
        [], description="Contact details, revisits on the department's own due topic only; always empty on the shared followups.due"
    )
    disclosure: DisclosureVersion | None = None


class FollowupResult(Contract):
    """What a revisit found: satisfaction and whether the agreement holds."""

    ce_type = "cn.fengqiao.followup.result.v1"

    event_id: EventId
    followup_id: FollowupId
    dispute_id: DisputeId
    satisfaction: Annotated[int, Field(ge=1, le=5), Integral]
    agreement_fulfilled: bool
    rebound: bool
    note: Note = ""
    at: Timestamp


ResultRefusal = Literal["unknown_followup", "dispute_mismatch", "not_a_revisit", "not_due", "already_answered", "expired"]


class ResultAnswered(Contract):
    """Follow-up's answer to one revisit result a department's team sent, on that department's due topic (since 1.4.0).

    `accepted`: the result counts for its revisit; `reassessed` when it reported a flare-up, sent to triage to be
    graded again. `refused`: it changes nothing; `reason` names the field. Each result is answered once: a resend of
    the same result is not answered again.
    """

    ce_type = "cn.fengqiao.followup.result_answered.v1"

    notice: Literal["result_answered"]
    event_id: EventId
    result_event_id: EventId = Field(description="The event_id of the revisit result this answers")
    followup_id: FollowupId
    dispute_id: DisputeId
    department: Department
    outcome: Literal["accepted", "refused"]
    reassessed: bool = Field(False, description="The result reported a flare-up: the dispute was sent to triage again")
    refusal: ResultRefusal | None = Field(None, description="Why it was refused, as a closed set; null unless refused")
    reason: Note | None = Field(None, description="The field and why, as `field: reason: detail`; null when accepted")
    at: Timestamp


FollowupMessage = Annotated[
    Union[Annotated[FollowupDue, Tag("due")], Annotated[ResultAnswered, Tag("result_answered")]],
    Field(
        discriminator=by_notice("due"),
        description=(
            "What a department's own due topic carries: its revisits and deadline alerts, and answers to its revisit "
            "results (since 1.4.0). A record with a `notice` field is an answer."
        ),
    ),
]
FOLLOWUP_MESSAGE = TypeAdapter(FollowupMessage)
