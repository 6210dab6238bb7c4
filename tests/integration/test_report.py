"""`fengqiao report` on real stores (SQLite and PostgreSQL) filled by the dispatch and follow-up pipelines: its figures are the stores' own counts."""

import asyncio
import json
from collections import Counter
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from schemas.disputes import DisputeTriaged, ReassessmentRequested, Region, Risk
from schemas.followups import FollowupDue, FollowupResult
from schemas.workorders import WORK_ORDER_EVENT, WorkOrderIssued, WorkOrderUpdate
from services.cli import app
from services.dispatch import store as dispatch_tables
from services.followup import store as followup_tables
from services.followup.store import FollowupStore
from services.report.cli import build_report
from services.report.figures import Scope, period
from services.report.render import html
from services.runtime.clock import ManualClock
from services.runtime.store import create_engine
from tests.support.browser import render
from tests.support.pipelines import DISPATCH_NOW as NOW
from tests.support.pipelines import Published, Record, dispatch_pipeline, followup_processor
from tests.support.samples import TRIAGED, graded

CATEGORIES = ("family_marriage", "neighbor", "labor_wage", "contract_debt")
SOURCES = ("grid_app", "police_110", "door_qr")
TOWNS = (("枫桥镇", "枫源村"), ("店口镇", "湄池村"))
GRADES = ((1, "on_site", "routine"), (2, "mediation_room", "urgent"), (3, "joint_consultation", "urgent"))
# What each dispute's lead does: most resolve, some fail mediation, some send the order back, some never answer.
FATES = ("resolved", "resolved", "resolved", "mediation_failed", "returned", "open", "resolved", "resolved")
DISPUTES = 24


def triaged(n: int) -> DisputeTriaged:
    """Make the n-th graded dispute: its category, source, town, grade and risk vary with n; reported n hours after 08:00."""
    level, tier, urgency = GRADES[n % 3]
    town, community = TOWNS[n % 2]
    report = TRIAGED.report.model_copy(update={
        "event_id": f"evt-{n}", "dispute_id": f"D-{n:03d}", "reported_at": TRIAGED.report.reported_at + timedelta(hours=n),
        "category": CATEGORIES[n % 4], "source": SOURCES[n % 3], "risk": Risk(violence_threat=n % 5 == 0, mass_gathering=n % 7 == 0),
        "region": Region(county="诸暨市", town=town, community=community), "history": TRIAGED.report.history.model_copy(update={"failed_mediations": 0}),
    })
    return graded(report, f"tri-{n}").model_copy(update={"level": level, "tier": tier, "urgency": urgency})


def update(order: WorkOrderIssued, status: str, n: int) -> Record:
    body = WorkOrderUpdate(event_id=f"u-{order.work_order_id[-12:]}-{status}-{n}", work_order_id=order.work_order_id, dispute_id=order.dispute_id,
                           department=order.department, status=status, at=NOW)
    return Record("workorders.updates", body.to_bytes(), offset=n)


@pytest.fixture
async def stores(database_url, tmp_path):
    """Fill dispatch's and follow-up's stores through their pipelines and return their URLs and the time it is then."""
    followup_url = f"sqlite+aiosqlite:///{tmp_path / 'followup.db'}" if database_url.startswith("sqlite") else database_url
    processor, published, dispatch_engine = await dispatch_pipeline(database_url)
    await processor.on_triaged([Record("disputes.triaged", triaged(n).to_bytes(), offset=n) for n in range(DISPUTES)])
    orders = published.orders()
    updates = []
    for order in orders:
        fate = FATES[int(order.dispute_id[2:]) % len(FATES)]
        if order.role == "support":
            updates.append(update(order, "resolved", len(updates)))
        elif fate != "open":
            updates.append(update(order, fate, len(updates)))
    await processor.on_updates(updates)
    # The governance centre resolves the orders returned to it.
    rerouted = published.orders("governance_centre")
    await processor.on_updates([update(o, "resolved", 1000 + n) for n, o in enumerate(rerouted) if o.role == "lead"])
    # Failed mediations come back graded level 2, and the mediation room settles them: resolved after a failure.
    again = [ReassessmentRequested.model_validate_json(o.value) for o in published if o.topic == "disputes.reassess"]
    seen = len(published)
    await processor.on_triaged([
        Record("disputes.triaged", TRIAGED.model_copy(update={
            "event_id": f"tri-again-{n}", "dispute_id": r.dispute_id, "source_event_id": r.event_id, "cause": "mediation_failed", "level": 2,
            "tier": "mediation_room", "urgency": "urgent", "report": r.updated_report(),
        }).to_bytes(), offset=100 + n)
        for n, r in enumerate(again)
    ])
    regraded = Published(published[seen:]).orders()
    await processor.on_updates([update(o, "resolved", 2000 + n) for n, o in enumerate(regraded)])
    events = [Record("workorders.events", o.value, offset=n) for n, o in enumerate(o for o in published if o.topic == "workorders.events")]

    followup_engine = create_engine(followup_url)
    await FollowupStore(followup_engine).create()
    clock, due = ManualClock(NOW), Published()
    followup = followup_processor(followup_engine, clock, due)
    await followup.on_events(events)
    for _ in range(40):  # a day at a time, so warnings fire before breaches and the 7- and 30-day revisits both come due
        clock.advance(timedelta(days=1))
        await followup.fire_due()
    revisits = [d for d in (FollowupDue.model_validate_json(o.value) for o in due if o.topic == "followups.due") if d.kind == "revisit"]
    results = [
        FollowupResult(event_id=f"res-{n}", followup_id=d.followup_id, dispute_id=d.dispute_id, satisfaction=1 + n % 5,
                       agreement_fulfilled=n % 6 != 0, rebound=n % 9 == 0, at=clock.now())
        for n, d in enumerate(revisits) if n % 4 != 3  # a quarter are never answered
    ]
    await followup.on_results([Record("followups.results", r.to_bytes(), offset=n) for n, r in enumerate(results)])
    yield database_url, followup_url, clock.now()
    await dispatch_engine.dispose()
    await followup_engine.dispose()


async def _counts(dispatch_url: str, followup_url: str, now) -> dict:
    """Count the figures straight from the stores' tables, the way a person checking the report would."""
    d, f = create_engine(dispatch_url), create_engine(followup_url)
    o, t, r, res = dispatch_tables.orders, followup_tables.timers, followup_tables.results, followup_tables.resolutions
    try:
        async with d.connect() as c:
            count = lambda *where: c.scalar(select(func.count()).select_from(o).where(*where))  # noqa: E731
            counts = {
                "disputes": await c.scalar(select(func.count()).select_from(dispatch_tables.disputes)),
                "reports": await c.scalar(select(func.count()).select_from(dispatch_tables.reports_taken)),
                "orders": await count(),
                "resolved_orders": await count(o.c.status == "resolved"),
                "escalations": await count(o.c.status == "returned") + await count(o.c.status == "mediation_failed", o.c.role == "lead"),
                "overdue_open": await count(o.c.status.in_(("issued", "accepted", "in_progress")), o.c.due_at < now),
                "by_department": dict((await c.execute(select(o.c.department, func.count()).group_by(o.c.department))).all()),
            }
        async with f.connect() as c:
            fired = dict((await c.execute(select(t.c.kind, func.count()).where(t.c.state == "fired").group_by(t.c.kind))).all())
            counts |= {
                "sla_warnings": fired.get("sla_warning", 0), "sla_breaches": fired.get("sla_breached", 0), "revisits_due": fired.get("revisit", 0),
                "revisits_done": await c.scalar(select(func.count()).select_from(r)),
                "satisfaction": float(await c.scalar(select(func.avg(r.c.satisfaction)))),
                "rebounds": await c.scalar(select(func.count()).select_from(r).where(r.c.flared_up)),
            }
            # Each resolved dispute once, by the resolution of its newest attempt (a support order resolved late announces it again).
            newest = {}
            for key, attempt, department, failed in await c.execute(
                select(res.c.dispute_id, res.c.attempt, res.c.department, res.c.failed_mediations).order_by(res.c.attempt, res.c.failed_mediations)
            ):
                newest[key] = (department, failed)
            counts["resolution_rows"] = await c.scalar(select(func.count()).select_from(res))
            counts["resolved"] = len(newest)
            counts["resolved_without_failure"] = sum(failed == 0 for _, failed in newest.values())
            counts["settled_by"] = dict(Counter(department for department, _ in newest.values()))
        counts["followup_figures"] = await FollowupStore(f).figures(now)
    finally:
        await d.dispose()
        await f.dispose()
    return counts


async def test_the_report_counts_what_the_stores_hold(stores):
    dispatch_url, followup_url, now = stores
    report = await build_report(dispatch_url, followup_url, Scope(now))
    counts = await _counts(dispatch_url, followup_url, now)
    value = lambda key: report.figure(key).value  # noqa: E731

    assert value("disputes") == counts["disputes"] == DISPUTES
    # One report a case: the failed mediations graded again are reassessments, not reports.
    assert (value("reports_received"), value("reports_joined")) == (counts["reports"], 0) == (DISPUTES, 0)
    for key in ("orders", "escalations", "overdue_open", "sla_warnings", "sla_breaches", "revisits_due", "revisits_done", "rebounds"):
        assert value(key) == counts[key], key
    assert value("order_closure_rate") == pytest.approx(counts["resolved_orders"] / counts["orders"])
    assert value("satisfaction") == pytest.approx(counts["satisfaction"])
    assert value("mediation_success_rate") == pytest.approx(counts["resolved_without_failure"] / counts["resolved"])
    # Follow-up's gauge counts every announcement of a resolution: late support orders announce one dispute twice.
    figures = counts["followup_figures"]
    assert figures["resolved"] == counts["resolution_rows"] > counts["resolved"]
    # 工单办结率 is follow-up's own closure rate, computed by its figures() on the same store.
    assert value("order_closure_rate") == pytest.approx(sum(r for _, r in figures["departments"].values()) / sum(n for n, _ in figures["departments"].values()))
    assert {row[0]: row[2] for row in report.table("by_department").rows if row[2]} == counts["by_department"]
    assert {row[0]: row[7] for row in report.table("by_department").rows if row[7]} == counts["settled_by"]
    # Every kind of figure is there: the fixture made some of each.
    assert all(value(key) for key in ("settled", "sla_breaches", "revisits_done", "rebounds", "escalations", "flagged", "violence_flagged"))
    assert 0 < value("closure_rate") < 1 and 0 < value("mediation_success_rate") < 1
    assert sum(row[2] for row in report.table("by_category").rows) == DISPUTES == sum(row[2] for row in report.table("by_area").rows)


@pytest.mark.parametrize(("scope", "where"), [
    ({"town": "店口镇"}, "json_town = '店口镇'"),
    ({"department": "labor_arbitration"}, "labor_arbitration"),
    ({"period": {"start": date(2026, 3, 2), "end": date(2026, 3, 2)}}, "first day"),
    ({"period": {"start": date(2026, 3, 3)}}, "second day"),
])
async def test_the_report_of_an_area_a_department_or_a_period_counts_only_those_cases(stores, scope, where):
    dispatch_url, followup_url, now = stores
    whole = await build_report(dispatch_url, followup_url, Scope(now))
    scope = dict(scope)  # the parameter is shared by the SQLite and the PostgreSQL run
    days = period(**scope.pop("period")) if "period" in scope else (None, None, "")
    narrowed = await build_report(dispatch_url, followup_url, Scope(now, *days, **scope))
    d = create_engine(dispatch_url)
    try:
        async with d.connect() as c:
            rows = [(json.loads(report), key) for key, report in await c.execute(text("SELECT dispute_id, report FROM dispatch_disputes"))]
            worked = {key for (key,) in await c.execute(text("SELECT dispute_id FROM dispatch_orders WHERE department = 'labor_arbitration'"))}
    finally:
        await d.dispose()
    if "town" in scope:
        expected = sum(r["region"]["town"] == "店口镇" for r, _ in rows)
    elif "department" in scope:
        expected = len(worked)
    elif where == "first day":
        # Reported from 09:30 on 2 March, an hour apart: those before midnight, China time, fall on the first day.
        expected = sum(r["reported_at"] < "2026-03-03T00:00:00+08:00" for r, _ in rows)
    else:
        # Their orders were all issued at 10:00 on 2 March (the pipeline's clock stands still), before the period:
        # the stores are read from a little before it, for report dates running ahead of the service's clock.
        expected = sum(r["reported_at"] >= "2026-03-03T00:00:00+08:00" for r, _ in rows)
    assert 0 < narrowed.figure("disputes").value == expected < whole.figure("disputes").value, where
    assert narrowed.figure("reports_received").value == expected, where  # a case's reports go with it


async def test_the_command_writes_html_csv_and_json_without_personal_data(stores, tmp_path):
    dispatch_url, followup_url, _ = stores
    runner = CliRunner()
    stores_given = ["--dispatch-db", dispatch_url, "--followup-db", followup_url]
    for form, target in (("html", tmp_path / "r.html"), ("csv", tmp_path / "csv"), ("json", tmp_path / "r.json")):
        # In a thread: the command runs its own event loop, as it does from the shell.
        outcome = await asyncio.to_thread(runner.invoke, app, ["report", "--month", "2026-03", *stores_given, "--format", form, "-o", str(target)])
        assert outcome.exit_code == 0, outcome.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "2026年3月" in page and "调解成功率" in page
    assert {p.name for p in (tmp_path / "csv").iterdir()} >= {"summary.csv", "by_category.csv", "by_department.csv", "reports_by_source.csv"}
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["figures"][0]["value"] == DISPUTES
    written = page + (tmp_path / "r.json").read_text(encoding="utf-8") + "".join(p.read_text(encoding="utf-8-sig") for p in (tmp_path / "csv").iterdir())
    # The parties' names, phones, ID numbers and the description of the sample report never reach the report.
    for personal in ("张某", "13900000002", "建筑劳务", "工人讨要工资", "D-0"):
        assert personal not in written, personal
    refused = await asyncio.to_thread(runner.invoke, app, ["report", "--month", "2026-03", "--year", "2026", *stores_given])
    assert refused.exit_code != 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_page_renders_in_chromium_with_a_bar_for_every_row_and_no_console_error(stores, tmp_path):
    dispatch_url, followup_url, now = stores
    report = await build_report(dispatch_url, followup_url, Scope(now))
    page = tmp_path / "report.html"
    page.write_text(html(report), encoding="utf-8")
    # Playwright's synchronous API runs outside the test's event loop.
    seen = await asyncio.to_thread(render, page, tmp_path / "shot.png")
    assert seen.errors == []
    assert seen.title.startswith("矛盾纠纷排查化解统计报表")
    assert (seen.cards, seen.tables) == (len(report.figures), len(report.tables))
    charted = {t.key: t for t in report.tables if t.rows}
    assert set(seen.bars) == set(charted)
    for key, widths in seen.bars.items():
        values = [row[charted[key].columns.index(charted[key].chart)] for row in charted[key].rows]
        assert len(widths) == len(values) and all((w > 0) == bool(v) for w, v in zip(widths, values)), key
        assert max(widths) > 100, key  # the largest bar spans the chart
    assert (tmp_path / "shot.png").stat().st_size > 10_000


def reported_again(n: int, dispute_id: str, source: str, same_matter: tuple[str, ...] = ()):
    """Make the n-th dispute reported again through `source` under `dispute_id`, graded 1 on its own (so it joins its case)."""
    case = triaged(n)
    report = case.report.model_copy(update={"event_id": f"evt-{n}-{source}", "dispute_id": dispute_id, "source": source})
    return case.model_copy(update={
        "event_id": f"tri-{n}-{source}", "dispute_id": dispute_id, "source_event_id": report.event_id, "level": 1, "tier": "on_site",
        "urgency": "routine", "same_matter": list(same_matter), "report": report,
    })


async def test_a_dispute_reported_through_three_channels_counts_once(database_url, tmp_path):
    """Count each case once in the cases, the closure and success rates and by level, however many reports it had."""
    followup_url = f"sqlite+aiosqlite:///{tmp_path / 'followup.db'}" if database_url.startswith("sqlite") else database_url
    processor, published, dispatch_engine = await dispatch_pipeline(database_url)
    cases = [triaged(n) for n in range(6)]
    # Each of the first four is reported again through 110 under its own id and by the hotline under its platform's id.
    again = [reported_again(n, f"D-{n:03d}", "police_110") for n in range(4)]
    again += [reported_again(n, f"H-12345-{n}", "hotline_12345", same_matter=(f"D-{n:03d}",)) for n in range(4)]
    await processor.on_triaged([Record("disputes.triaged", t.to_bytes(), offset=n) for n, t in enumerate(cases + again)])
    received = len(cases) + sum(e.kind == "reported_again" for e in (WORK_ORDER_EVENT.validate_json(o.value) for o in published if o.topic == "workorders.events"))
    # The leads of the first three cases (two of them reported three times) resolve them; the others stay open.
    await processor.on_updates([update(o, "resolved", n) for n, o in enumerate(published.orders()) if o.dispute_id in ("D-000", "D-001", "D-004")])
    events = [Record("workorders.events", o.value, offset=n) for n, o in enumerate(o for o in published if o.topic == "workorders.events")]
    followup_engine = create_engine(followup_url)
    await FollowupStore(followup_engine).create()
    await followup_processor(followup_engine, ManualClock(NOW), Published()).on_events(events)
    try:
        report = await build_report(database_url, followup_url, Scope(NOW + timedelta(days=1)))
        # The command's own JSON says the same: its figures are what the page and the CSV files show.
        outcome = await asyncio.to_thread(CliRunner().invoke, app, [
            "report", "--dispatch-db", database_url, "--followup-db", followup_url, "--format", "json", "-o", str(tmp_path / "r.json"),
        ])
        assert outcome.exit_code == 0, outcome.output
    finally:
        await dispatch_engine.dispose()
        await followup_engine.dispose()
    value = lambda key: report.figure(key).value  # noqa: E731
    written = {f["key"]: f["value"] for f in json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["figures"]}
    assert (received, value("reports_received"), value("disputes")) == (14, 14, 6)  # reports received vs cases
    assert (written["reports_received"], written["disputes"], written["reports_joined"]) == (14, 6, 8)
    # Each report by its own channel: (received, cases it opened, joined to a case held).
    assert {row[0]: tuple(row[2:]) for row in report.table("reports_by_source").rows} == {
        "police_110": (6, 2, 4), "hotline_12345": (4, 0, 4), "grid_app": (2, 2, 0), "door_qr": (2, 2, 0),
    }
    assert {o.dispute_id for o in published.orders()} == {c.dispute_id for c in cases}  # no order under the hotline's ids
    assert value("settled") == 3 and value("closure_rate") == pytest.approx(3 / 6)
    assert value("mediation_success_rate") == 1.0  # three resolved, each once, none after a failure
    by_level = {row[0]: (row[2], row[3]) for row in report.table("by_level").rows}
    assert by_level == {1: (2, 1), 2: (2, 2), 3: (2, 0)}  # (cases, settled) at their own levels: no report lowered or raised one
    assert sum(row[5] for row in report.table("by_level").rows) == 3  # resolutions, one a case
    assert {row[0]: row[2] for row in report.table("by_source").rows} == {"grid_app": 2, "police_110": 2, "door_qr": 2}  # the case's first channel
