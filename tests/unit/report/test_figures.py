"""The statistics report's pure parts, one table each: periods, which cases are settled, scopes, every headline figure, the rendering."""

import csv
import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from services.report.figures import CHINA, Scope, compute, period, rate, settled_disputes
from services.report.render import as_json, bar_chart, formatted, html, write_csv
from services.report.store import DisputeRow, OrderRow, ReportRow, ResolutionRow, ResultRow, Rows, TimerRow, dispute_row

NOW = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
T0 = datetime(2026, 11, 10, 2, tzinfo=timezone.utc)


def dispute(key: str, **changes) -> DisputeRow:
    """Make a case reported at T0 in 枫桥镇 枫源村, level 1, first attempt, no risk, unless told otherwise."""
    base = DisputeRow(key, 1, 1, "routine", T0, "grid_app", "neighbor", "诸暨市", "枫桥镇", "枫源村", (), 0, None)
    return replace(base, **changes)


def order(key: str, dispute_id: str, status: str = "resolved", department: str = "community_police", role: str = "lead", attempt: int = 1,
          due: datetime = T0 + timedelta(days=3)) -> OrderRow:
    """Make a work order issued at T0."""
    return OrderRow(key, dispute_id, department, role, attempt, status, T0, due)


# ---- periods ---------------------------------------------------------------------------------------------------------

def _china(*day: int) -> datetime:
    return datetime(*day, tzinfo=CHINA)


@pytest.mark.parametrize(("arguments", "expected"), [
    ({"month": "2026-11"}, (_china(2026, 11, 1), _china(2026, 12, 1), "2026年11月")),
    ({"month": "2026-12"}, (_china(2026, 12, 1), _china(2027, 1, 1), "2026年12月")),
    ({"year": 2026}, (_china(2026, 1, 1), _china(2027, 1, 1), "2026年")),
    ({"start": date(2026, 11, 3), "end": date(2026, 11, 5)}, (_china(2026, 11, 3), _china(2026, 11, 6), "2026-11-03 至 2026-11-05")),
    ({"start": date(2026, 11, 3)}, (_china(2026, 11, 3), None, "2026-11-03 至 …")),
    ({}, (None, None, "全部 all")),
])
def test_a_period_runs_from_its_first_day_to_the_day_after_its_last_in_china_time(arguments, expected):
    assert period(**arguments) == expected


@pytest.mark.parametrize("arguments", [
    {"month": "2026-11", "year": 2026},
    {"year": 2026, "start": date(2026, 1, 1)},
    {"start": date(2026, 11, 5), "end": date(2026, 11, 3)},
])
def test_a_period_given_twice_or_backwards_is_refused(arguments):
    with pytest.raises(ValueError):
        period(**arguments)


# ---- which cases are settled (办结) -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("disputes", "orders", "settled"), [
    ([dispute("a")], [order("o1", "a")], {"a"}),
    ([dispute("a")], [order("o1", "a", "in_progress")], set()),
    ([dispute("a")], [order("o1", "a"), order("o2", "a", "issued", department="women_federation", role="support")], {"a"}),
    ([dispute("a")], [order("o1", "a"), order("o2", "a", "accepted", department="court")], set()),
    # A returned lead is replaced by the governance centre's order, which settles the case.
    ([dispute("a")], [order("o1", "a", "returned"), order("o2", "a", department="governance_centre")], {"a"}),
    # Resolved at the first attempt, then graded again after a rebound: open until the new attempt's leads resolve.
    ([dispute("a", attempt=2)], [order("o1", "a"), order("o2", "a", "issued", attempt=2)], set()),
    ([dispute("a", attempt=2)], [order("o1", "a", "mediation_failed"), order("o2", "a", attempt=2, department="mediation_room")], {"a"}),
    ([dispute("a")], [], set()),
])
def test_a_case_is_settled_when_every_lead_order_of_its_current_attempt_is_resolved(disputes, orders, settled):
    assert settled_disputes(disputes, orders) == settled


# ---- scope: period, area, department --------------------------------------------------------------------------------

WORLD = Rows(
    disputes=[
        dispute("a", category="family_marriage", source="police_110", risks=("violence_threat",)),
        dispute("b", reported_at=T0 + timedelta(days=25), town="店口镇", community="湄池村"),
        dispute("c", level=3, attempt=2, previous_level=1, failed_mediations=1, category="labor_wage", risks=("mass_gathering", "cross_region")),
        dispute("d", reported_at=datetime(2026, 10, 31, 17, tzinfo=timezone.utc)),  # 1 November in China
    ],
    orders=[
        order("a1", "a"),
        order("a2", "a", "in_progress", department="women_federation", role="support", due=NOW - timedelta(days=1)),
        order("b1", "b", "issued", due=NOW - timedelta(days=2)),
        order("c1", "c", "mediation_failed", department="mediation_room"),
        order("c2", "c", department="joint_consultation", attempt=2),
        order("d1", "d", "returned"),
        order("d2", "d", department="governance_centre"),
    ],
    resolutions=[ResolutionRow("a", 1, "community_police", 0), ResolutionRow("c", 2, "joint_consultation", 1), ResolutionRow("d", 1, "governance_centre", 0)],
    timers=[
        TimerRow("a", "sla_warning", "a1", "community_police", "fired"),
        TimerRow("a", "sla_breached", "a1", "community_police", "fired"),
        TimerRow("b", "sla_warning", "b1", "community_police", "fired"),
        TimerRow("c", "sla_warning", "c2", "joint_consultation", "cancelled"),
        TimerRow("a", "revisit", None, "community_police", "fired"),
        TimerRow("c", "revisit", None, "joint_consultation", "fired"),
        TimerRow("d", "revisit", None, "governance_centre", "pending"),
    ],
    results=[ResultRow("a", 5, False), ResultRow("c", 2, True)],
    # a joined by the hotline under another id and c regraded by a 110 call, both a month later: they go with their cases.
    reports=[
        ReportRow("a", "police_110", T0, "new"), ReportRow("a", "hotline_12345", T0 + timedelta(days=30), "joined"),
        ReportRow("b", "grid_app", T0 + timedelta(days=25), "new"), ReportRow("c", "grid_app", T0, "new"),
        ReportRow("c", "police_110", T0 + timedelta(days=30), "regraded"), ReportRow("d", "grid_app", T0, "new"),
    ],
)


@pytest.mark.parametrize(("scope", "disputes", "orders", "reports", "joined"), [
    (Scope(NOW), 4, 7, 6, 2),
    (Scope(NOW, *period(month="2026-11")[:2]), 3, 6, 5, 2),  # b was reported in December
    (Scope(NOW, *period(month="2026-10")[:2]), 0, 0, 0, 0),
    (Scope(NOW, *period(start=date(2026, 11, 2), end=date(2026, 11, 30))[:2]), 2, 4, 4, 2),  # d was reported on 1 November
    (Scope(NOW, town="店口镇"), 1, 1, 1, 0),
    (Scope(NOW, county="诸暨市", town="枫桥镇", community="枫源村"), 3, 6, 5, 2),
    (Scope(NOW, department="women_federation"), 1, 1, 2, 1),
    (Scope(NOW, department="governance_centre"), 1, 1, 1, 0),
])
def test_the_scope_keeps_the_cases_reported_in_the_period_area_and_department(scope, disputes, orders, reports, joined):
    report = compute(WORLD, scope)
    assert (report.figure("disputes").value, report.figure("orders").value) == (disputes, orders)
    # A case's reports count with it, whenever they came: received − cases = joined.
    assert (report.figure("reports_received").value, report.figure("reports_joined").value) == (reports, joined)


# ---- every headline figure ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "expected"), [
    ("disputes", 4),
    ("orders", 7),
    ("settled", 3),  # a, c (second attempt resolved), d (by the governance centre); b is open
    ("closure_rate", 3 / 4),
    ("order_closure_rate", 3 / 7),  # a1, c2, d2
    ("mediation_success_rate", 2 / 3),
    ("deadline_met_rate", 2 / 3),  # a1 resolved after its breach
    ("sla_warnings", 2),
    ("sla_breaches", 1),
    ("overdue_open", 2),  # a2 and b1 are past due and open
    ("revisits_due", 2),
    ("revisits_done", 2),
    ("revisit_rate", 1.0),
    ("satisfaction", 3.5),
    ("satisfied_rate", 0.5),
    ("rebounds", 1),
    ("rebound_rate", 0.5),
    ("escalations", 2),  # d1 returned, c1 mediation failed
    ("flagged", 2),
    ("violence_flagged", 1),
    ("violence_settled", 1),
])
def test_each_headline_figure_counts_what_its_definition_says(key, expected):
    figure = compute(WORLD, Scope(NOW)).figure(key)
    assert figure.value == pytest.approx(expected) and figure.definition


@pytest.mark.parametrize(("table", "expected"), [
    ("by_category", [["neighbor", "邻里纠纷 neighbor", 2, 1, 0.5, 1, 1.0], ["family_marriage", "婚姻家庭 family_marriage", 1, 1, 1.0, 1, 1.0],
                     ["labor_wage", "劳资欠薪 labor_wage", 1, 1, 1.0, 1, 0.0]]),
    ("by_source", [["grid_app", "网格员APP grid_app", 3, 2, 2 / 3, 2, 0.5], ["police_110", "110接处警 police_110", 1, 1, 1.0, 1, 1.0]]),
    ("by_level", [[1, "一级 简单 · 就地化解 on site", 3, 2, 2 / 3, 2, 1.0], [3, "三级 重大疑难 · 会商研判 joint consultation", 1, 1, 1.0, 1, 0.0]]),
    ("by_area", [["诸暨市 枫桥镇", "诸暨市 枫桥镇", 3, 3, 1.0, 3, 2 / 3], ["诸暨市 店口镇", "诸暨市 店口镇", 1, 0, 0.0, 0, None]]),
    ("by_risk", [["violence_threat", "暴力倾向 violence_threat", 1, 1, 1.0], ["mass_gathering", "群体性聚集 mass_gathering", 1, 1, 1.0],
                 ["cross_region", "跨区域 cross_region", 1, 1, 1.0]]),
    ("satisfaction", [["5分", 1], ["4分", 0], ["3分", 0], ["2分", 1], ["1分", 0]]),
])
def test_each_dimension_table_counts_cases_settled_and_mediation_success(table, expected):
    assert compute(WORLD, Scope(NOW)).table(table).rows == expected


def test_the_department_table_says_who_settled_the_cases_and_on_time():
    rows = {row[0]: row[2:] for row in compute(WORLD, Scope(NOW)).table("by_department").rows}
    # orders, resolved, order closure, on time, breaches, settled as lead, mediation success
    assert rows["community_police"] == [3, 1, pytest.approx(1 / 3), 0.0, 1, 1, 1.0]
    assert rows["joint_consultation"] == [1, 1, 1.0, 1.0, 0, 1, 0.0]
    assert rows["governance_centre"] == [1, 1, 1.0, 1.0, 0, 1, 1.0]
    assert rows["women_federation"] == [1, 0, 0.0, None, 0, 0, None]


@pytest.mark.parametrize(("part", "whole", "expected"), [(1, 4, 0.25), (0, 4, 0.0), (0, 0, None), (3, 0, None)])
def test_a_rate_of_nothing_is_none_not_zero(part, whole, expected):
    assert rate(part, whole) == expected


def test_an_empty_store_gives_zero_counts_and_no_rates():
    report = compute(Rows([], [], [], [], []), Scope(NOW))
    assert report.figure("disputes").value == 0 and report.figure("closure_rate").value is None
    assert "无数据" in html(report)


# ---- rows keep figures only ----------------------------------------------------------------------------------------

def test_a_stored_report_gives_its_figures_and_never_its_description_or_parties():
    report = json.dumps({
        "reported_at": "2026-11-10T10:00:00+08:00", "source": "door_qr", "category": "labor_wage", "description": "张某欠薪",
        "region": {"county": "诸暨市", "town": "枫桥镇", "community": "陈家村", "grid_id": "G-01"},
        "parties": [{"name": "张某", "phone": "13812345678"}], "risk": {"mass_gathering": True, "violence_threat": False},
    })
    row = dispute_row("x", 2, 3, "urgent", report, json.dumps({"failed_mediations": 1, "previous_level": 2}))
    assert row == DisputeRow("x", 2, 3, "urgent", T0, "door_qr", "labor_wage", "诸暨市", "枫桥镇", "陈家村", ("mass_gathering",), 1, 2)


# ---- rendering -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "kind", "text"), [(0.9973, "rate", "99.7%"), (None, "rate", "—"), (4.321, "score", "4.32"), (1989, "count", "1,989")])
def test_values_are_formatted_as_the_county_prints_them(value, kind, text):
    assert formatted(value, kind) == text


def test_the_page_has_a_card_with_its_definition_per_figure_and_a_chart_and_table_per_dimension():
    report = compute(WORLD, Scope(NOW, *period(month="2026-11"), town="枫桥镇"))
    page = html(report)
    assert "2026年11月" in page and "枫桥镇" in page and page.count('class="card"') == len(report.figures)
    for figure in report.figures:
        assert figure.definition.split("（")[0].split(" ")[0] in page
    for table in report.tables:
        assert f'data-chart="{table.key}"' in page or not table.rows
    for term in ("办结率", "调解成功率", "回访", "反弹", "满意度"):
        assert term in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_a_chart_draws_one_bar_per_row_as_long_as_its_value():
    chart = bar_chart(compute(WORLD, Scope(NOW)).table("by_category"), width=720)
    widths = [float(part.split('"')[0]) for part in chart.split('class="bar"')[1:] for part in [part.split('width="')[1]]]
    assert widths == [400.0, 200.0, 200.0]


def test_csv_writes_the_summary_and_one_file_per_table_and_json_the_same_figures(tmp_path):
    report = compute(WORLD, Scope(NOW))
    written = write_csv(report, tmp_path / "csv")
    assert sorted(p.name for p in written) == sorted(["summary.csv"] + [f"{t.key}.csv" for t in report.tables])
    with (tmp_path / "csv" / "by_category.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == report.table("by_category").columns and len(rows) == 4
    decoded = json.loads(as_json(report))
    assert {f["key"]: f["value"] for f in decoded["figures"]}["closure_rate"] == 0.75
    assert [t["key"] for t in decoded["tables"]] == [t.key for t in report.tables]


@pytest.mark.parametrize(("resolutions", "expected"), [
    # A support order resolved after the lead announces the resolution again: one dispute, one resolution.
    ([ResolutionRow("a", 1, "community_police", 0), ResolutionRow("a", 1, "community_police", 0)], (1, 1.0)),
    # Resolved, rebounded, resolved again after a failed mediation: the newest attempt decides.
    ([ResolutionRow("a", 1, "community_police", 0), ResolutionRow("a", 2, "mediation_room", 1)], (1, 0.0)),
    ([ResolutionRow("a", 1, "community_police", 0), ResolutionRow("b", 1, "court", 2)], (2, 0.5)),
    ([], (0, None)),
])
def test_mediation_success_counts_each_resolved_dispute_once_by_its_newest_resolution(resolutions, expected):
    rows = Rows([dispute("a"), dispute("b")], [], resolutions, [], [])
    report = compute(rows, Scope(NOW))
    assert (sum(row[5] for row in report.table("by_category").rows), report.figure("mediation_success_rate").value) == expected
