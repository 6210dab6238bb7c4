"""`fengqiao triage` runs the service; `fengqiao rules ...` checks, explains and backtests rules files."""

import json
import sys
from collections import Counter
from pathlib import Path

import typer
from pydantic import ValidationError

from schemas.deadletters import rejection_reason
from schemas.disputes import DisputeReported
from services.runtime.http import serve
from services.triage.grading import Features, Grader, detect_keywords
from services.triage.ruleset import RulesetError, load_ruleset

rules_app = typer.Typer(help="Check, explain and backtest triage rules files.", no_args_is_help=True)


def run_triage(
    port: int = typer.Option(None, help="HTTP port for /metrics and /health; default TRIAGE_HTTP_PORT or a free one."),
) -> None:
    """Run the triage service until SIGINT or SIGTERM."""
    from services.triage.app import create_app
    from services.triage.settings import TriageSettings

    settings = TriageSettings()
    serve(create_app(settings), settings, port)


def _load(path: Path) -> Grader:
    try:
        return Grader(load_ruleset(path))
    except (RulesetError, OSError) as error:
        typer.echo(f"{path}: {error}", err=True)
        raise typer.Exit(1) from None


def _explain(grader: Grader, report: DisputeReported) -> dict[str, object]:
    detected = detect_keywords(report.description, grader.ruleset.spec.keywords)
    triage = grader.grade(report, Features(detected=detected))
    return {
        "ruleset_version": grader.version,
        "level": triage.level,
        "tier": triage.tier,
        "urgency": triage.urgency,
        "flags": triage.flags,
        "matched_rules": [r.model_dump() for r in triage.matched_rules],
    }


@rules_app.command("check")
def rules_check(file: Path) -> None:
    """Validate a rules file; exit 1 with the rule and key at fault."""
    grader = _load(file)
    typer.echo(f"{file}: ruleset {grader.version} is valid ({len(grader.ruleset.rules)} rules)")


@rules_app.command("explain")
def rules_explain(file: Path, report: Path) -> None:
    """Grade one report (JSON) and print level, tier, urgency and matched rules as JSON."""
    grader = _load(file)
    try:
        parsed = DisputeReported.model_validate_json(report.read_bytes())
    except ValidationError as error:
        typer.echo(f"{report}: {rejection_reason(error)}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(_explain(grader, parsed), ensure_ascii=False, indent=2))


@rules_app.command("backtest")
def rules_backtest(
    candidate: Path,
    against: Path = typer.Option(..., "--against", help="The ruleset in use now."),
    cases: Path = typer.Option(..., "--cases", help="Recorded reports, one JSON object per line."),
    show: int = typer.Option(20, help="How many changed cases to print."),
) -> None:
    """Grade recorded reports with both versions: a level-change table and the changed cases (shadow test)."""
    new, current = _load(candidate), _load(against)
    table: Counter[tuple[int, int]] = Counter()
    changed, invalid = [], 0
    for number, line in enumerate(cases.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            report = DisputeReported.model_validate_json(line)
        except ValidationError as error:
            invalid += 1
            typer.echo(f"line {number}: skipped: {rejection_reason(error)}", err=True)
            continue
        before, after = _explain(current, report), _explain(new, report)
        table[before["level"], after["level"]] += 1
        if (before["level"], before["urgency"]) != (after["level"], after["urgency"]):
            changed.append({"line": number, "event_id": report.event_id, "before": before, "after": after})
    _print_backtest(current.version, new.version, table, changed[:show], len(changed), invalid)


def _print_backtest(current: str, new: str, table: Counter, changed: list, n_changed: int, invalid: int) -> None:
    total = sum(table.values())
    typer.echo(f"backtest: {total} reports, {current} -> {new}, {n_changed} changed, {invalid} invalid skipped")
    typer.echo("level before \\ after |      1 |      2 |      3")
    for before in (1, 2, 3):
        typer.echo(f"{before:>20} | " + " | ".join(f"{table[before, after]:>6}" for after in (1, 2, 3)))
    for case in changed:
        typer.echo(json.dumps(case, ensure_ascii=False))
    sys.stdout.flush()
