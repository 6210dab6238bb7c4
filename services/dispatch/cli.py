"""`fengqiao dispatch` runs the service; `fengqiao routing check` and `fengqiao disclosure check` validate its policy files."""

from pathlib import Path

import typer

from services.dispatch.disclosure import DisclosureError, load_disclosure
from services.dispatch.routing import RoutingError, load_routing
from services.runtime.http import run_service

routing_app = typer.Typer(help="Check dispatch routing tables.", no_args_is_help=True)
disclosure_app = typer.Typer(help="Check disclosure policies: which party details each recipient receives.", no_args_is_help=True)


def run_dispatch(
    port: int = typer.Option(None, help="HTTP port for /metrics and /health; default DISPATCH_HTTP_PORT or a free one."),
) -> None:
    """Run the dispatch service until SIGINT or SIGTERM."""
    from services.dispatch.app import create_app
    from services.dispatch.settings import DispatchSettings

    run_service("dispatch", DispatchSettings, create_app, port)


@routing_app.command("check")
def routing_check(file: Path) -> None:
    """Validate a routing file; exit 1 naming the key at fault."""
    try:
        table = load_routing(file)
    except (RoutingError, OSError) as error:
        typer.echo(f"{file}: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{file}: routing {table.version} is valid")


@disclosure_app.command("check")
def disclosure_check(file: Path) -> None:
    """Validate a disclosure file; exit 1 naming the key at fault."""
    try:
        policy = load_disclosure(file)
    except (DisclosureError, OSError) as error:
        typer.echo(f"{file}: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{file}: disclosure {policy.version} is valid")
