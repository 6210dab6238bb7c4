"""Dispute reports, reassessment requests and their grading (topics `disputes.*`)."""

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from schemas.common import (
    NO_CONTROL,
    TEXT,
    TIER_BY_LEVEL,
    Category,
    Contract,
    Integral,
    DisputeId,
    EventId,
    Level,
    MatchedRule,
    Party,
    Tier,
    Timestamp,
    Urgency,
)

DISPUTES_REPORTED = "disputes.reported"
DISPUTES_REASSESS = "disputes.reassess"
DISPUTES_TRIAGED = "disputes.triaged"
DISPUTES_INVALID = "disputes.invalid"

Source = Literal["grid_app", "police_110", "hotline_12345", "door_qr", "walk_in", "patrol", "other"]
RegionName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=TEXT)]
Count = Annotated[int, Field(ge=0, le=10_000), Integral]


class Region(Contract):
    """Where the dispute happened, down to the grid (网格) when known."""

    county: RegionName
    town: RegionName
    community: RegionName
    grid_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL)] | None = None


class Risk(Contract):
    """Risk signals set by the reporter; triage may detect more from the description."""

    violence_threat: bool = False
    weapon_involved: bool = False
    self_harm_threat: bool = False
    cross_region: bool = False
    mass_gathering: bool = False
    petition_history: bool = False


class History(Contract):
    """What has happened to the dispute so far; raised by dispatch and follow-up on reassessment."""

    mediation_attempts: Count = 0
    failed_mediations: Count = 0
    sla_breaches: Count = 0
    rebounds: Count = 0
    previous_level: Level | None = None


class DisputeReported(Contract):
    """A dispute reported by an upstream platform (上报)."""

    ce_type = "cn.fengqiao.dispute.reported.v1"

    event_id: EventId
    dispute_id: DisputeId
    reported_at: Timestamp
    source: Source
    region: Region
    category: Category
    description: Annotated[str, StringConstraints(min_length=1, max_length=5000, pattern=TEXT)]
    parties: Annotated[list[Party], Field(min_length=1, max_length=200)]
    party_count: Annotated[int, Field(ge=1, le=1_000_000, description="People on all sides, listed or not"), Integral]
    amount_cny: Annotated[float, Field(ge=0, le=1e13, allow_inf_nan=False)] | None = None
    risk: Risk = Risk()
    history: History = History()


ReassessmentReason = Literal["mediation_failed", "sla_breached", "rebound", "agreement_unfulfilled"]


class ReassessmentRequested(Contract):
    """A request to grade a dispute again: the original report plus its updated history."""

    ce_type = "cn.fengqiao.dispute.reassessment_requested.v1"

    event_id: EventId
    dispute_id: DisputeId
    requested_at: Timestamp
    reason: ReassessmentReason
    caused_by: EventId = Field(description="Id of the update, timer or result that asked for it")
    report: DisputeReported
    history: History

    @model_validator(mode="after")
    def _same_dispute(self) -> "ReassessmentRequested":
        if self.report.dispute_id != self.dispute_id:
            raise ValueError("report.dispute_id must equal dispute_id")
        return self

    def updated_report(self) -> DisputeReported:
        """Return the report as it is to be graded now: the original with the updated history."""
        return self.report.model_copy(update={"history": self.history})


class RiskDetection(Contract):
    """A phrase of the description that raised a risk flag, and the rules-file pattern that matched it."""

    flag: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL)]
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL)]
    phrase: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=TEXT)]


class DisputeTriaged(Contract):
    """A dispute graded by triage (分级), with the rules that decided it."""

    ce_type = "cn.fengqiao.dispute.triaged.v1"
    # The tier follows from the level: said in the JSON Schema too, so a validator refuses what the model refuses.
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {"if": {"properties": {"level": {"const": level}}}, "then": {"properties": {"tier": {"const": tier}}}}
                for level, tier in TIER_BY_LEVEL.items()
            ]
        }
    )

    event_id: EventId
    dispute_id: DisputeId
    source_event_id: EventId
    cause: Literal["reported"] | ReassessmentReason = "reported"
    level: Level
    tier: Tier
    urgency: Urgency
    flags: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL)]], Field(max_length=64)]
    matched_rules: Annotated[list[MatchedRule], Field(max_length=256)]
    # Added in contract 1.3.0, optional: events of earlier versions read as an empty list.
    detections: Annotated[list[RiskDetection], Field(max_length=64, description="Phrases that raised detected flags")] = []
    ruleset_version: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL)]
    triaged_at: Timestamp
    same_matter: Annotated[list[DisputeId], Field(max_length=8)] = Field(
        [], description="Earlier disputes sharing a party, the category and the community within the rules' window: the same quarrel "
        "reported under another id; dispatch joins the report to the one that is an open case (since 1.2.0)"
    )
    report: DisputeReported

    @model_validator(mode="after")
    def _consistent(self) -> "DisputeTriaged":
        if TIER_BY_LEVEL[self.level] != self.tier:
            raise ValueError(f"tier must be {TIER_BY_LEVEL[self.level]} for level {self.level}")
        if self.report.dispute_id != self.dispute_id:
            raise ValueError("report.dispute_id must equal dispute_id")
        return self
