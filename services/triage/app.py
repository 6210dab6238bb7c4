"""Wiring of the triage service; nothing connects until the app starts.

Run with `fengqiao triage`, or `faststream run --factory services.triage.app:create_app`.
"""

import asyncio
import logging
from functools import partial
from typing import Any

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry

from schemas.disputes import DISPUTES_REASSESS, DISPUTES_REPORTED
from schemas.rules import RULES_TRIAGE
from services.runtime.clock import Clock, clock_from_settings
from services.runtime.embedded import planned_embedded
from services.runtime.http import service_routes
from services.runtime.kafka import make_broker, publish_all
from services.runtime.retry import TRANSIENT, Readiness
from services.runtime.settings import ClockSettings, KafkaSettings
from services.runtime.store import create_engine, ping
from services.runtime.topics import contract_topics, ensure_topics
from services.triage.grading import Grader
from services.triage.handlers import TriageProcessor
from services.triage.metrics import TriageMetrics
from services.triage.reload import RulesHolder, watch_file
from services.triage.ruleset import load_ruleset
from services.triage.settings import TriageSettings
from services.triage.store import TriageStore

log = logging.getLogger(__name__)

_PURGE_EVERY_SECONDS = 3600


async def _raw(message: Any) -> Any:
    # Hand the handlers the ConsumerRecords untouched: they validate the bytes themselves, so
    # bad input becomes a dead letter instead of a framework error.
    return message.raw_message


def create_app(
    settings: TriageSettings | None = None,
    kafka: KafkaSettings | None = None,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
) -> AsgiFastStream:
    """Build the triage application from settings."""
    settings = settings or TriageSettings()
    kafka = kafka or KafkaSettings()
    clock = clock or clock_from_settings(ClockSettings())
    registry = registry or CollectorRegistry()
    metrics = TriageMetrics(registry)
    readiness = Readiness()
    bootstrap, embedded = planned_embedded(kafka.bootstrap_servers)
    broker = make_broker(
        kafka,
        bootstrap,
        middlewares=[KafkaPrometheusMiddleware(registry=registry, app_name="triage")],
        log_level=logging.DEBUG,
    )
    engine = create_engine(settings.database_url or settings.sqlite_default("triage"))
    store = TriageStore(engine)
    holder = RulesHolder(Grader(load_ruleset(settings.rules_file)), metrics)
    processor = TriageProcessor(settings, kafka, holder, store, partial(publish_all, broker), clock, metrics, readiness)

    @broker.subscriber(
        kafka.topic(DISPUTES_REPORTED),
        kafka.topic(DISPUTES_REASSESS),
        group_id=settings.group_id,
        batch=True,
        max_records=settings.batch_size,
        batch_timeout_ms=settings.batch_timeout_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=_raw,
        title="triage:reports",
    )
    async def on_reports(records: Any) -> None:
        """Grade a batch of reports and reassessment requests; offsets commit after it returns."""
        await processor.process(records)

    # No group: every instance reads every version from the start of the compacted topic.
    @broker.subscriber(kafka.topic(RULES_TRIAGE), auto_offset_reset="earliest", decoder=_raw, title="triage:rules")
    async def on_ruleset(record: Any) -> None:
        """Offer a ruleset version published on the rules topic."""
        holder.offer((record.value or b"").decode("utf-8", errors="replace"), "topic")

    tasks: list[asyncio.Task[None]] = []

    async def purge_forever() -> None:
        while True:
            windows = holder.grader.ruleset.spec.correlation
            widest = max(windows.repeat_parties.window_days, windows.group_wage_risk.window_days)
            try:
                await store.purge(clock.now(), settings.dedupe_days, widest)
            except TRANSIENT as error:
                log.warning("purge failed (%s); next try in an hour", type(error).__name__)
            await asyncio.sleep(_PURGE_EVERY_SECONDS)

    async def start() -> None:
        if embedded is not None:
            embedded.start()
            await ensure_topics(kafka, bootstrap, contract_topics())
        await store.create()

    async def started() -> None:
        tasks.append(asyncio.create_task(watch_file(holder, settings.rules_file, settings.rules_poll_seconds)))
        tasks.append(asyncio.create_task(purge_forever()))
        log.info("triage ready with ruleset %s", holder.grader.version)

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await engine.dispose()
        if embedded is not None:
            embedded.stop()

    checks = {"broker": partial(broker.ping, 2.0), "store": partial(ping, engine)}
    return AsgiFastStream(
        broker,
        asgi_routes=service_routes(registry, readiness, checks),
        on_startup=[start],
        after_startup=[started],
        after_shutdown=[stop],
    )
