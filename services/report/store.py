"""The statistics report's reads: rows of dispatch's and follow-up's stores, figures only, never personal data.

Every query of the report lives here; `services.report.figures` computes from the rows these return.
A dispute's report is a JSON text in both stores: only its figures (date, source, region, category, risk flags,
history) are kept from it, the description and the parties never leave this module.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.dispatch import store as dispatch_store
from services.followup import store as followup_store
from services.runtime.store import aware, utc

# How far an upstream platform's report date may run ahead of the time dispatch issued its orders.
CLOCK_SKEW = timedelta(days=2)
# The reporter's risk signals (schemas.disputes.Risk), the flags the report counts.
RISK_FLAGS = ("violence_threat", "weapon_involved", "self_harm_threat", "mass_gathering", "cross_region", "petition_history")


@dataclass(frozen=True)
class DisputeRow:
    """One case as dispatch holds it: its current attempt and grade, and the figures of its report."""

    dispute_id: str
    attempt: int
    level: int
    urgency: str
    reported_at: datetime
    source: str
    category: str
    county: str
    town: str
    community: str
    risks: tuple[str, ...]
    failed_mediations: int
    previous_level: int | None


@dataclass(frozen=True)
class OrderRow:
    """One work order as dispatch holds it."""

    work_order_id: str
    dispute_id: str
    department: str
    role: str
    attempt: int
    status: str
    issued_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class ReportRow:
    """One report dispatch took: the case it went to, its channel and date, and what it did there (new, joined...)."""

    case_id: str
    source: str
    reported_at: datetime
    outcome: str


@dataclass(frozen=True)
class ResolutionRow:
    """One resolved attempt as follow-up counts it for 调解成功率."""

    dispute_id: str
    attempt: int
    department: str
    failed_mediations: int


@dataclass(frozen=True)
class TimerRow:
    """One follow-up timer: an SLA warning, an SLA breach or a revisit, and its state."""

    dispute_id: str
    kind: str
    work_order_id: str | None
    department: str
    state: str


@dataclass(frozen=True)
class ResultRow:
    """One revisit result: the satisfaction found and whether the dispute flared up again."""

    dispute_id: str
    satisfaction: int
    flared_up: bool


@dataclass(frozen=True)
class Rows:
    """Everything the report computes from."""

    disputes: list[DisputeRow]
    orders: list[OrderRow]
    resolutions: list[ResolutionRow]
    timers: list[TimerRow]
    results: list[ResultRow]
    reports: list[ReportRow] = field(default_factory=list)


def dispute_row(dispute_id: str, attempt: int, level: int, urgency: str, report_json: str, history_json: str) -> DisputeRow:
    """Keep the figures of a stored dispute: never its description, nor its parties."""
    report = json.loads(report_json)
    history = json.loads(history_json)
    region = report["region"]
    risk = report.get("risk", {})
    return DisputeRow(
        dispute_id, attempt, level, urgency, aware(datetime.fromisoformat(report["reported_at"])), report["source"], report["category"],
        region["county"], region["town"], region["community"], tuple(flag for flag in RISK_FLAGS if risk.get(flag)),
        history.get("failed_mediations", 0), history.get("previous_level"),
    )


async def load_rows(dispatch: AsyncEngine, followup: AsyncEngine, since: datetime | None) -> Rows:
    """Read the rows of the disputes that may have been reported since `since` (all of them when None).

    A dispute's orders are issued after it is reported, so one reported since `since` has an order issued since then:
    the stores are read for those only, and the exact period is left to the figures (the report date is inside JSON).
    """
    if since is not None:
        # The reporting platforms' clocks are not ours: a report dated a little after its order was issued still counts.
        since -= CLOCK_SKEW
    d_disputes, d_orders = dispatch_store.disputes, dispatch_store.orders
    query = select(d_disputes.c.dispute_id, d_disputes.c.attempt, d_disputes.c.level, d_disputes.c.urgency, d_disputes.c.report, d_disputes.c.history)
    if since is not None:
        query = query.where(exists().where(d_orders.c.dispute_id == d_disputes.c.dispute_id, d_orders.c.issued_at >= utc(since)))
    async with dispatch.connect() as connection:
        disputes = [dispute_row(*row) for row in await connection.execute(query)]
        order_query = select(
            d_orders.c.work_order_id, d_orders.c.dispute_id, d_orders.c.department, d_orders.c.role, d_orders.c.attempt, d_orders.c.status,
            d_orders.c.issued_at, d_orders.c.due_at,
        )
        if since is not None:
            order_query = order_query.where(d_orders.c.dispute_id.in_(select(query.subquery().c.dispute_id)))
        orders = [OrderRow(r[0], r[1], r[2], r[3], r[4], r[5], aware(r[6]), aware(r[7])) for r in await connection.execute(order_query)]
        taken = dispatch_store.reports_taken
        report_query = select(taken.c.case_id, taken.c.source, taken.c.reported_at, taken.c.outcome)
        if since is not None:
            report_query = report_query.where(taken.c.case_id.in_(select(query.subquery().c.dispute_id)))
        wanted = {d.dispute_id for d in disputes}
        reports = [ReportRow(r[0], r[1], aware(r[2]), r[3]) for r in await connection.execute(report_query) if r[0] in wanted]
    f_orders, f_resolutions, f_timers, f_results = followup_store.orders, followup_store.resolutions, followup_store.timers, followup_store.results
    resolution_query = select(f_resolutions.c.dispute_id, f_resolutions.c.attempt, f_resolutions.c.department, f_resolutions.c.failed_mediations)
    timer_query = select(f_timers.c.dispute_id, f_timers.c.kind, f_timers.c.work_order_id, f_timers.c.department, f_timers.c.state)
    result_query = (
        select(f_timers.c.dispute_id, f_results.c.satisfaction, f_results.c.flared_up).join(f_timers, f_timers.c.followup_id == f_results.c.followup_id)
    )
    if since is not None:
        # Every deadline and revisit of a dispute reported since `since` falls due after it, and so do its orders.
        timer_query = timer_query.where(f_timers.c.due_at >= utc(since))
        result_query = result_query.where(f_timers.c.due_at >= utc(since))
        resolution_query = resolution_query.where(exists().where(f_orders.c.dispute_id == f_resolutions.c.dispute_id, f_orders.c.due_at >= utc(since)))
    async with followup.connect() as connection:
        # Narrowed here to the disputes dispatch gave: an IN list of a year's disputes would pass SQLite's limit on parameters.
        resolutions = [ResolutionRow(*row) for row in await connection.execute(resolution_query) if row[0] in wanted]
        timers = [TimerRow(*row) for row in await connection.execute(timer_query) if row[0] in wanted]
        results = [ResultRow(row[0], row[1], bool(row[2])) for row in await connection.execute(result_query) if row[0] in wanted]
    return Rows(disputes, orders, resolutions, timers, results, reports)
