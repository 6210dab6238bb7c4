"""The pure decisions of follow-up: which timers an event sets or cancels, and what a due timer says."""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.disputes import DisputeReported, ReassessmentRequested
from schemas.followups import FollowupDue, FollowupResult
from schemas.workorders import OrderIssued

GOVERNANCE_CENTRE = "governance_centre"


def followup_id(*parts: str) -> str:
    """Derive a timer's id from what it is about, so a repeated fire is recognisable downstream."""
    return f"fu-{hashlib.sha256(chr(31).join(parts).encode()).hexdigest()[:40]}"


@dataclass(frozen=True)
class Timer:
    """One durable timer."""

    followup_id: str
    kind: str  # sla_warning, sla_breached, revisit
    dispute_id: str
    attempt: int
    department: str
    due_at: datetime
    work_order_id: str | None = None
    revisit_number: int | None = None
    # A late first response (三个第一时间) is reported to the governance centre but does not re-grade the dispute.
    regrades: bool = True


def sla_timers(issued: OrderIssued, warning_fraction: float) -> list[Timer]:
    """A warning part of the way to the deadline and a breach at it; the breach goes to the governance centre."""
    warn_at = issued.issued_at + (issued.due_at - issued.issued_at) * warning_fraction
    common = {"dispute_id": issued.dispute_id, "attempt": issued.attempt, "work_order_id": issued.work_order_id, "regrades": not issued.first_response}
    return [
        Timer(followup_id(issued.work_order_id, "sla_warning"), "sla_warning", department=issued.department, due_at=warn_at, **common),
        Timer(followup_id(issued.work_order_id, "sla_breached"), "sla_breached", department=GOVERNANCE_CENTRE, due_at=issued.due_at, **common),
    ]


def revisit_timers(dispute_id: str, attempt: int, department: str, resolved_at: datetime, days: list[int]) -> list[Timer]:
    """One revisit per configured delay after resolution, to the resolving lead department."""
    return [
        Timer(
            followup_id(dispute_id, str(attempt), "revisit", str(n)), "revisit", dispute_id, attempt, department,
            resolved_at + timedelta(days=d), revisit_number=n,
        )
        for n, d in enumerate(days, 1)
    ]


def due_message(timer: Timer, report: DisputeReported, fired_at: datetime) -> FollowupDue:
    """Say that a timer came due; revisits carry the parties' contact details."""
    return FollowupDue(
        followup_id=timer.followup_id,
        kind=timer.kind,
        dispute_id=timer.dispute_id,
        department=timer.department,
        work_order_id=timer.work_order_id,
        due_at=timer.due_at,
        fired_at=fired_at,
        revisit_number=timer.revisit_number,
        parties=report.parties if timer.kind == "revisit" else [],
    )


def breach_reassessment(timer: Timer, report: DisputeReported, level: int, now: datetime) -> ReassessmentRequested:
    """Ask triage to grade an overdue dispute again, one breach more."""
    history = report.history.model_copy(update={"sla_breaches": report.history.sla_breaches + 1, "previous_level": level})
    return ReassessmentRequested(
        event_id=f"rea-{timer.followup_id[3:]}", dispute_id=timer.dispute_id, requested_at=now, reason="sla_breached",
        caused_by=timer.followup_id, report=report, history=history,
    )


def rebound_reassessment(result: FollowupResult, report: DisputeReported, level: int, now: datetime) -> ReassessmentRequested | None:
    """Ask triage to grade a dispute again when it flared up or the agreement is not kept; None when all is well."""
    if not result.rebound and result.agreement_fulfilled:
        return None
    history = report.history.model_copy(update={"rebounds": report.history.rebounds + 1, "previous_level": level})
    return ReassessmentRequested(
        event_id=f"rea-{followup_id(result.event_id)[3:]}", dispute_id=result.dispute_id, requested_at=now,
        reason="rebound" if result.rebound else "agreement_unfulfilled", caused_by=result.event_id, report=report, history=history,
    )
