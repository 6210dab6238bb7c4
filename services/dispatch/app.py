"""Wiring of the dispatch service; nothing connects until the app starts.

Run with `fengqiao dispatch`, or `faststream run --factory services.dispatch.app:create_app`.
"""

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from faststream.asgi import AsgiFastStream
from prometheus_client import CollectorRegistry

from schemas.disputes import DISPUTES_INVALID, DISPUTES_TRIAGED
from schemas.catalog import UPDATES_CHANNEL, input_topics
from schemas.workorders import DEPARTMENTS, WORKORDERS_UPDATES_INVALID
from services.dispatch.calendar import (
    CoverageWatch,
    HolidayFile,
    WorkingCalendar,
    parse_holidays,
)
from services.dispatch.disclosure import DisclosurePolicy, parse_disclosure
from services.dispatch.handlers import CE_SOURCE, DispatchProcessor
from services.dispatch.metrics import DispatchMetrics
from services.dispatch.routing import RoutingTable, parse_routing
from services.dispatch.settings import DispatchSettings
from services.dispatch.store import DispatchStore
from services.runtime.clock import Clock, clock_from_settings
from services.runtime.poison import isolate_poison
from services.runtime.reload import Reloadable, watch_file
from services.runtime.service import batch_options, build_parts, every, service_app
from services.runtime.settings import ClockSettings, KafkaSettings

_PURGE_EVERY_SECONDS = 3600


def routing_holder(text: str, metrics: DispatchMetrics) -> Reloadable[RoutingTable]:
    """Hold the routing table in use, swappable at runtime."""
    return Reloadable("routing", text, parse_routing, lambda t: t.version, metrics.routing_active, metrics.routing_reloads)


def disclosure_holder(text: str, metrics: DispatchMetrics) -> Reloadable[DisclosurePolicy]:
    """Hold the disclosure policy in use, swappable at runtime."""
    return Reloadable("disclosure", text, parse_disclosure, lambda p: p.version, metrics.disclosure_active, metrics.disclosure_reloads)


def holidays_holder(text: str, metrics: DispatchMetrics) -> Reloadable[HolidayFile]:
    """Hold the holidays file in use, swappable at runtime."""
    return Reloadable("holidays", text, parse_holidays, lambda h: h.version, metrics.holidays_active, metrics.holidays_reloads)


def working_calendar(settings: DispatchSettings, metrics: DispatchMetrics) -> tuple[WorkingCalendar, dict[str, Callable[[], Awaitable[None]]]]:
    """Build the calendar from the holidays file, if one is set, with the loop that follows the file's changes."""
    if settings.holidays_file is None:
        return WorkingCalendar(), {}
    holder = holidays_holder(settings.holidays_file.read_text(encoding="utf-8"), metrics)
    return WorkingCalendar(holder), {"holidays-file": partial(watch_file, holder, settings.holidays_file, settings.routing_poll_seconds)}


def create_app(
    settings: DispatchSettings | None = None,
    kafka: KafkaSettings | None = None,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
) -> AsgiFastStream:
    """Build the dispatch application from settings."""
    settings = settings or DispatchSettings()
    kafka = kafka or KafkaSettings()
    clock = clock or clock_from_settings(ClockSettings())
    registry = registry or CollectorRegistry()
    metrics = DispatchMetrics(registry)
    parts = build_parts("dispatch", settings, kafka, registry)
    store = DispatchStore(parts.engine, parts.reader)
    routing = routing_holder(settings.routing_file.read_text(encoding="utf-8"), metrics)
    disclosure = disclosure_holder(settings.disclosure_file.read_text(encoding="utf-8"), metrics)
    calendar, follow_holidays = working_calendar(settings, metrics)
    coverage = CoverageWatch(calendar, metrics.calendar_covered_days)
    processor = DispatchProcessor(
        kafka, routing, calendar, store, parts.publisher, clock, metrics, parts.readiness, parts.writing, settings.max_message_bytes,
        settings.park_seconds, disclosure=disclosure,
    )
    @parts.broker.subscriber(
        kafka.topic(DISPUTES_TRIAGED), group_id=f"{settings.group_id}.triaged", title="dispatch:triaged", **batch_options(settings)
    )
    async def on_triaged(records: Any) -> None:
        """Issue work orders for a batch of graded disputes."""
        await isolate_poison(
            records, processor.on_triaged, parts.publisher, kafka.topic(DISPUTES_INVALID), metrics.invalid_triaged.inc, processor.forget_triaged,
            source=CE_SOURCE,
        )

    # Departments report progress over hours and days: their updates need no eager polling. Each writes its own
    # topic, which names the sender; the shared development topic is not read in production.
    @parts.broker.subscriber(
        *(kafka.topic(t) for t in input_topics(UPDATES_CHANNEL, settings.environment)), group_id=f"{settings.group_id}.updates", title="dispatch:updates",
        **batch_options(settings, latency_critical=False),
    )
    async def on_updates(records: Any) -> None:
        """Retry the parked updates, then apply a batch of department updates."""
        await processor.retry_parked()
        await isolate_poison(
            records, processor.on_updates, parts.publisher, kafka.topic(WORKORDERS_UPDATES_INVALID), metrics.rejected_updates.labels("unprocessable").inc,
            source=CE_SOURCE,
        )

    async def recount_open_orders() -> None:
        counts = await store.open_orders_by_department()
        for department in DEPARTMENTS:
            metrics.open_orders.labels(department).set(counts.get(department, 0))

    async def refresh_coverage() -> None:
        coverage.refresh(clock.now())

    async def purge() -> None:
        await processor.purge(settings.retention_days)

    return service_app(
        parts,
        store.migrate,
        {
            "routing-file": partial(watch_file, routing, settings.routing_file, settings.routing_poll_seconds),
            "disclosure-file": partial(watch_file, disclosure, settings.disclosure_file, settings.routing_poll_seconds),
            **follow_holidays,
            "open-order-count": partial(every, settings.gauge_refresh_seconds, recount_open_orders, "open-order count"),
            "calendar-coverage": partial(every, settings.gauge_refresh_seconds, refresh_coverage, "calendar coverage"),
            # Parked updates are retried before every batch too; this applies or refuses them when no update arrives.
            "parked-updates": partial(every, settings.gauge_refresh_seconds, processor.retry_parked, "parked updates"),
            "purge": partial(every, _PURGE_EVERY_SECONDS, purge, "purge"),
        },
    )
