"""Reads every topic of a run, as an auditor would, and keeps the figures of the final report."""

import statistics
from datetime import datetime
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from schemas.disputes import DisputeReported, DisputeTriaged
from schemas.followups import FOLLOWUP_MESSAGE, FollowupDue, FollowupResult, ResultAnswered
from schemas.workorders import DEPARTMENT_MESSAGE, WORK_ORDER_EVENT, WorkOrderIssued


@dataclass
class Observed:
    """What the topics of a run show."""

    reported: dict[str, DisputeReported] = field(default_factory=dict)  # by dispute id: a case's or one that joined a case
    reports_received: int = 0
    merged: dict[str, str] = field(default_factory=dict)  # an id reported through another platform → the case it joined
    rereports: Counter = field(default_factory=Counter)  # what reports of a case already held did to it
    again_events: set[str] = field(default_factory=set)
    notices: Counter = field(default_factory=Counter)  # notices the departments received, by kind, each id once
    notice_ids: set[str] = field(default_factory=set)
    answers: Counter = field(default_factory=Counter)  # answers to department updates: applied, superseded, refused
    refusals: Counter = field(default_factory=Counter)  # refused updates, by the field and reason
    cancellations: Counter = field(default_factory=Counter)  # orders cancelled by a new attempt, by reason
    result_answers: Counter = field(default_factory=Counter)  # answers to revisit results: accepted, refused
    reported_at_ms: dict[str, int] = field(default_factory=dict)
    triaged: dict[str, DisputeTriaged] = field(default_factory=dict)  # first grading per dispute
    triaged_events: set[str] = field(default_factory=set)
    escalated_to_3: set[str] = field(default_factory=set)
    orders: dict[str, WorkOrderIssued] = field(default_factory=dict)
    resolved: dict[str, datetime] = field(default_factory=dict)  # dispute -> when it was (last) resolved
    revisited: set[str] = field(default_factory=set)
    due: Counter = field(default_factory=Counter)
    rebounds: int = 0
    results: int = 0
    dead_letters: Counter = field(default_factory=Counter)
    triage_latency: list[float] = field(default_factory=list)
    triaged_ms: dict[str, list[int]] = field(default_factory=dict)
    first_order_ms: dict[tuple[str, int], int] = field(default_factory=dict)
    order_status: dict[str, str] = field(default_factory=dict)

    def take(self, base_topic: str, record: Any) -> None:
        """Account for one record of a topic (named without the run's prefix)."""
        try:
            self._take(base_topic, record)
        except ValidationError:
            self.dead_letters["unreadable"] += 1

    def _take(self, topic: str, record: Any) -> None:
        if topic.endswith(".invalid"):
            reason = dict(record.headers or []).get("dlq_reason", b"").decode(errors="replace").split(":")[0]
            self.dead_letters[f"{topic}: {reason}"] += 1
        elif topic.startswith("workorders.") and topic.endswith(".updates"):
            return  # the simulated departments' own messages, on the shared or their own topics
        elif topic == "disputes.reported":
            report = DisputeReported.model_validate_json(record.value)
            self.reports_received += 1
            self.reported.setdefault(report.dispute_id, report)
            self.reported_at_ms[report.event_id] = record.timestamp
        elif topic == "disputes.triaged":
            self._triaged(DisputeTriaged.model_validate_json(record.value), record.timestamp)
        elif topic == "workorders.events":
            event = WORK_ORDER_EVENT.validate_json(record.value)
            if event.kind == "reported_again":
                self._reported_again(event)
            elif event.kind == "dispute_resolved":
                self.resolved[event.dispute_id] = event.at
            elif event.kind == "status_changed":
                self.order_status[event.work_order_id] = event.status
        elif topic.startswith("workorders."):
            message = DEPARTMENT_MESSAGE.validate_json(record.value)
            if isinstance(message, WorkOrderIssued):
                self._order(message, record.timestamp)
            else:
                self._notice(message)
        elif topic.startswith("followups.") and topic.endswith(".due") and topic != "followups.due":
            # Each due is on its department's topic and on the shared feed: counted once, from the feed. Answers to
            # revisit results are on the department's topic alone.
            message = FOLLOWUP_MESSAGE.validate_json(record.value)
            if isinstance(message, ResultAnswered):
                self._notice(message)
        elif topic == "followups.due":
            due = FollowupDue.model_validate_json(record.value)
            self.due[due.kind] += 1
            if due.kind == "revisit":
                self.revisited.add(due.dispute_id)
        elif topic.startswith("followups.") and topic.endswith(".results"):
            result = FollowupResult.model_validate_json(record.value)
            self.results += 1
            self.rebounds += result.rebound or not result.agreement_fulfilled

    def _reported_again(self, event: Any) -> None:
        if event.event_id in self.again_events:
            return  # a redelivered repeat: same id
        self.again_events.add(event.event_id)
        self.rereports[event.outcome] += 1
        if event.outcome in ("reopened", "renewed"):
            # Back in hand: its pending revisits are cancelled with the new attempt, which is resolved (and revisited) anew.
            self.resolved.pop(event.dispute_id, None)
        if event.matched_by == "same_matter":
            self.merged[event.reported_dispute_id] = event.dispute_id

    def _notice(self, notice: Any) -> None:
        if notice.event_id in self.notice_ids:
            return  # a redelivered repeat: same id
        self.notice_ids.add(notice.event_id)
        self.notices[notice.notice] += 1
        if notice.notice == "update_answered":
            self.answers[notice.outcome] += 1
            if notice.outcome == "refused":
                self.refusals[notice.refusal] += 1
        elif notice.notice == "result_answered":
            self.result_answers[notice.outcome] += 1
        elif notice.notice == "order_cancelled":
            self.cancellations[notice.reason] += 1

    def _triaged(self, triaged: DisputeTriaged, timestamp: int) -> None:
        if triaged.event_id in self.triaged_events:
            return  # a redelivered repeat: same id
        self.triaged_events.add(triaged.event_id)
        self.triaged.setdefault(triaged.dispute_id, triaged)
        self.triaged_ms.setdefault(triaged.dispute_id, []).append(timestamp)
        previous = triaged.report.history.previous_level
        if triaged.cause != "reported" and triaged.level == 3 and (previous or 0) < 3:
            self.escalated_to_3.add(triaged.dispute_id)
        if triaged.source_event_id in self.reported_at_ms:
            self.triage_latency.append((timestamp - self.reported_at_ms[triaged.source_event_id]) / 1000)

    def _order(self, order: WorkOrderIssued, timestamp: int) -> None:
        if order.work_order_id in self.orders:
            return
        self.orders[order.work_order_id] = order
        slot = (order.dispute_id, order.attempt)
        self.first_order_ms[slot] = min(timestamp, self.first_order_ms.get(slot, timestamp))

    def unrevisited(self, resolved_before: datetime) -> set[str]:
        """Return disputes resolved before a time that have had no revisit."""
        return {d for d, at in self.resolved.items() if at <= resolved_before} - self.revisited

    def summary(self) -> dict[str, Any]:
        """Return the report's figures."""
        cases = {d: t for d, t in self.triaged.items() if d not in self.merged}  # one quarrel, counted once
        levels = Counter(t.level for t in cases.values())
        by_department = Counter(o.department for o in self.orders.values())
        resolved_orders = Counter(self.orders[o].department for o, s in self.order_status.items() if s == "resolved" and o in self.orders)
        return {
            "reports_received": self.reports_received,
            "reported": len(self.reported),
            "cases": len(self.reported) - len(self.merged),
            "merged": len(self.merged),
            "rereports": dict(self.rereports),
            "case_notices": self.notices["reported_again"],
            "department_notices": sum(n for kind, n in self.notices.items() if kind != "result_answered"),
            "update_answers": {k: self.answers[k] for k in ("applied", "superseded", "refused")},
            "refusals": dict(self.refusals.most_common()),
            "orders_cancelled": {k: self.cancellations[k] for k in ("superseded", "rerouted")},
            "result_answers": {k: self.result_answers[k] for k in ("accepted", "refused")},
            "triaged": len(self.triaged),
            "triaged_events": len(self.triaged_events),
            "levels": dict(sorted(levels.items())),
            "categories": dict(Counter(t.report.category for t in cases.values()).most_common()),
            "sources": dict(Counter(r.source for r in self.reported.values()).most_common()),
            "orders": len(self.orders),
            "disputes_without_orders": len(self.disputes_without_orders()),
            "orders_by_department": dict(by_department.most_common()),
            "resolved_orders_by_department": dict(resolved_orders),
            "disputes_resolved": len(self.resolved),
            "revisited": len(self.revisited),
            "sla_warnings": self.due["sla_warning"],
            "sla_breaches": self.due["sla_breached"],
            "revisits_due": self.due["revisit"],
            "revisit_results": self.results,
            "rebounds": self.rebounds,
            "escalated_to_level_3": len(self.escalated_to_3),
            "dead_letters": dict(self.dead_letters),
            "triage_latency_ms": _percentiles(self.triage_latency),
            "dispatch_latency_ms": _percentiles(self.dispatch_latency()),
        }

    def dispatch_latency(self) -> list[float]:
        """Seconds from each grading to the first order of the attempt it opened (the n-th grading opens attempt n)."""
        latencies = []
        for dispute, stamps in self.triaged_ms.items():
            for attempt, graded in enumerate(sorted(stamps), 1):
                if (dispute, attempt) in self.first_order_ms:
                    latencies.append((self.first_order_ms[dispute, attempt] - graded) / 1000)
        return latencies

    def disputes_without_orders(self) -> set[str]:
        """Return graded disputes that have no order yet, but for those that joined a case."""
        return set(self.triaged) - {dispute for dispute, _ in self.first_order_ms} - set(self.merged)


def _percentiles(seconds: list[float]) -> dict[str, float]:
    if len(seconds) < 2:
        return {"p50": round(seconds[0] * 1000, 1) if seconds else 0.0, "p99": round(seconds[0] * 1000, 1) if seconds else 0.0}
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {"p50": round(cuts[49] * 1000, 1), "p99": round(cuts[98] * 1000, 1)}


def group_by_topic(prefix: str, records: dict) -> dict[str, list]:
    """Regroup aiokafka's batch by topic name without the run's prefix."""
    grouped: dict[str, list] = defaultdict(list)
    for partition, batch in records.items():
        grouped[partition.topic.removeprefix(prefix)].extend(batch)
    return grouped
