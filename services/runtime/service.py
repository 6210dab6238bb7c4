"""What every service is made of: a broker (embedded when none is configured), a store, HTTP routes, background tasks."""

import asyncio
import dataclasses
import gc
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.embedded import EmbeddedBroker, planned_embedded
from services.runtime.heap import return_freed_heap
from services.runtime.http import service_routes
from services.runtime.kafka import BatchPublisher, make_broker
from services.runtime.retry import Readiness, is_outage
from services.runtime.settings import KafkaSettings, ServiceSettings
from services.runtime.store import checkpoint, create_engine, create_reader, ping
from services.runtime.supervise import Loop, supervise
from services.runtime.topics import contract_topics, ensure_topics

log = logging.getLogger(__name__)

_RELAXED_FETCH_MIN_BYTES = 1024 * 1024
# SQLite's own checkpoint would run once the log reached 1,000 pages: about every second at 500 reports/s.
_CHECKPOINT_SECONDS = 1.0
_HEAP_TRIM_SECONDS = 10.0
# How long the event loop's thread keeps the GIL from a thread that asks for it. The store's thread asks for it each
# time a statement of its own starts and ends (a batch's inserts and commit), and Python's default of 5 ms held it
# back that long each time while the loop decided: triage's inserts took 107 us a report of wall time on their thread
# at 5 ms and 68-85 at 1 ms, and the loop waited for them after its publish (see docs/performance.md).
SWITCH_INTERVAL_SECONDS = 0.001


async def decodable_headers(records: Any, parse: Callable[[Any], Awaitable[Any]]) -> Any:
    """Parse records as FastStream does, after making every header value decodable.

    FastStream decodes each header value as UTF-8 before the handler runs: one undecodable value failed its whole
    batch on every redelivery and stopped the partition. Only the rules subscriber reads headers (a signature, which a
    replaced byte fails as it should), so a replaced byte costs nothing.
    """
    if isinstance(records, tuple):
        return await parse(tuple(_decodable(record) for record in records))
    return await parse(_decodable(records))


def _decodable(record: Any) -> Any:
    headers = record.headers or ()
    if all(_utf8(value) for _, value in headers):
        return record
    return dataclasses.replace(record, headers=[(name, value.decode("utf-8", "replace").encode()) for name, value in headers])


def _utf8(value: bytes | None) -> bool:
    try:
        (value or b"").decode()
    except UnicodeDecodeError:
        return False
    return True


async def raw_records(message: Any) -> Any:
    """Decode nothing: handlers get the ConsumerRecords and validate the bytes themselves, so bad input
    becomes a dead letter instead of a framework error."""
    return message.raw_message


@dataclass
class ServiceParts:
    """The connections of one service, built without connecting."""

    name: str
    kafka: KafkaSettings
    registry: CollectorRegistry
    broker: KafkaBroker
    engine: AsyncEngine
    bootstrap: str
    embedded: EmbeddedBroker | None
    publisher: BatchPublisher
    reader: AsyncEngine
    readiness: Readiness = field(default_factory=Readiness)
    # Held by each store transaction and by the checkpoint that empties SQLite's log, which locks writers out.
    writing: asyncio.Lock = field(default_factory=asyncio.Lock)


def build_parts(name: str, settings: ServiceSettings, kafka: KafkaSettings, registry: CollectorRegistry) -> ServiceParts:
    """Create the broker and store engine of a service from its settings."""
    bootstrap, embedded = planned_embedded(kafka.bootstrap_servers)
    broker = make_broker(
        kafka,
        bootstrap,
        middlewares=[KafkaPrometheusMiddleware(registry=registry, app_name=name)],
        log_level=logging.DEBUG,  # FastStream logs every batch at its level; keep that out of INFO
    )
    url = settings.database_url or settings.sqlite_default(name)
    engine = create_engine(url, checkpoints_elsewhere=True, cache_mib=settings.sqlite_cache_mib)
    publisher = BatchPublisher(kafka, bootstrap, settings.publish_timeout_ms)
    return ServiceParts(name, kafka, registry, broker, engine, bootstrap, embedded, publisher, create_reader(url, engine))


def service_app(
    parts: ServiceParts,
    prepare: Callable[[], Awaitable[None]],
    background: dict[str, Loop],
) -> AsgiFastStream:
    """Wrap a service's broker in an ASGI app: start the embedded broker and the store, supervise the named background loops, stop cleanly."""
    tasks: list[asyncio.Task[None]] = []
    stopping = asyncio.Event()

    async def start() -> None:
        if parts.embedded is not None:
            parts.embedded.start()
            await ensure_topics(parts.kafka, parts.bootstrap, contract_topics())
        await parts.publisher.start()
        await prepare()

    async def started() -> None:
        tune_interpreter()
        # A SIGTERM during start-up runs the shutdown before this hook: a loop started now would open
        # a database connection after the engine is disposed, and its thread would keep the process alive.
        if stopping.is_set():
            return
        checkpoints = partial(every, _CHECKPOINT_SECONDS, partial(checkpoint, parts.reader, parts.writing), "checkpoint")
        heap_trims = partial(every, _HEAP_TRIM_SECONDS, return_freed_heap, "heap trim")
        loops = background | {"checkpoints": checkpoints, "heap-trims": heap_trims}
        tasks.extend(asyncio.create_task(supervise(name, loop, parts.readiness)) for name, loop in loops.items())
        log.info("%s started", parts.name)

    async def stop() -> None:
        stopping.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await parts.publisher.stop()
        await parts.engine.dispose()
        await parts.reader.dispose()
        if parts.embedded is not None:
            parts.embedded.stop()

    checks = {"broker": partial(parts.broker.ping, 2.0), "store": partial(ping, parts.engine)}
    return AsgiFastStream(
        parts.broker,
        asgi_routes=service_routes(parts.registry, parts.readiness, checks),
        on_startup=[start],
        after_startup=[started],
        after_shutdown=[stop],
    )


async def every(seconds: float, work: Callable[[], Awaitable[None]], what: str) -> None:
    """Run `work` forever at a fixed interval; an outage is logged and tried again next time.

    Any other failure ends the loop, for its supervisor to restart with backoff and report it not ready.
    """
    while True:
        try:
            await work()
        except Exception as error:
            if not is_outage(error):
                raise
            log.warning("%s failed (%s); trying again in %.0f s", what, type(error).__name__, seconds)
        await asyncio.sleep(seconds)


def tune_interpreter() -> None:
    """Set the collector and the GIL's switch interval for a service's batches, once what is loaded at start is loaded."""
    # A batch allocates thousands of short-lived objects; with the default thresholds the collector
    # keeps re-scanning everything loaded at start (rules, schemas, modules), which never becomes garbage.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


def batch_options(settings: ServiceSettings, latency_critical: bool = True) -> dict[str, Any]:
    """Subscriber options of every batch consumer: raw records, commit only after the handler returns.

    Only the report -> work order path polls the broker eagerly; other inputs wait longer per fetch.
    """
    fetch_wait = settings.fetch_max_wait_ms if latency_critical else settings.relaxed_fetch_max_wait_ms
    return {
        "batch": True,
        "max_records": settings.batch_size,
        # FastStream sleeps as long again after an empty wait: half the fetch wait keeps an idle loop near one fetch.
        "batch_timeout_ms": settings.batch_timeout_ms if latency_critical else max(1, fetch_wait // 2),
        "fetch_max_wait_ms": fetch_wait,
        # A relaxed input lets the broker gather up to the wait's worth of records: fewer, larger batches.
        "fetch_min_bytes": 1 if latency_critical else _RELAXED_FETCH_MIN_BYTES,
        "fetch_max_bytes": settings.fetch_max_bytes,
        "session_timeout_ms": settings.session_timeout_ms,
        # Kafka's advice: a third of the session, so a member misses two heartbeats before it is dropped.
        "heartbeat_interval_ms": settings.session_timeout_ms // 3,
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "decoder": raw_records,
        "parser": decodable_headers,
    }
