"""The HTTP side of every service: Prometheus `/metrics`, `/health/live` and `/health/ready`."""

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from prometheus_client import CollectorRegistry, make_asgi_app

from services.runtime.embedded import free_port
from services.runtime.retry import Readiness
from services.runtime.settings import ServiceSettings

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
    asyncio.run(app.run(run_extra_options={"host": settings.http_host, "port": port}))
