"""Wiring of the follow-up service; nothing connects until the app starts.

Run with `fengqiao followup`, or `faststream run --factory services.followup.app:create_app`.
"""

from functools import partial
from typing import Any

from faststream.asgi import AsgiFastStream
from prometheus_client import CollectorRegistry

from schemas.catalog import RESULTS_CHANNEL, input_topics
from schemas.followups import FOLLOWUPS_RESULTS_INVALID
from schemas.workorders import WORKORDERS_EVENTS, WORKORDERS_EVENTS_INVALID
from services.followup.handlers import CE_SOURCE, FollowupProcessor
from services.followup.metrics import FollowupMetrics
from services.followup.settings import FollowupSettings
from services.followup.store import FollowupStore
from services.runtime.clock import Clock, clock_from_settings
from services.runtime.poison import isolate_poison
from services.runtime.service import batch_options, build_parts, every, service_app
from services.runtime.settings import ClockSettings, KafkaSettings

_PURGE_EVERY_SECONDS = 3600


def create_app(
    settings: FollowupSettings | None = None,
    kafka: KafkaSettings | None = None,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
) -> AsgiFastStream:
    """Build the follow-up application from settings."""
    settings = settings or FollowupSettings()
    kafka = kafka or KafkaSettings()
    clock = clock or clock_from_settings(ClockSettings())
    registry = registry or CollectorRegistry()
    metrics = FollowupMetrics(registry)
    parts = build_parts("followup", settings, kafka, registry)
    store = FollowupStore(parts.engine, parts.reader)
    processor = FollowupProcessor(settings, kafka, store, parts.publisher, clock, metrics, parts.readiness, parts.writing)
    # Follow-up's timers run in hours and days: its inputs need no eager polling.
    batching = batch_options(settings, latency_critical=False)

    @parts.broker.subscriber(kafka.topic(WORKORDERS_EVENTS), group_id=f"{settings.group_id}.events", title="followup:events", **batching)
    async def on_events(records: Any) -> None:
        """Set and cancel timers from a batch of dispatch events."""
        await isolate_poison(records, processor.on_events, parts.publisher, kafka.topic(WORKORDERS_EVENTS_INVALID), metrics.invalid.labels("unprocessable").inc, source=CE_SOURCE)

    # Each department's revisit team writes its own topic, which names the sender; the shared one is development only.
    @parts.broker.subscriber(
        *(kafka.topic(t) for t in input_topics(RESULTS_CHANNEL, settings.environment)),
        group_id=f"{settings.group_id}.results", title="followup:results", **batching,
    )
    async def on_results(records: Any) -> None:
        """Record a batch of revisit results."""
        await isolate_poison(records, processor.on_results, parts.publisher, kafka.topic(FOLLOWUPS_RESULTS_INVALID), metrics.invalid.labels("unprocessable").inc, source=CE_SOURCE)

    async def recount() -> None:
        metrics.show(await store.figures(clock.now()))

    async def purge() -> None:
        await processor.purge()

    return service_app(
        parts,
        store.create,
        {
            "timers": processor.run_timers,
            "closure-figures": partial(every, settings.gauge_refresh_seconds, recount, "closure figures"),
            "purge": partial(every, _PURGE_EVERY_SECONDS, purge, "purge"),
        },
    )
