"""The `fengqiao` command: one entry point gathering each part's subcommands."""

from services.dispatch.cli import disclosure_app, routing_app, run_dispatch
from services.followup.cli import run_followup
from services.report.cli import run_report
from services.runtime.cli import app
from services.simulator.cli import run_loop
from services.triage.cli import rules_app, run_triage

app.command("triage")(run_triage)
app.command("dispatch")(run_dispatch)
app.command("followup")(run_followup)
app.command("run")(run_loop)
app.command("report")(run_report)
app.add_typer(rules_app, name="rules")
app.add_typer(routing_app, name="routing")
app.add_typer(disclosure_app, name="disclosure")


def main() -> None:
    """Run the CLI."""
    app()
