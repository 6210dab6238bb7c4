"""Dispatch's batch pipelines: graded disputes into orders, department updates into order changes.

Each batch runs in one database transaction: load state, decide, publish every output and await the
acknowledgements, write the effects with the processed ids, commit. The caller commits offsets after.
"""

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.common import Contract
from schemas.disputes import DISPUTES_INVALID, DISPUTES_REASSESS, DisputeReported, DisputeTriaged
from schemas.workorders import WORKORDERS_EVENTS, WORKORDERS_UPDATES_INVALID, WorkOrderUpdate, work_order_topic
from services.dispatch.calendar import WorkingCalendar
from services.dispatch.lifecycle import OPEN, Effects, Order, Rejection, apply_update, check_update, dispatch
from services.dispatch.metrics import DispatchMetrics
from services.dispatch.routing import RoutingTable
from services.dispatch.store import DispatchStore
from services.runtime.clock import Clock
from services.runtime.deadletter import dead_letter, validated
from services.runtime.faults import fault_point
from services.runtime.kafka import Outgoing, encode_event
from services.runtime.reload import Reloadable
from services.runtime.retry import Readiness, in_transaction
from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)

CE_SOURCE = "/fengqiao/dispatch"
Publish = Callable[[list[Outgoing]], Awaitable[None]]


class EncodedReports:
    """Encodes each report once per batch: a dispute's row and each of its issued events carry the same report."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[DisputeReported, bytes]] = {}

    def __call__(self, report: DisputeReported) -> bytes:
        """Return the report's JSON, encoding it on first sight."""
        held = self._by_id.get(id(report))
        if held is None:
            # Holding the report keeps its id from being reused by another object while the cache lives.
            held = self._by_id[id(report)] = (report, report.to_bytes())
        return held[1]

    def value(self, event: Contract) -> bytes:
        """Serialise an event, splicing in its report's JSON when the report is its last field."""
        if next(reversed(type(event).__pydantic_fields__)) == "report":
            return event.to_bytes_with("report", self(event.report))
        return event.to_bytes()


def _by_dispute(orders: Iterable[Order]) -> defaultdict[str, dict[str, Order]]:
    # A batch holds hundreds of disputes: finding a dispute's orders must not scan every order.
    found: defaultdict[str, dict[str, Order]] = defaultdict(dict)
    for order in orders:
        found[order.dispute_id][order.work_order_id] = order
    return found


def _take(effects: Effects, disputes: dict, orders: dict, by_dispute: defaultdict[str, dict[str, Order]], batch: Effects) -> None:
    # Later events of the batch must see what earlier ones changed.
    disputes.update(effects.disputes)
    orders.update(effects.orders)
    for order in effects.orders.values():
        by_dispute[order.dispute_id][order.work_order_id] = order
    batch.merge(effects)


class DispatchProcessor:
    """Runs both pipelines; one lock serialises them in a process, row locks across processes."""

    def __init__(
        self,
        kafka: KafkaSettings,
        routing: Reloadable[RoutingTable],
        calendar: WorkingCalendar,
        store: DispatchStore,
        publish: Publish,
        clock: Clock,
        metrics: DispatchMetrics,
        readiness: Readiness,
        writing: asyncio.Lock,
        max_message_bytes: int = 256 * 1024,
    ):
        self.kafka = kafka
        self.routing = routing
        self.calendar = calendar
        self.store = store
        self.publish = publish
        self.clock = clock
        self.metrics = metrics
        self.readiness = readiness
        self.max_message_bytes = max_message_bytes
        # The service's one writing lock: one transaction at a time, and none while SQLite's log is emptied.
        self.writing = writing

    async def _transaction(self, work: Callable[[AsyncConnection], Awaitable[None]]) -> None:
        await in_transaction(self.store.engine, work, self.readiness, self.metrics.store_retries.inc, self.writing)

    def _outgoing(self, effects: Effects, now, reports: EncodedReports) -> list[Outgoing]:
        records = [encode_event(self.kafka.topic(work_order_topic(o.department)), o, o.work_order_id, CE_SOURCE, now) for o in effects.issued]
        events = self.kafka.topic(WORKORDERS_EVENTS)
        records += [encode_event(events, e, e.event_id, CE_SOURCE, now, reports.value(e)) for e in effects.events]
        records += [encode_event(self.kafka.topic(DISPUTES_REASSESS), r, r.event_id, CE_SOURCE, now) for r in effects.reassessments]
        return records

    async def on_triaged(self, records: Sequence[Any]) -> None:
        """Issue the orders of a batch of graded disputes."""
        valid, dead = validated(
            records, DisputeTriaged.model_validate_json, self.kafka.topic(DISPUTES_INVALID), self.max_message_bytes, self.metrics.invalid_triaged.inc
        )

        async def work(connection: AsyncConnection) -> None:
            keys = [f"triaged:{t.source_event_id}" for _, t in valid]
            seen = await self.store.processed_ids(connection, keys)
            fresh, done = [], set(seen)
            for record, triaged in valid:
                key = f"triaged:{triaged.source_event_id}"
                if key not in done:
                    done.add(key)
                    fresh.append((record, triaged))
            self.metrics.duplicates.labels("triaged").inc(len(valid) - len(fresh))
            dispute_ids = sorted({t.dispute_id for _, t in fresh})
            disputes = await self.store.load_disputes(connection, dispute_ids)
            orders = await self.store.load_orders(connection, dispute_ids, [])
            known_disputes, known_orders = set(disputes), set(orders)
            now, table, batch = self.clock.now(), self.routing.current, Effects()
            by_dispute = _by_dispute(orders.values())
            for _, triaged in fresh:
                current = disputes.get(triaged.dispute_id)
                open_orders = [o for o in by_dispute[triaged.dispute_id].values() if o.status in OPEN]
                effects = dispatch(triaged, current, open_orders, now, table, self.calendar)
                _take(effects, disputes, orders, by_dispute, batch)
            reports = EncodedReports()
            await self.publish(self._outgoing(batch, now, reports) + dead)
            fault_point("after_publish", "triaged")
            processed = [f"triaged:{t.source_event_id}" for _, t in fresh]
            await self.store.write(connection, batch, known_disputes, known_orders, processed, now, reports)
            self._observe_issued(batch, [r for r, _ in fresh])

        await self._transaction(work)
        fault_point("after_record", "triaged")

    async def on_updates(self, records: Sequence[Any]) -> None:
        """Apply a batch of department updates, refusing what is invalid or unauthorised."""
        invalid_topic = self.kafka.topic(WORKORDERS_UPDATES_INVALID)
        valid, dead = validated(
            records, WorkOrderUpdate.model_validate_json, invalid_topic, self.max_message_bytes, self.metrics.rejected_updates.labels("invalid").inc
        )

        async def work(connection: AsyncConnection) -> None:
            seen = await self.store.processed_ids(connection, [f"update:{u.event_id}" for _, u in valid])
            dispute_ids = sorted({u.dispute_id for _, u in valid})
            orders = await self.store.load_orders(connection, dispute_ids, [u.work_order_id for _, u in valid])
            disputes = await self.store.load_disputes(connection, sorted(dispute_ids + [o.dispute_id for o in orders.values()]))
            known_disputes, known_orders = set(disputes), set(orders)
            now, table, batch, done = self.clock.now(), self.routing.current, Effects(), {}
            by_dispute = _by_dispute(orders.values())
            for record, update in valid:
                key = f"update:{update.event_id}"
                if key in seen or key in done:
                    self.metrics.duplicates.labels("updates").inc()
                    continue
                done[key] = None  # a dict keeps the order of first sight
                try:
                    order = check_update(update, orders.get(update.work_order_id), table)
                except Rejection as rejection:
                    self.metrics.rejected_updates.labels(rejection.reason).inc()
                    dead.append(dead_letter(record, str(rejection), invalid_topic))
                    continue
                dispute = disputes[order.dispute_id]
                siblings = [o for o in by_dispute[dispute.dispute_id].values() if o.attempt == dispute.attempt]
                effects = apply_update(update, order, dispute, siblings, now, table, self.calendar)
                _take(effects, disputes, orders, by_dispute, batch)
                self.metrics.updates.labels(update.status).inc()
            reports = EncodedReports()
            await self.publish(self._outgoing(batch, now, reports) + dead)
            fault_point("after_publish", "updates")
            await self.store.write(connection, batch, known_disputes, known_orders, list(done), now, reports)
            for event in batch.events:
                if event.kind == "escalated":
                    self.metrics.escalations.labels(event.reason).inc()
            self._observe_issued(batch, [])

        await self._transaction(work)
        fault_point("after_record", "updates")

    def _observe_issued(self, batch: Effects, records: list[Any]) -> None:
        # One increment per label set: a batch issues hundreds of orders over a few dozen sets.
        for (department, level, role), count in Counter((o.department, o.level, o.role) for o in batch.issued).items():
            self.metrics.orders_issued.labels(department, str(level), role).inc(count)
        acknowledged = time.time()
        for record in records:
            self.metrics.latency.observe(max(0.0, acknowledged - record.timestamp / 1000))
