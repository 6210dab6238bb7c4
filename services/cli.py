"""The `fengqiao` command: one entry point gathering each part's subcommands."""

from services.runtime.cli import app
from services.triage.cli import rules_app, run_triage

app.command("triage")(run_triage)
app.add_typer(rules_app, name="rules")


def main() -> None:
    """Run the CLI."""
    app()
