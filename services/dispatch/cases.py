"""One case per dispute: where a graded report belongs, and what it does there. Pure: the store feeds it.

The same quarrel reaches Fengqiao through several channels (两网融一网: the grid app, 110, the 12345 hotline): under
the case's own id, or under another platform's id that triage finds to be the same matter. Such a report joins the
open case, so every figure counts one quarrel once; it supersedes the case's orders only when it grades higher, and a
report of a case resolved within the routing file's window reopens it as a rebound rather than starting afresh.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from schemas.disputes import DisputeReported, DisputeTriaged, ReassessmentRequested
from schemas.workorders import CaseNotice, CaseReportedAgain, MatchReason, ReportOutcome
from services.dispatch.calendar import WorkingCalendar
from services.dispatch.disclosure import DisclosurePolicy, disclose_to
from services.dispatch.lifecycle import OPEN, Dispute, Effects, Order, ReportTaken, derived_id, dispatch, resolved_leads
from services.dispatch.routing import RoutingTable

MAX_PARTIES = 200  # DisputeReported's own limits: a case gathering reports stays a valid report
MAX_DESCRIPTION = 5000


@dataclass(frozen=True)
class Case:
    """A case as a report finds it: its dispute row, the open orders of its current attempt, whether that was resolved."""

    dispute: Dispute
    open_orders: tuple[Order, ...] = ()
    resolved: bool = False

    @property
    def is_open(self) -> bool:
        """Tell whether its current attempt is unresolved (orders open, or waiting for triage between attempts)."""
        return not self.resolved


def case_of(dispute: Dispute, orders: list[Order]) -> Case:
    """See a dispute as a case: resolved once every lead order of its current attempt is (as dispute_resolved says)."""
    current = [o for o in orders if o.attempt == dispute.attempt]
    return Case(dispute, tuple(o for o in current if o.status in OPEN), bool(resolved_leads(current)))


@dataclass(frozen=True)
class Placement:
    """Where a graded report goes: a new case, the next attempt of one, or another report of one."""

    action: Literal["new_case", "attempt", "joined", "reopened", "overtaken"]
    case: Case | None = None
    matched_by: MatchReason | None = None


def cases_for(
    triaged: DisputeTriaged, aliases: Mapping[str, str], disputes: Mapping[str, Dispute], orders: Mapping[str, Mapping[str, Order]]
) -> tuple[Case | None, list[Case]]:
    """Return the case of a report's own id, and the cases of the same matter: open ones first, then the latest resolved.

    An id that joined a case before is that case's, found as the same matter again, first.
    """
    joined_case = aliases.get(triaged.dispute_id)
    own = None if joined_case else _case(triaged.dispute_id, disputes, orders)
    ids = dict.fromkeys(aliases.get(i, i) for i in ([joined_case] if joined_case else []) + list(triaged.same_matter))
    matter = [c for c in (_case(i, disputes, orders) for i in ids if i != triaged.dispute_id) if c is not None]
    return own, sorted(matter, key=lambda c: (c.resolved, -(c.dispute.resolved_at.timestamp() if c.dispute.resolved_at else 0.0)))


def _case(dispute_id: str, disputes: Mapping[str, Dispute], orders: Mapping[str, Mapping[str, Order]]) -> Case | None:
    return case_of(disputes[dispute_id], list(orders.get(dispute_id, {}).values())) if dispute_id in disputes else None


def take_report(
    triaged: DisputeTriaged, own: Case | None, matter: list[Case], table: RoutingTable, calendar: WorkingCalendar,
    disclosure: DisclosurePolicy, routing: str | None = None, holidays: str | None = None,
) -> Effects:
    """Turn a graded report into its effects: a new case, the next attempt of one, or another report of one.

    Times come from the graded event, never the clock, so a redelivery repeats the same records.
    """
    now = triaged.triaged_at
    placement = place(triaged, own, matter, now, timedelta(days=table.cases.reopen_within_days))
    case = placement.case
    if placement.action == "overtaken":
        return Effects()
    if placement.action == "new_case":
        effects = dispatch(triaged, None, [], now, table, calendar, disclosure, routing, holidays)
        if triaged.cause == "reported":  # a reassessment is no report: nobody reported anything again
            effects.reports.append(taken(triaged, triaged.dispute_id, "new"))
        return effects
    if placement.action == "attempt" and placement.matched_by is None:  # a reassessment, as ever
        return dispatch(triaged, case.dispute, list(case.open_orders), now, table, calendar, disclosure, routing, holidays)
    if placement.action == "attempt":
        effects = dispatch(as_case(triaged, case), case.dispute, list(case.open_orders), now, table, calendar, disclosure, routing, holidays)
        effects.events.append(_reported_again(triaged, placement, "regraded" if case.is_open else "renewed", triaged.level, now))
    elif placement.action == "joined":
        effects = joined(triaged, placement, disclosure, now)
    else:
        effects = reopened(triaged, placement, now)
    outcome = next(e.outcome for e in effects.events if e.kind == "reported_again")
    effects.reports.append(taken(triaged, case.dispute.dispute_id, outcome))
    if placement.matched_by == "same_matter":
        effects.aliases[triaged.dispute_id] = case.dispute.dispute_id
    return effects


def taken(triaged: DisputeTriaged, case_id: str, outcome: str) -> ReportTaken:
    """Record a report taken into a case by its figures alone: no party, no description."""
    report = triaged.report
    return ReportTaken(triaged.source_event_id, case_id, triaged.dispute_id, report.source, report.reported_at, outcome)


def place(triaged: DisputeTriaged, own: Case | None, matter: list[Case], now: datetime, reopen_within: timedelta) -> Placement:
    """Decide where a graded report belongs; `own` is its id's case, `matter` the open or recent cases triage matched."""
    if triaged.cause == "sla_breached" and own is not None and own.resolved:
        # Follow-up fires a breach by its clock and learns of resolutions from dispatch's events: when it lags, a
        # resolution just before the deadline is still open there. The case was resolved (its revisits will tell how
        # well); a new attempt would supersede the resolution and cancel those revisits.
        return Placement("overtaken", own)
    if triaged.cause != "reported":
        return Placement("attempt", own) if own else Placement("new_case")
    if own is not None:
        return _again(triaged, own, "same_dispute_id", now, reopen_within) or Placement("attempt", own, "same_dispute_id")
    for case in matter:  # open cases first, then the most recently resolved (cases_for's order)
        if found := _again(triaged, case, "same_matter", now, reopen_within):
            return found
    return Placement("new_case")


def _again(triaged: DisputeTriaged, case: Case, how: MatchReason, now: datetime, reopen_within: timedelta) -> Placement | None:
    if case.is_open:
        # A report that grades higher than the case is news the lead must act on: a new attempt at that level.
        return Placement("attempt" if triaged.level > case.dispute.level else "joined", case, how)
    # Resolved before resolution times were kept (no time): too long ago to tell, so a new attempt, as before.
    if case.dispute.resolved_at is not None and now - case.dispute.resolved_at <= reopen_within:
        return Placement("reopened", case, how)
    return None


def gathered(case: DisputeReported, report: DisputeReported) -> DisputeReported:
    """Add a new report's parties and description to a case's report, within the report's own limits."""
    known = {(p.name, p.id_number, p.phone) for p in case.parties}
    parties = list(case.parties) + [p for p in report.parties if (p.name, p.id_number, p.phone) not in known]
    heading = f"\n〔{report.source} {report.reported_at.isoformat()} {report.dispute_id}〕"
    room = MAX_DESCRIPTION - len(case.description) - len(heading)
    description = case.description + (heading + report.description[:room] if room > 0 else "")
    return case.model_copy(update={
        "parties": parties[:MAX_PARTIES],
        "description": description,
        "party_count": max(case.party_count, report.party_count),
        "risk": case.risk.model_copy(update={k: v for k, v in report.risk.model_dump().items() if v}),
    })


def as_case(triaged: DisputeTriaged, case: Case) -> DisputeTriaged:
    """Speak of the case, with everything reported of it so far and its own history, in the report's grade."""
    report = gathered(case.dispute.report, triaged.report).model_copy(update={"history": case.dispute.history})
    return triaged.model_copy(update={"dispute_id": case.dispute.dispute_id, "report": report})


def joined(triaged: DisputeTriaged, placement: Placement, disclosure: DisclosurePolicy, now: datetime) -> Effects:
    """Add a report to its open case: no order issued or superseded; the departments holding open orders are told."""
    case = placement.case
    effects = Effects()
    effects.disputes[case.dispute.dispute_id] = replace(case.dispute, report=gathered(case.dispute.report, triaged.report))
    effects.events.append(_reported_again(triaged, placement, "joined", case.dispute.level, now))
    by_department: dict[tuple[str, str], list[str]] = {}
    for order in sorted(case.open_orders, key=lambda o: o.work_order_id):
        by_department.setdefault((order.department, order.role), []).append(order.work_order_id)
    effects.notices.extend(
        CaseNotice(
            notice="reported_again",
            event_id=derived_id("ntc", triaged.event_id, department, role),
            dispute_id=case.dispute.dispute_id,
            department=department,
            role=role,
            work_order_ids=ids[:8],
            reported_dispute_id=triaged.dispute_id,
            source=triaged.report.source,
            reported_at=triaged.report.reported_at,
            description=triaged.report.description,
            parties=disclose_to(disclosure, department, role, list(triaged.report.parties)),
            at=now,
            disclosure=disclosure.version,
        )
        for (department, role), ids in by_department.items()
    )
    return effects


def reopened(triaged: DisputeTriaged, placement: Placement, now: datetime) -> Effects:
    """Reopen a recently resolved case as a rebound: triage grades it again with one rebound more."""
    case = placement.case.dispute
    report = gathered(case.report, triaged.report)
    history = case.history.model_copy(update={"rebounds": case.history.rebounds + 1, "previous_level": case.level})
    effects = Effects()
    effects.disputes[case.dispute_id] = replace(case, report=report, history=history)
    effects.events.append(_reported_again(triaged, placement, "reopened", case.level, now))
    effects.reassessments.append(
        ReassessmentRequested(
            event_id=derived_id("rea", triaged.event_id, "reopened"), dispute_id=case.dispute_id, requested_at=now,
            reason="rebound", caused_by=triaged.source_event_id, report=report, history=history,
        )
    )
    return effects


def _reported_again(triaged: DisputeTriaged, placement: Placement, outcome: ReportOutcome, level: int, now: datetime) -> CaseReportedAgain:
    case = placement.case.dispute
    return CaseReportedAgain(
        event_id=derived_id("ev", triaged.event_id, "reported_again"),
        dispute_id=case.dispute_id,
        attempt=case.attempt,
        at=now,
        reported_dispute_id=triaged.dispute_id,
        source_event_id=triaged.source_event_id,
        source=triaged.report.source,
        reported_at=triaged.report.reported_at,
        matched_by=placement.matched_by,
        outcome=outcome,
        level=level,
    )
