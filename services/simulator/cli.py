"""`fengqiao run`: live progress while the loop runs, then the report."""

import asyncio
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from services.report.cli import build_report, write_report
from services.report.figures import CHINA, Scope
from services.simulator.run import RunOptions, run

console = Console()


def _progress(simulation: Any, stack: Any) -> Table:
    seen = simulation.observed
    table = Table(title=f"Fengqiao 排查—上报—处置—反馈 · simulated {simulation.clock.now():%Y-%m-%d %H:%M}", show_header=False)
    rows = [
        ("disputes reported 上报 (ids)", len(seen.reported)),
        ("triaged 分级", f"{len(seen.triaged)}  (level 1/2/3: {', '.join(str(sum(t.level == n for t in seen.triaged.values())) for n in (1, 2, 3))})"),
        ("work orders 工单", len(seen.orders)),
        ("disputes resolved 化解", len(seen.resolved)),
        ("SLA warnings / breaches", f"{seen.due['sla_warning']} / {seen.due['sla_breached']}"),
        ("revisits 回访 / rebounds 反弹", f"{seen.due['revisit']} / {seen.rebounds}"),
        ("dead letters", sum(seen.dead_letters.values())),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


SUMMARY_WIDTH = 80  # a terminal's width: the closing summary must read without wrapping
BAR_WIDTH = 24

# One definition per figure, printed under the summary.
DEFINITIONS = [
    ("reports / cases", "reports received on disputes.reported / the quarrels they are (a report of a case held joins it)"),
    ("办结率 closure rate", "orders resolved ÷ orders issued (follow-up's store)"),
    ("调解成功率 mediation success", "disputes resolved without a failed mediation ÷ disputes resolved"),
    ("levels, categories", "each case once, as first graded"),
    ("updates", "dispatch's answers on each department's topic; superseded: sent for an order a new attempt had replaced"),
    ("cancelled", "open orders withdrawn by a new attempt: replaced by the department's new order, or rerouted away"),
]


def _bars(title: str, counts: dict[str, int], limit: int = 8) -> Table:
    """Draw one dimension as a small table with proportional bars; the rest summed in one row."""
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 1))
    table.add_column(width=26, no_wrap=True, overflow="ellipsis")
    table.add_column(justify="right", width=6)
    table.add_column(width=BAR_WIDTH, no_wrap=True)
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    shown = ranked[:limit] + ([("(others)", sum(n for _, n in ranked[limit:]))] if len(ranked) > limit else [])
    top = max((n for _, n in shown), default=0) or 1
    for name, count in shown:
        table.add_row(str(name), str(count), "█" * max(1 if count else 0, round(BAR_WIDTH * count / top)))
    return table


def _figures(report: dict[str, Any]) -> Table:
    """List the run's figures, each once: the topics' count, and the services' metric only where they differ."""
    metrics = report["metrics"]
    table = Table(title="the loop", title_justify="left", show_header=False, box=None, padding=(0, 1))
    table.add_column(width=40, no_wrap=True)
    table.add_column(width=34, no_wrap=True)

    def counted(name: str, topics: int, metric: float | None = None) -> None:
        # The report's counts come from the topics; the services' own metrics are shown only when they disagree.
        differs = metric is not None and round(metric) != topics
        table.add_row(name, f"{topics}" + (f"  (services' metrics: {metric:.0f})" if differs else ""))

    again = report.get("rereports", {})
    table.add_row("reports received / cases", f"{report['reports_received']} / {report['cases']}")
    table.add_row("  joined / regraded / reopened", " / ".join(str(again.get(k, 0)) for k in ("joined", "regraded", "reopened")))
    counted("work orders 工单", report["orders"], metrics["orders_issued"])
    answers, cancelled = report["update_answers"], report["orders_cancelled"]
    table.add_row("  updates applied / superseded / refused", " / ".join(str(answers[k]) for k in ("applied", "superseded", "refused")))
    table.add_row("  cancelled: replaced / rerouted", f"{cancelled['superseded']} / {cancelled['rerouted']}")
    table.add_row("disputes resolved 化解", str(report["disputes_resolved"]))
    counted("SLA warnings", report["sla_warnings"], metrics["sla_warnings"])
    counted("SLA breaches", report["sla_breaches"], metrics["sla_breaches"])
    counted("revisits due 回访", report["revisits_due"], metrics["revisits_due"])
    table.add_row("  results accepted / refused", " / ".join(str(report["result_answers"][k]) for k in ("accepted", "refused")))
    counted("rebounds 反弹", report["rebounds"], metrics["rebounds"])
    table.add_row("办结率 closure rate", f"{metrics['closure_rate']:.1%}")
    table.add_row("调解成功率 mediation success", f"{metrics['mediation_success_rate']:.1%}")
    table.add_row("satisfaction (1–5)", f"{metrics['satisfaction_average']:.2f}")
    table.add_row("latency p50 / p99: triage", f"{report['triage_latency_ms']['p50']} / {report['triage_latency_ms']['p99']} ms")
    table.add_row("latency p50 / p99: to first order", f"{report['dispatch_latency_ms']['p50']} / {report['dispatch_latency_ms']['p99']} ms")
    return table


def print_report(report: dict[str, Any], out: Console | None = None) -> None:
    """Print the end-of-run summary at 80 columns: the loop's figures, then one small table per dimension."""
    out = out or Console(width=SUMMARY_WIDTH)
    out.rule(f"Run report · {report['simulated_days']} simulated days")
    out.print(_figures(report))
    out.print(_bars("cases by level (first grading)", {f"level {k}": v for k, v in report["levels"].items()}))
    out.print(_bars("cases by category", report["categories"]))
    out.print(_bars("reports by source", report["sources"]))
    out.print(_bars("work orders by department", report["orders_by_department"]))
    if report["refusals"]:
        out.print(_bars("updates refused, by reason", report["refusals"]))
    if report["dead_letters"]:
        out.print(_bars("dead letters by topic and reason", report["dead_letters"]))
    for name, meaning in DEFINITIONS:
        out.print(f"[dim]{name}: {meaning}[/dim]")
    for name, url in report["metrics_urls"].items():
        out.print(f"{name} /metrics was served at {url}")


def write_run_report(report: dict[str, Any], workdir: Path) -> Path:
    """Write the statistics report of the run's own stores to workdir/report.html, and return its path."""
    began, ended = (datetime.fromisoformat(moment) for moment in report["simulated_period"])
    # The stores hold this run only; their times are simulated, so "now" (for overdue orders) is the simulated end.
    scope = Scope(ended, period=f"{began.astimezone(CHINA):%Y-%m-%d} 至 {ended.astimezone(CHINA):%Y-%m-%d}（模拟 simulated）")
    # The services took DATABASE_URL when it was set, else their SQLite files in the run's data dir.
    urls = [os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{Path(report['data_dir']) / name}.db" for name in ("dispatch", "followup")]
    built = asyncio.run(build_report(*urls, scope))
    return write_report(built, workdir / "report.html", "html")[0]


def run_loop(
    disputes: int = typer.Option(2000, help="Reports to publish."),
    days: int = typer.Option(30, help="Simulated days over which they are reported."),
    seconds_per_month: float = typer.Option(60.0, help="Real seconds a simulated month takes."),
    bootstrap: str = typer.Option(None, help="HOST:PORT of an existing Kafka; default: an embedded broker."),
    seed: int = typer.Option(7, help="Seed of the simulated world."),
    workdir: Path = typer.Option(Path("var/run"), help="Where stores and service logs go."),
    report_json: Path = typer.Option(None, help="Also write the report here as JSON."),
    dump_topics: Path = typer.Option(None, help="Also write every record of the topics here, one JSON line each (personal data included)."),
) -> None:
    """Run the whole loop with simulated reporters, departments and revisit teams, then print a report."""
    options = RunOptions(disputes, days, seconds_per_month, bootstrap, seed, workdir, dump_topics=dump_topics)
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        report = asyncio.run(run(options, lambda simulation, stack: live.update(_progress(simulation, stack))))
    print_report(report)
    console.print(f"statistics report 统计报表: {write_run_report(report, workdir)}")
    if report_json:
        report_json.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str))
