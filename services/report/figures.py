"""The statistics report's figures, computed by pure functions from the stores' rows (see `services.report.store`).

Every figure carries its definition in the county's vocabulary (办结率, 调解成功率, 回访, 反弹...), printed under it in the page.
"""

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.report import names as N
from services.report.store import DisputeRow, OrderRow, ReportRow, ResolutionRow, Rows

OPEN = ("issued", "accepted", "in_progress")  # as services.dispatch.lifecycle.OPEN, without importing dispatch's decisions
VIOLENCE = ("violence_threat", "weapon_involved", "self_harm_threat")
CHINA = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Scope:
    """What the report covers: a period of report dates [start, end), an area, a department, and the time it is made at."""

    now: datetime
    start: datetime | None = None
    end: datetime | None = None
    period: str = "全部 all"
    county: str | None = None
    town: str | None = None
    community: str | None = None
    department: str | None = None


@dataclass(frozen=True)
class Figure:
    """One headline figure and its definition."""

    key: str
    name: str
    value: float | int | None  # None: a rate whose denominator is zero
    kind: str  # count, rate or score
    definition: str


@dataclass(frozen=True)
class Table:
    """One table of the report, by one dimension; `chart` names the column its bar chart shows."""

    key: str
    title: str
    columns: list[str]
    rows: list[list]
    chart: str | None
    definition: str


@dataclass(frozen=True)
class Report:
    """The whole report: what it covers, its headline figures and its tables."""

    title: str
    period: str
    area: str
    department: str
    generated_at: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)

    def figure(self, key: str) -> Figure:
        """Return the headline figure of this key."""
        return next(f for f in self.figures if f.key == key)

    def table(self, key: str) -> Table:
        """Return the table of this key."""
        return next(t for t in self.tables if t.key == key)


def period(month: str | None = None, year: int | None = None, start: date | None = None, end: date | None = None, tz=CHINA) -> tuple:
    """Turn `--month 2026-11`, `--year 2026` or `--from/--to` (both days included) into [start, end) in `tz` and a label."""
    given = sum(x is not None for x in (month, year)) + (start is not None or end is not None)
    if given > 1:
        raise ValueError("give one of --month, --year, or --from/--to")
    if month is not None:
        first = datetime.strptime(month, "%Y-%m").date()
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return _at(first, tz), _at(following, tz), f"{first.year}年{first.month}月"
    if year is not None:
        return _at(date(year, 1, 1), tz), _at(date(year + 1, 1, 1), tz), f"{year}年"
    if start is not None or end is not None:
        if start is not None and end is not None and end < start:
            raise ValueError("--to is before --from")
        label = f"{start.isoformat() if start else '…'} 至 {end.isoformat() if end else '…'}"
        return (_at(start, tz) if start else None), (_at(end + timedelta(days=1), tz) if end else None), label
    return None, None, "全部 all"


def _at(day: date, tz) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz)


def scoped(rows: Rows, scope: Scope) -> Rows:
    """Keep the disputes reported in the period, in the area and (with a department) worked on by it, and all their rows.

    A case's reports go with it, whatever their own dates: reports received and cases then count the same quarrels.
    """
    def inside(d: DisputeRow) -> bool:
        return (
            (scope.start is None or d.reported_at >= scope.start) and (scope.end is None or d.reported_at < scope.end)
            and scope.county in (None, d.county) and scope.town in (None, d.town) and scope.community in (None, d.community)
        )

    disputes = [d for d in rows.disputes if inside(d)]
    if scope.department is not None:
        worked = {o.dispute_id for o in rows.orders if o.department == scope.department}
        disputes = [d for d in disputes if d.dispute_id in worked]
    kept = {d.dispute_id for d in disputes}
    return replace(
        rows, disputes=disputes, orders=[o for o in rows.orders if o.dispute_id in kept], timers=[t for t in rows.timers if t.dispute_id in kept],
        resolutions=[r for r in rows.resolutions if r.dispute_id in kept], results=[r for r in rows.results if r.dispute_id in kept],
        reports=[r for r in rows.reports if r.case_id in kept],
    )


def settled_disputes(disputes: Iterable[DisputeRow], orders: Iterable[OrderRow]) -> set[str]:
    """Return the disputes settled (办结): every lead order of the current attempt resolved, as dispatch decides it."""
    attempt = {d.dispute_id: d.attempt for d in disputes}
    leads: dict[str, list[str]] = defaultdict(list)
    for o in orders:
        # A returned lead handed the case to the governance centre and a superseded one was replaced: neither still leads.
        if attempt.get(o.dispute_id) == o.attempt and o.role == "lead" and o.status not in ("returned", "superseded"):
            leads[o.dispute_id].append(o.status)
    return {key for key, statuses in leads.items() if all(s == "resolved" for s in statuses)}


def latest_resolutions(resolutions: Iterable[ResolutionRow]) -> dict[str, ResolutionRow]:
    """Return each resolved dispute's resolution of its newest attempt: a dispute counts once, however often it was resolved.

    Dispatch announces a resolution again when a support order is resolved after the leads, and again for each new
    attempt after a rebound; the newest attempt's history holds every failed mediation before it.
    """
    latest: dict[str, ResolutionRow] = {}
    # Sorted, so that of two resolutions of one attempt the same one is kept whatever order the store returned them in.
    for r in sorted(resolutions, key=lambda r: (r.attempt, r.failed_mediations, r.department)):
        latest[r.dispute_id] = r
    return latest


def rate(part: int, whole: int) -> float | None:
    """Return part ÷ whole, or None when there is nothing to divide."""
    return part / whole if whole else None


def compute(rows: Rows, scope: Scope, generated_at: str = "") -> Report:
    """Compute the report of the rows in scope.

    With a department, the orders, deadlines and SLA timers are that department's own; the cases, resolutions and
    revisits are those of every dispute it had an order on (a case is settled when all its leads resolved it).
    """
    rows = scoped(rows, scope)
    disputes = rows.disputes
    settled = settled_disputes(disputes, rows.orders)
    orders = [o for o in rows.orders if scope.department in (None, o.department)]
    order_ids = {o.work_order_id for o in orders}
    timers = [t for t in rows.timers if t.kind == "revisit" or t.work_order_id in order_ids]
    resolved_orders = [o for o in orders if o.status == "resolved"]
    fired = Counter(t.kind for t in timers if t.state == "fired")
    breached = {t.work_order_id for t in timers if t.kind == "sla_breached" and t.state == "fired"}
    overdue = [o for o in orders if o.status in OPEN and o.due_at < scope.now]
    resolved = latest_resolutions(rows.resolutions)
    successes = sum(r.failed_mediations == 0 for r in resolved.values())
    satisfied = sum(r.satisfaction >= 4 for r in rows.results)
    flared = sum(r.flared_up for r in rows.results)
    escalations = _escalations(disputes, orders)
    flagged = [d for d in disputes if d.risks]
    violent = [d for d in disputes if set(d.risks) & set(VIOLENCE)]
    figures = [
        Figure("disputes", "受理矛盾纠纷 disputes (cases)", len(disputes), "count",
               "期内上报并受理的矛盾纠纷件数（一事一案：同一纠纷多渠道上报只计一件，两网融一网）。Cases reported in the period, one per dispute."),
        Figure("reports_received", "收到上报 reports received", len(rows.reports), "count",
               "这些案件收到的全部上报，含多渠道重复上报和再次上报（按案件首次上报时间归期）；收到上报 − 受理 = 并入已有案件的上报。"
               "Every report taken for these cases, duplicates and re-reports included."),
        Figure("reports_joined", "并入已有案件 joined existing cases", sum(r.outcome != "new" for r in rows.reports), "count",
               "并入已有案件、不另立案的上报（同号再报、他平台同一纠纷、升级重派、办结后反弹重开）。Reports that went to a case already held."),
        Figure("orders", "派发工单 work orders", len(orders), "count", "为这些纠纷派发的工单数（含重新分级、退回后重派）。Work orders issued for them."),
        Figure("settled", "办结 disputes settled", len(settled), "count", "当前一轮的牵头工单全部办结的纠纷。Disputes whose current lead orders are all resolved."),
        Figure("closure_rate", "办结率 closure rate (cases)", rate(len(settled), len(disputes)), "rate", "办结率 = 办结件数 ÷ 受理件数（按案件）。Settled ÷ received."),
        Figure("order_closure_rate", "工单办结率 closure rate (orders)", rate(len(resolved_orders), len(orders)), "rate",
               "工单办结率 = 已办结工单 ÷ 派发工单（与回访服务的 fengqiao_followup_closure_rate 同一口径）。Resolved orders ÷ orders issued."),
        Figure("mediation_success_rate", "调解成功率 mediation success rate", rate(successes, len(resolved)), "rate",
               "调解成功率 = 未经调解失败即化解的纠纷 ÷ 化解的纠纷（每件纠纷按最近一次化解计一次）。"
               "Disputes resolved without a failed mediation ÷ disputes resolved, each counted once."),
        Figure("deadline_met_rate", "按期办结率 deadlines met", rate(sum(o.work_order_id not in breached for o in resolved_orders), len(resolved_orders)),
               "rate", "按期办结率 = 办结前未触发超期的工单 ÷ 已办结工单。Resolved orders whose deadline never passed ÷ resolved orders."),
        Figure("sla_warnings", "临期预警 SLA warnings", fired["sla_warning"], "count", "工单临近期限仍未办结而发出的预警次数。Warnings fired before a deadline."),
        Figure("sla_breaches", "超期 SLA breaches", fired["sla_breached"], "count", "工单超过期限仍未办结的次数（超期后重新分级）。Deadlines passed with the order open."),
        Figure("overdue_open", "超期未办结 overdue, still open", len(overdue), "count", "报表生成时已过期限仍在办理的工单。Open orders past their deadline now."),
        Figure("revisits_due", "应回访 revisits due", fired["revisit"], "count", "已到期派出的回访（一事一回访）。Revisits that came due."),
        Figure("revisits_done", "已回访 revisits done", len(rows.results), "count", "已收到回访结果的回访。Revisits with a result recorded."),
        Figure("revisit_rate", "回访率 revisit rate", rate(len(rows.results), fired["revisit"]), "rate", "回访率 = 已回访 ÷ 应回访。Revisits done ÷ due."),
        Figure("satisfaction", "满意度 average satisfaction", (sum(r.satisfaction for r in rows.results) / len(rows.results)) if rows.results else None,
               "score", "回访中当事人满意度的平均分（1–5分）。Mean satisfaction, 1 to 5, over revisit results."),
        Figure("satisfied_rate", "满意率 satisfied", rate(satisfied, len(rows.results)), "rate", "满意率 = 满意度4分及以上的回访 ÷ 已回访。Results scoring 4 or 5 ÷ results."),
        Figure("rebounds", "反弹 rebounds", flared, "count", "回访发现矛盾反弹反复或协议未履行的次数（将重新分级）。Results finding the dispute back or the agreement broken."),
        Figure("rebound_rate", "反弹率 rebound rate", rate(flared, len(rows.results)), "rate", "反弹率 = 反弹 ÷ 已回访。Rebounds ÷ revisits done."),
        Figure("escalations", "升级 escalations", escalations["returned"] + escalations["mediation_failed"], "count",
               "工单退回综治中心与调解不成重新分级的次数。Orders returned to the governance centre plus mediations failed."),
        Figure("flagged", "风险标记 flagged", len(flagged), "count", "上报时带有风险标记（暴力倾向、凶器、自伤、群体性聚集、跨区域、信访）的纠纷。Disputes reported with a risk flag."),
        Figure("violence_flagged", "涉暴力风险 violence risk", len(violent), "count",
               "有暴力倾向、涉及凶器或自伤风险的纠纷（防止民转刑的重点）。Disputes flagged for violence, a weapon or self-harm."),
        Figure("violence_settled", "涉暴力风险已办结 violence risk settled", sum(d.dispute_id in settled for d in violent), "count",
               "涉暴力风险纠纷中已办结的件数；民转刑案件不在本系统内，无法统计。Of those, settled; civil-to-criminal cases are not in these stores."),
    ]
    dimension = _dimension_table(disputes, settled, resolved)
    tables = [
        dimension("by_category", "按纠纷类别 by category", lambda d: d.category, lambda k: N.named(N.CATEGORIES, k), "纠纷类别取自上报时的类别。Category as reported."),
        dimension("by_source", "按上报渠道 by source", lambda d: d.source, lambda k: N.named(N.SOURCES, k), "上报渠道（警格、网格、热线、智慧门牌……）。Intake channel."),
        _channel_table(rows.reports),
        dimension("by_level", "按分级分流 by level and tier", lambda d: d.level, lambda k: f"{N.LEVELS[k]} · {N.TIERS[k]}",
                  "当前分级（一级就地化解、二级调解室、三级会商研判），重新分级后按最新等级计。Current level and its tier."),
        dimension("by_area", "按区域 by area", _area_key(scope), str, "事发地所在区域（县、乡镇、村社区）。Where the dispute happened."),
        _department_table(orders, breached, list(resolved.values())),
        _risk_table(flagged, settled),
        Table("escalations", "升级 escalations", ["escalation", "count"],
              [[N.ESCALATIONS[k], v] for k, v in escalations.items()], "count",
              "退回：部门退回工单，改派综治中心；调解不成：牵头部门调解失败，重新分级；升为三级：重新分级后为三级重大疑难。"),
        Table("satisfaction", "回访满意度分布 satisfaction", ["score", "results"],
              [[f"{score}分", sum(r.satisfaction == score for r in rows.results)] for score in range(5, 0, -1)], "results",
              "回访结果中各满意度分值（1–5分）的次数。Revisit results by satisfaction score."),
    ]
    return Report(
        "矛盾纠纷排查化解统计报表 Dispute statistics", scope.period, _area_label(scope),
        N.named(N.DEPARTMENTS, scope.department) if scope.department else "全部部门 all departments", generated_at, figures, tables,
    )


_DIMENSION_COLUMNS = ["key", "name", "disputes", "settled", "closure_rate", "resolutions", "mediation_success_rate"]


def _dimension_table(disputes: list[DisputeRow], settled: set[str], resolved: dict[str, ResolutionRow]) -> Callable[..., Table]:
    def table(key: str, title: str, of: Callable[[DisputeRow], object], name: Callable[[object], str], definition: str) -> Table:
        groups: dict[object, list[DisputeRow]] = defaultdict(list)
        for d in disputes:
            groups[of(d)].append(d)
        rows = []
        for group, members in groups.items():
            done = sum(d.dispute_id in settled for d in members)
            tried = [resolved[d.dispute_id] for d in members if d.dispute_id in resolved]
            rows.append([group, name(group), len(members), done, rate(done, len(members)), len(tried), rate(sum(r.failed_mediations == 0 for r in tried), len(tried))])
        # Largest first, then by key: the same rows always come in the same order.
        rows.sort(key=lambda r: (-r[2], str(r[0])))
        return Table(key, title, _DIMENSION_COLUMNS, rows, "disputes",
                     definition + " 办结率 = 办结 ÷ 受理；调解成功率 = 未经调解失败的化解 ÷ 化解。")
    return table


def _channel_table(reports: list[ReportRow]) -> Table:
    received = Counter(r.source for r in reports)
    opened = Counter(r.source for r in reports if r.outcome == "new")
    rows = [[s, N.named(N.SOURCES, s), received[s], opened[s], received[s] - opened[s]] for s in received]
    rows.sort(key=lambda r: (-r[2], r[0]))
    return Table("reports_by_source", "收到上报（按渠道）reports received by channel", ["key", "name", "reports", "cases_opened", "joined"], rows,
                 "reports", "每条上报按其自身渠道计：立案 = 开启新案件的上报；并案 = 并入已有案件的上报。Each report by its own channel.")


def _department_table(orders: list[OrderRow], breached: set[str], resolutions: list[ResolutionRow]) -> Table:
    issued = Counter(o.department for o in orders)
    resolved = Counter(o.department for o in orders if o.status == "resolved")
    on_time = Counter(o.department for o in orders if o.status == "resolved" and o.work_order_id not in breached)
    late = Counter(o.department for o in orders if o.work_order_id in breached)
    settled_by = Counter(r.department for r in resolutions)
    success_by = Counter(r.department for r in resolutions if r.failed_mediations == 0)
    rows = [
        [d, N.named(N.DEPARTMENTS, d), issued[d], resolved[d], rate(resolved[d], issued[d]), rate(on_time[d], resolved[d]), late[d],
         settled_by[d], rate(success_by[d], settled_by[d])]
        for d in set(issued) | set(settled_by)
    ]
    rows.sort(key=lambda r: (-r[2], r[0]))
    return Table(
        "by_department", "按部门 by department (who settled them)",
        ["key", "name", "orders", "resolved_orders", "order_closure_rate", "deadline_met_rate", "sla_breaches", "settled_as_lead", "mediation_success_rate"],
        rows, "orders",
        "派单：派给该部门的工单；工单办结率 = 已办结 ÷ 派单；按期办结率 = 未超期办结 ÷ 已办结；"
        "化解（牵头）：由该部门牵头化解的纠纷（按最近一次化解），即由谁化解；调解成功率同上。",
    )


def _risk_table(flagged: list[DisputeRow], settled: set[str]) -> Table:
    counts = Counter(flag for d in flagged for flag in d.risks)
    done = Counter(flag for d in flagged if d.dispute_id in settled for flag in d.risks)
    rows = [[flag, N.named(N.RISKS, flag), counts[flag], done[flag], rate(done[flag], counts[flag])] for flag in N.RISKS if counts[flag]]
    rows.sort(key=lambda r: -r[2])
    return Table("by_risk", "风险标记 risk flags (incidents flagged)", ["key", "name", "disputes", "settled", "closure_rate"], rows, "disputes",
                 "上报时的风险标记（一件纠纷可有多个）。Reporters' risk flags as stored by dispatch; triage's own flags are not stored there.")


def _escalations(disputes: list[DisputeRow], orders: list[OrderRow]) -> dict[str, int]:
    statuses = Counter(o.status for o in orders)
    return {
        "returned": statuses["returned"],
        "mediation_failed": sum(o.status == "mediation_failed" and o.role == "lead" for o in orders),
        "regraded": sum(d.attempt > 1 for d in disputes),
        "raised_to_level_3": sum(d.level == 3 and d.previous_level in (1, 2) for d in disputes),
    }


def _area_key(scope: Scope) -> Callable[[DisputeRow], str]:
    # One step below the area the report is narrowed to: a county's towns, a town's communities.
    if scope.town is not None or scope.community is not None:
        return lambda d: f"{d.town} {d.community}"
    return lambda d: f"{d.county} {d.town}"


def _area_label(scope: Scope) -> str:
    parts = [p for p in (scope.county, scope.town, scope.community) if p]
    return " / ".join(parts) if parts else "全部辖区 all areas"
