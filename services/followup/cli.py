"""`fengqiao followup` runs the follow-up service."""

import typer

from services.runtime.http import serve


def run_followup(
    port: int = typer.Option(None, help="HTTP port for /metrics and /health; default FOLLOWUP_HTTP_PORT or a free one."),
) -> None:
    """Run the follow-up service until SIGINT or SIGTERM."""
    from services.followup.app import create_app
    from services.followup.settings import FollowupSettings

    settings = FollowupSettings()
    serve(create_app(settings), settings, port)
