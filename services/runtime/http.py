"""The HTTP side of every service: Prometheus `/metrics`, `/health/live` and `/health/ready`."""

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from prometheus_client import CollectorRegistry, make_asgi_app
from pydantic import ValidationError

from services.runtime.embedded import free_port
from services.runtime.kafka import TlsSetupError, verify_broker_certificate
from services.runtime.retry import Readiness
from services.runtime.settings import KafkaSettings, ServiceSettings
from services.runtime.stacks import dump_stacks_on_signal

S = TypeVar("S", bound=ServiceSettings)

Check = Callable[[], Awaitable[bool]]


def service_routes(registry: CollectorRegistry, readiness: Readiness, checks: dict[str, Check]) -> list[tuple[str, Any]]:
    """Build the routes: live while the process serves; ready when every dependency answers and none is failing."""

    @get(include_in_schema=False)
    async def live(_scope: Any) -> AsgiResponse:
        return AsgiResponse(b"live\n", 200)

    @get(include_in_schema=False)
    async def ready(_scope: Any) -> AsgiResponse:
        down = sorted(readiness.failing | {name for name, check in checks.items() if not await check()})
        if down:
            return AsgiResponse(f"not ready: {', '.join(down)}\n".encode(), 503)
        return AsgiResponse(b"ready\n", 200)

    return [("/metrics", make_asgi_app(registry)), ("/health/live", live), ("/health/ready", ready)]


def serve(app: AsgiFastStream, settings: ServiceSettings, port: int | None = None) -> None:
    """Run a service's app under uvicorn until SIGINT or SIGTERM, exiting 0 after a graceful shutdown."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    port = port or settings.http_port or free_port()
    logging.getLogger(__name__).info("metrics on http://%s:%d/metrics", settings.http_host, port)
    # uvicorn re-raises the stop signal after shutting down; with these handlers in place the
    # re-raise is a no-op, so a clean stop exits 0 and supervisors can tell it from a crash.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: None)

    async def run() -> None:
        dump_stacks_on_signal()  # `kill -USR1 <pid>` logs where every task waits
        await app.run(run_extra_options={"host": settings.http_host, "port": port})

    asyncio.run(run())


def run_service(
    name: str,
    read_settings: Callable[[], S],
    create_app: Callable[[S, KafkaSettings], AsgiFastStream],
    port: int | None = None,
    refusals: tuple[type[Exception], ...] = (),
) -> None:
    """Read the settings, build the app, check the broker's certificate, then serve; a refused start is one line and exit 2.

    An operator who set a wrong key or CA needs the setting at fault, not a traceback through the framework.
    `refusals` are the service's own errors that mean the same (a rules file that cannot serve). No input is
    echoed, so no secret reaches the log.
    """
    try:
        settings, kafka = read_settings(), KafkaSettings()
        app = create_app(settings, kafka)
        verify_broker_certificate(kafka)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors(include_url=False, include_input=False)
        )
        typer.echo(f"{name} cannot start: {problems}", err=True)
        raise typer.Exit(2) from None
    except (TlsSetupError, *refusals) as error:
        typer.echo(f"{name} cannot start: {error}", err=True)
        raise typer.Exit(2) from None
    serve(app, settings, port)
