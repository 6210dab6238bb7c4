"""`fengqiao followup` runs the follow-up service."""

import typer

from services.runtime.http import run_service


def run_followup(
    port: int = typer.Option(None, help="HTTP port for /metrics and /health; default FOLLOWUP_HTTP_PORT or a free one."),
) -> None:
    """Run the follow-up service until SIGINT or SIGTERM."""
    from services.followup.app import create_app
    from services.followup.settings import FollowupSettings

    run_service("followup", FollowupSettings, create_app, port)
