"""How simulated departments and revisit teams behave: when they act and what they report."""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.followups import FollowupDue, FollowupResult
from schemas.workorders import WorkOrderIssued, WorkOrderUpdate


@dataclass(frozen=True)
class Behaviour:
    """Shares of outcomes; the defaults follow the seeds (95 % mediation success, about 3 % rebounds)."""

    first_attempt_success: float = 0.95
    later_attempt_success: float = 0.8
    returned: float = 0.02
    late: float = 0.03
    rebound: float = 0.03


def plan_order(order: WorkOrderIssued, rng: random.Random, behaviour: Behaviour) -> list[tuple[datetime, WorkOrderUpdate]]:
    """Plan a department's updates to one order: accept, then resolve, fail, return, or miss the deadline."""
    span = order.due_at - order.issued_at
    accept_at = order.issued_at + span * rng.uniform(0.02, 0.1)
    if rng.random() < behaviour.late:
        return [(accept_at, _update(order, "accepted", accept_at, 1))]  # then nothing: the deadline passes
    finish_at = order.issued_at + span * rng.uniform(0.2, 0.75)
    success = behaviour.first_attempt_success if order.attempt == 1 else behaviour.later_attempt_success
    if order.department != "governance_centre" and rng.random() < behaviour.returned:
        outcome = "returned"
    elif order.role == "lead" and rng.random() > success:
        outcome = "mediation_failed"
    else:
        outcome = "resolved"
    return [(accept_at, _update(order, "accepted", accept_at, 1)), (finish_at, _update(order, outcome, finish_at, 2))]


def _update(order: WorkOrderIssued, status: str, at: datetime, step: int) -> WorkOrderUpdate:
    return WorkOrderUpdate(
        event_id=f"sim-{order.work_order_id}-{step}", work_order_id=order.work_order_id, dispute_id=order.dispute_id,
        department=order.department, status=status, note="模拟部门上报", at=at,
    )


def answer_revisit(due: FollowupDue, rng: random.Random, behaviour: Behaviour) -> tuple[datetime, FollowupResult]:
    """Plan a revisit team's answer: mostly satisfied, a few rebounds."""
    at = due.fired_at + timedelta(hours=rng.uniform(2, 30))
    rebound = rng.random() < behaviour.rebound
    result = FollowupResult(
        event_id=f"sim-{due.followup_id}", followup_id=due.followup_id, dispute_id=due.dispute_id,
        satisfaction=rng.choice([2, 3]) if rebound else rng.choice([4, 5, 5, 5]),
        agreement_fulfilled=not rebound, rebound=rebound, note="电话回访", at=at,
    )
    return at, result
