"""Dispatch and follow-up fed directly on the broker: graded disputes and overdue orders by number, and their effects."""

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from schemas.disputes import DISPUTES_TRIAGED, DisputeReported, DisputeTriaged
from schemas.followups import FOLLOWUPS_DUE, FollowupDue
from schemas.workorders import WORKORDERS_EVENTS, OrderIssued
from services.dispatch.routing import DEFAULT_ROUTING, assign, load_routing, work_order_id
from services.followup.timers import followup_id
from services.triage.grading import Features, Grader
from services.triage.handlers import Accepted, triaged_event
from services.triage.ruleset import DEFAULT_RULES, load_ruleset
from tests.support.department import Department
from tests.support.processes import read_all
from tests.support.samples import overdue_order, report_payload

GRADER = Grader(load_ruleset(DEFAULT_RULES))
TABLE = load_routing(DEFAULT_ROUTING)
NOW = datetime.now(timezone.utc)


def triaged(n: int) -> DisputeTriaged:
    """Grade the n-th report with the shipped rules, as triage would: its size, and so its grade, vary with n."""
    report = DisputeReported.model_validate_json(json.dumps(report_payload(event_id=f"evt-{n}", dispute_id=f"D-{n}", party_count=1 + n % 12)))
    grade = GRADER.grade(report, Features.of_text(report.description, GRADER.ruleset))
    return triaged_event(Accepted(None, report.event_id, report, "reported"), grade, GRADER.version, NOW)


def overdue(n: int) -> OrderIssued:
    """Return the order `wo-{n}` of the n-th graded dispute, both its timers due at once."""
    return overdue_order(triaged(n).report, str(n), NOW)


@dataclass
class Fed:
    """A service fed directly: its input topic, the inputs of a range, the effect ids they must have, and the effects seen."""

    service: str
    input_topic: str
    groups: list[str]
    inputs: Callable[[range], list[tuple[bytes, bytes]]]
    expected: Callable[[range], set[str]]
    effects: Callable[[], "asyncio.Future[list[str]]"]
    working_metric: str


def fed(service: str, env: dict, bootstrap: str, settings) -> Fed:
    """Feed dispatch graded disputes, or follow-up overdue orders, and count the orders or dues that come out."""
    if service == "dispatch":
        async def orders() -> list[str]:
            return [o.work_order_id for o in await Department(bootstrap, settings).orders()]

        return Fed(
            "dispatch", settings.topic(DISPUTES_TRIAGED), [f"{env['DISPATCH_GROUP_ID']}.triaged"],
            lambda numbers: [(f"D-{n}".encode(), triaged(n).to_bytes()) for n in numbers],
            lambda numbers: {work_order_id(f"D-{n}", a.department, 1) for n in numbers for a in assign(triaged(n), TABLE)},
            orders, "fengqiao_dispatch_latency_seconds_count",
        )

    async def dues() -> list[str]:
        return [FollowupDue.model_validate_json(r.value).followup_id for r in await read_all(bootstrap, [settings.topic(FOLLOWUPS_DUE)])]

    def expected(numbers) -> set[str]:
        return {followup_id(f"wo-{n}", kind) for n in numbers for kind in ("sla_warning", "sla_breached")}

    return Fed(
        "followup", settings.topic(WORKORDERS_EVENTS), [f"{env['FOLLOWUP_GROUP_ID']}.events"],
        lambda numbers: [(f"D-{n}".encode(), overdue(n).to_bytes()) for n in numbers], expected, dues,
        "fengqiao_followup_timer_lag_seconds_count",
    )
