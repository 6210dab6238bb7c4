"""The pure decisions of follow-up: what dispatch's events set and cancel, what a round of due timers says, which results count.

No broker, clock or database here: the handlers load what these functions need and write what they return.
"""

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from schemas.disputes import DisputeReported, ReassessmentRequested
from schemas.followups import FOLLOWUPS_DUE, FollowupDue, FollowupResult, ResultAnswered, due_topic
from schemas.workorders import OrderIssued, WorkOrderEvent
from services.dispatch.disclosure import DisclosurePolicy, disclose

GOVERNANCE_CENTRE = "governance_centre"
# Statuses that end an order, and what follow-up remembers of each: only a resolution counts as resolved (办结).
CLOSING = {"resolved": "resolved", "mediation_failed": "closed", "returned": "closed", "superseded": "closed"}
# Whatever a result arrived in (a consumed record): judged results hand it back untouched with their refusal.
Input = TypeVar("Input")


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
    state: str = "pending"  # pending, fired, cancelled: only a fired revisit was asked, so only it takes a result


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


def due_message(timer: Timer, report: DisputeReported, fired_at: datetime, disclosure: DisclosurePolicy) -> FollowupDue:
    """Say that a timer came due; revisits carry the parties' details the policy gives the revisit team."""
    revisit = timer.kind == "revisit"
    return FollowupDue(
        followup_id=timer.followup_id,
        kind=timer.kind,
        dispute_id=timer.dispute_id,
        department=timer.department,
        work_order_id=timer.work_order_id,
        due_at=timer.due_at,
        fired_at=fired_at,
        revisit_number=timer.revisit_number,
        parties=disclose(disclosure.revisit, report.parties) if revisit else [],
        disclosure=disclosure.version if revisit else None,
    )


def feed_message(due: FollowupDue) -> FollowupDue:
    """Strip a due of its parties for the operators' shared feed: they count and chart dues, they visit nobody."""
    # Without parties there is no disclosure to name either, as on a deadline alert.
    return due.model_copy(update={"parties": [], "disclosure": None})


def due_records(due: FollowupDue) -> list[tuple[str, FollowupDue]]:
    """Address a due: in full to its department's own topic, stripped to the operators' shared feed."""
    # Both derive from the one decided message alone, so a round published again repeats both records' bytes.
    return [(due_topic(due.department), due), (FOLLOWUPS_DUE, feed_message(due))]


def breach_reassessment(timer: Timer, report: DisputeReported, level: int, now: datetime) -> ReassessmentRequested:
    """Ask triage to grade an overdue dispute again, one breach more."""
    history = report.history.model_copy(update={"sla_breaches": report.history.sla_breaches + 1, "previous_level": level})
    return ReassessmentRequested(
        event_id=f"rea-{timer.followup_id[3:]}", dispute_id=timer.dispute_id, requested_at=now, reason="sla_breached",
        caused_by=timer.followup_id, report=report, history=history,
    )


def flared_up(result: FollowupResult) -> bool:
    """Tell whether a revisit found the dispute back: a rebound, or an agreement not kept."""
    return result.rebound or not result.agreement_fulfilled


def rebound_reassessment(result: FollowupResult, report: DisputeReported, level: int, now: datetime) -> ReassessmentRequested | None:
    """Ask triage to grade a dispute again when it flared up or the agreement is not kept; None when all is well."""
    if not flared_up(result):
        return None
    history = report.history.model_copy(update={"rebounds": report.history.rebounds + 1, "previous_level": level})
    return ReassessmentRequested(
        event_id=f"rea-{followup_id(result.event_id)[3:]}", dispute_id=result.dispute_id, requested_at=now,
        reason="rebound" if result.rebound else "agreement_unfulfilled", caused_by=result.event_id, report=report, history=history,
    )


@dataclass(frozen=True)
class Dispute:
    """What follow-up remembers of a dispute: its newest attempt, the level it was graded, its report and whether that was erased."""

    dispute_id: str
    attempt: int
    level: int
    report: DisputeReported
    erased: bool = False  # the report's personal data is gone (see FollowupStore.retained_page)


@dataclass(frozen=True)
class TrackedOrder:
    """An issued order whose deadline follow-up watches."""

    work_order_id: str
    dispute_id: str
    department: str
    role: str
    attempt: int
    due_at: datetime


@dataclass(frozen=True)
class Resolution:
    """A resolved attempt, counted for the mediation success rate (调解成功率)."""

    event_id: str
    dispute_id: str
    attempt: int
    department: str
    failed_mediations: int


@dataclass
class EventEffects:
    """What a batch of dispatch events writes, in the order the store must apply it."""

    orders: list[TrackedOrder] = field(default_factory=list)
    # Each dispute's newest attempt in the batch, where it is not older than the one remembered.
    disputes: list[Dispute] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    # Work order → the status it ends with; its pending timers are cancelled.
    closing: dict[str, str] = field(default_factory=dict)
    resolutions: list[Resolution] = field(default_factory=list)
    # Dispute → its newest attempt: pending revisits of earlier attempts are cancelled.
    superseded_revisits: dict[str, int] = field(default_factory=dict)


def event_effects(events: Sequence[WorkOrderEvent], known_attempts: dict[str, int], warning_fraction: float, revisit_days: list[int]) -> EventEffects:
    """Turn a batch of work-order events into the rows to write and the timers to set or cancel."""
    issued = [e for e in events if e.kind == "issued"]
    resolved = [e for e in events if e.kind == "dispute_resolved"]
    return EventEffects(
        orders=[_tracked(e) for e in issued],
        disputes=_newest_disputes(issued, known_attempts),
        timers=[t for e in issued for t in sla_timers(e, warning_fraction)]
        + [t for e in resolved for t in revisit_timers(e.dispute_id, e.attempt, e.resolving_department, e.at, revisit_days)],
        closing={e.work_order_id: CLOSING[e.status] for e in events if e.kind == "status_changed" and e.status in CLOSING},
        resolutions=[
            Resolution(e.event_id, e.dispute_id, e.attempt, e.resolving_department, e.report.history.failed_mediations) for e in resolved
        ],
        superseded_revisits=_superseding_attempts(issued),
    )


def _tracked(issued: OrderIssued) -> TrackedOrder:
    return TrackedOrder(issued.work_order_id, issued.dispute_id, issued.department, issued.role, issued.attempt, issued.due_at)


def _newest_disputes(issued: list[OrderIssued], known_attempts: dict[str, int]) -> list[Dispute]:
    # Reassessments and revisits speak of the newest attempt: an older one arriving late must not overwrite it.
    latest: dict[str, OrderIssued] = {}
    for event in issued:
        if event.dispute_id not in latest or event.attempt >= latest[event.dispute_id].attempt:
            latest[event.dispute_id] = event
    return [
        Dispute(e.dispute_id, e.attempt, e.level, e.report)
        for e in latest.values()
        if e.dispute_id not in known_attempts or e.attempt >= known_attempts[e.dispute_id]
    ]


def _superseding_attempts(issued: list[OrderIssued]) -> dict[str, int]:
    # A new attempt means the dispute was reported or reassessed again: revisits of earlier ones are moot.
    newest: dict[str, int] = {}
    for event in issued:
        newest[event.dispute_id] = max(event.attempt, newest.get(event.dispute_id, 0))
    return {dispute_id: attempt for dispute_id, attempt in newest.items() if attempt > 1}


@dataclass(frozen=True)
class DueContext:
    """What the store knows about the disputes and orders of a round of due timers."""

    open_orders: set[str]
    disputes: dict[str, Dispute]
    # (dispute, attempt) pairs a breach has already re-graded.
    regraded: set[tuple[str, int]]
    # (dispute, attempt) pairs resolved.
    resolved: set[tuple[str, int]]


@dataclass
class Round:
    """What a round of due timers does: which fire and what they say, which are cancelled, which attempts re-grade."""

    fired: list[Timer] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    dues: list[FollowupDue] = field(default_factory=list)
    reassessments: list[ReassessmentRequested] = field(default_factory=list)
    regraded: list[tuple[str, int]] = field(default_factory=list)


def fire_round(due: list[Timer], known: DueContext, now: datetime, disclosure: DisclosurePolicy) -> Round:
    """Decide a round of due timers: fire those still meaningful, and re-grade each attempt on its first breach only."""
    done = Round()
    # A support order left open after its dispute was resolved is reported, but re-grades nothing.
    settled = known.regraded | known.resolved
    for timer in due:
        if (timer.work_order_id and timer.work_order_id not in known.open_orders) or timer.dispute_id not in known.disputes:
            done.cancelled.append(timer.followup_id)  # the order closed in time: nothing to say
            continue
        dispute = known.disputes[timer.dispute_id]
        done.fired.append(timer)
        done.dues.append(due_message(timer, dispute.report, now, disclosure))
        attempt = (timer.dispute_id, timer.attempt)
        if timer.kind == "sla_breached" and timer.regrades and attempt not in settled:
            settled.add(attempt)
            done.regraded.append(attempt)
            done.reassessments.append(breach_reassessment(timer, dispute.report, dispute.level, now))
    return done


@dataclass(frozen=True)
class Refusal:
    """Why a revisit result is refused: a bounded metric label, and a reason naming the field at fault."""

    label: str
    reason: str


# Dead-letter consumers and tests read these reasons: keep their wording.
REFUSALS = {
    refusal.label: refusal
    for refusal in (
        Refusal("unknown_followup", "followup_id: unknown_followup: no timer has this id"),
        Refusal("department_mismatch", "department: department_mismatch: the topic it came on is not this revisit's department's"),
        Refusal("dispute_mismatch", "dispute_id: dispute_mismatch: not the dispute of this follow-up"),
        Refusal("not_a_revisit", "followup_id: not_a_revisit: only revisits take results"),
        Refusal("not_due", "followup_id: not_due: this revisit has not come due (pending or cancelled)"),
        Refusal("already_answered", "followup_id: already_answered: another result for this revisit counted"),
        Refusal("expired", "followup_id: expired: this revisit's dispute was erased after its retention"),
    )
}


def result_department(sender: str | None, timer: Timer | None) -> str | None:
    """Say whose event id a result's is: its topic's department, else (the shared development topic) its revisit's."""
    # On the shared topic the sender is unknown; the revisit's department is whose team was asked, and a result that
    # counts must come from it. A result of no known revisit is refused anyway: None, and only the unscoped key.
    return sender or (timer.department if timer else None)


def result_key(department: str | None, event_id: str) -> str:
    """Name a result's processed id: event ids are the revisit team's, so they are unique only within its department."""
    return f"result:{department}:{event_id}" if department else legacy_result_key(event_id)


def legacy_result_key(event_id: str) -> str:
    """Name a result's processed id as written before ids were scoped by department: such a result was processed once."""
    return f"result:{event_id}"


def sender_refusal(timer: Timer | None, sender: str | None) -> Refusal | None:
    """Refuse a result sent on another department's topic than its revisit's; None is the shared development topic."""
    # A result names no department: the timer says whose revisit it is, the ACL'd topic who answered.
    if timer is None or sender is None or timer.department == sender:
        return None
    return REFUSALS["department_mismatch"]


def split_senders(
    results: Sequence[tuple[Input, FollowupResult]], timers: Mapping[str, Timer], sender: Callable[[Input], str | None]
) -> tuple[list[tuple[Input, FollowupResult]], list[tuple[Input, Refusal]]]:
    """Split results into those sent by their revisit's department (or unknown revisits, refused later) and impostors."""
    trusted, impostors = [], []
    for source, result in results:
        if why := sender_refusal(timers.get(result.followup_id), sender(source)):
            impostors.append((source, why))
        else:
            trusted.append((source, result))
    return trusted, impostors


def refusal(result: FollowupResult, timer: Timer | None, answered: Mapping[str, str], erased: bool = False) -> Refusal | None:
    """Refuse a result of no timer, of another dispute's, of a deadline, of a revisit not made, answered or expired; None when it counts."""
    # `answered`: revisit → the event id of the result that counted for it.
    if timer is None:
        return REFUSALS["unknown_followup"]
    if timer.dispute_id != result.dispute_id:
        return REFUSALS["dispute_mismatch"]
    if timer.kind != "revisit":
        return REFUSALS["not_a_revisit"]
    if timer.state != "fired":
        return REFUSALS["not_due"]  # nobody was asked yet: such a result is forged or early, and would re-grade unasked
    if result.followup_id in answered:
        return REFUSALS["already_answered"]  # one visit, one answer: more would re-grade the dispute once per result
    if erased:
        return REFUSALS["expired"]  # a rebound would send triage a report without its parties: too late to act on
    return None


@dataclass
class Judged(Generic[Input]):
    """What a batch of revisit results does: results to record, inputs refused with why, disputes sent back to triage."""

    # Every result judged, in order, with its verdict: its refusal (None when it counts) and whether triage is asked again.
    verdicts: list[tuple[Input, FollowupResult, Refusal | None, bool]] = field(default_factory=list)
    reassessments: list[ReassessmentRequested] = field(default_factory=list)

    @property
    def recorded(self) -> list[FollowupResult]:
        """Return the results that count, in order."""
        return [result for _, result, refused, _ in self.verdicts if refused is None]

    @property
    def refused(self) -> list[tuple[Input, Refusal]]:
        """Return the inputs refused, in order, with why."""
        return [(source, refused) for source, _, refused, _ in self.verdicts if refused is not None]


def judge_results(
    results: Sequence[tuple[Input, FollowupResult]],
    timers: dict[str, Timer],
    answered: Mapping[str, str],
    disputes: dict[str, Dispute],
    now: datetime,
) -> Judged[Input]:
    """Record the first result of each fired revisit, refuse the others; a flare-up asks triage to grade the dispute again."""
    judged: Judged[Input] = Judged()
    counted = dict(answered)  # revisit → the event id of the result that counted for it, this batch's included
    for source, result in results:
        if counted.get(result.followup_id) == result.event_id:
            continue  # the result that counted, delivered again (at-least-once): not a second answer
        known = disputes.get(result.dispute_id)
        if refused := refusal(result, timers.get(result.followup_id), counted, known is not None and known.erased):
            judged.verdicts.append((source, result, refused, False))
            continue
        counted[result.followup_id] = result.event_id
        dispute = disputes[result.dispute_id]
        if request := rebound_reassessment(result, dispute.report, dispute.level, now):
            judged.reassessments.append(request)
        judged.verdicts.append((source, result, None, request is not None))
    return judged


def result_answer(result: FollowupResult, department: str, content: bytes, refused: Refusal | None, reassessed: bool) -> ResultAnswered:
    """Answer one revisit result on its department's due topic: accepted, or refused with the reason naming the field.

    The id derives from the result's department-scoped key and its content, so a redelivery repeats the same answer.
    """
    return ResultAnswered(
        notice="result_answered",
        event_id=followup_id("answer", result_key(department, result.event_id), hashlib.sha256(content).hexdigest()),
        result_event_id=result.event_id,
        followup_id=result.followup_id,
        dispute_id=result.dispute_id,
        department=department,
        outcome="refused" if refused else "accepted",
        reassessed=reassessed,
        refusal=refused.label if refused else None,
        reason=refused.reason if refused else None,
        at=result.at,
    )
