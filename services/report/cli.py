"""`fengqiao report`: the statistics of a period, an area or a department, from dispatch's and follow-up's stores."""

import asyncio
from datetime import datetime, timezone
from pathlib import Path

import typer

from services.report.figures import CHINA, Report, Scope, compute, period
from services.report.render import as_json, html, write_csv
from services.report.store import load_rows
from services.runtime.store import create_engine


def default_url(service: str) -> str:
    """Return the store URL a service itself would use: its DATABASE_URL, or its SQLite file in its data dir."""
    if service == "dispatch":
        from services.dispatch.settings import DispatchSettings as settings_type
    else:
        from services.followup.settings import FollowupSettings as settings_type
    settings = settings_type()
    return settings.database_url or settings.sqlite_default(service)


async def build_report(dispatch_url: str, followup_url: str, scope: Scope) -> Report:
    """Read both stores and compute the report of `scope`."""
    dispatch, followup = create_engine(dispatch_url), create_engine(followup_url)
    try:
        rows = await load_rows(dispatch, followup, scope.start)
    finally:
        await dispatch.dispose()
        await followup.dispose()
    return compute(rows, scope, generated_at=scope.now.astimezone(CHINA).strftime("%Y-%m-%d %H:%M"))


def write_report(report: Report, output: Path, output_format: str) -> list[Path]:
    """Write the report as an HTML page, a directory of CSV files or a JSON file at `output`; return what was written."""
    if output_format == "csv":
        return write_csv(report, output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(as_json(report) if output_format == "json" else html(report), encoding="utf-8")
    return [output]


def run_report(
    month: str = typer.Option(None, help="A month, e.g. 2026-11."),
    year: int = typer.Option(None, help="A year, e.g. 2026."),
    start: datetime = typer.Option(None, "--from", formats=["%Y-%m-%d"], help="First day, e.g. 2026-11-01."),
    end: datetime = typer.Option(None, "--to", formats=["%Y-%m-%d"], help="Last day, included."),
    county: str = typer.Option(None, help="Only disputes in this county (区县)."),
    town: str = typer.Option(None, help="Only disputes in this town (乡镇/街道)."),
    community: str = typer.Option(None, help="Only disputes in this community (村/社区)."),
    department: str = typer.Option(None, help="Only disputes this department had an order on, and its own orders."),
    dispatch_db: str = typer.Option(None, help="Dispatch's store URL; default DATABASE_URL or dispatch.db in DISPATCH_DATA_DIR."),
    followup_db: str = typer.Option(None, help="Follow-up's store URL; default DATABASE_URL or followup.db in FOLLOWUP_DATA_DIR."),
    output_format: str = typer.Option("html", "--format", help="html (one page), csv (a directory, one file per table) or json."),
    output: Path = typer.Option(None, "--output", "-o", help="Where to write; default report.html, report-csv/ or report.json."),
) -> None:
    """Write the statistics report (办结率, 调解成功率, 回访, 反弹...) of a period, area or department: figures only, no personal data."""
    if output_format not in ("html", "csv", "json"):
        raise typer.BadParameter("html, csv or json", param_hint="--format")
    try:
        first, after, label = period(month, year, start.date() if start else None, end.date() if end else None)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    scope = Scope(datetime.now(timezone.utc), first, after, label, county, town, community, department)
    report = asyncio.run(build_report(dispatch_db or default_url("dispatch"), followup_db or default_url("followup"), scope))
    target = output or Path({"html": "report.html", "csv": "report-csv", "json": "report.json"}[output_format])
    write_report(report, target, output_format)
    typer.echo(f"wrote {target}")
