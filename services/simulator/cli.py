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
        ("reported 上报", len(seen.reported)),
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


def print_report(report: dict[str, Any]) -> None:
    """Print the end-of-run report."""
    metrics = report["metrics"]
    table = Table(title=f"Run report · {report['simulated_days']} simulated days")
    table.add_column("figure")
    table.add_column("from the topics")
    table.add_column("from the services' /metrics")
    table.add_row("reports received / cases", f"{report['reports_received']} / {report['cases']}", "")
    table.add_row("reported again: joined / regraded / reopened", " / ".join(str(report["rereports"].get(k, 0)) for k in ("joined", "regraded", "reopened")), "")
    table.add_row("disputes triaged", str(report["triaged_events"]), f"{metrics['triaged']:.0f}")
    table.add_row("by level (first grading)", json.dumps(report["levels"]), json.dumps(metrics["triaged_by_level"]))
    table.add_row("by category", json.dumps(report["categories"], ensure_ascii=False), "")
    table.add_row("by source", json.dumps(report["sources"]), "")
    table.add_row("work orders issued", str(report["orders"]), f"{metrics['orders_issued']:.0f}")
    table.add_row("orders by department", json.dumps(report["orders_by_department"]), "")
    table.add_row("closure rate 办结率", "", f"{metrics['closure_rate']:.2%}")
    table.add_row("mediation success rate 调解成功率", "", f"{metrics['mediation_success_rate']:.2%}")
    table.add_row("average satisfaction", "", f"{metrics['satisfaction_average']:.2f}")
    table.add_row("SLA warnings", str(report["sla_warnings"]), f"{metrics['sla_warnings']:.0f}")
    table.add_row("SLA breaches", str(report["sla_breaches"]), f"{metrics['sla_breaches']:.0f}")
    table.add_row("escalations to level 3", str(report["escalated_to_level_3"]), json.dumps(metrics["escalations"]))
    table.add_row("disputes resolved", str(report["disputes_resolved"]), "")
    table.add_row("resolved in time for a revisit / without one", f"{report['resolved_in_time_for_a_revisit']} / {report['resolved_without_revisit']}", "")
    table.add_row("revisits due", str(report["revisits_due"]), f"{metrics['revisits_due']:.0f}")
    table.add_row("rebounds", str(report["rebounds"]), f"{metrics['rebounds']:.0f}")
    table.add_row("dead letters", json.dumps(report["dead_letters"]), "")
    table.add_row("triage latency p50 / p99", f"{report['triage_latency_ms']['p50']} / {report['triage_latency_ms']['p99']} ms", "")
    table.add_row("dispatch latency p50 / p99", f"{report['dispatch_latency_ms']['p50']} / {report['dispatch_latency_ms']['p99']} ms", "")
    console.print(table)
    for name, url in report["metrics_urls"].items():
        console.print(f"{name} /metrics was served at {url}")


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
