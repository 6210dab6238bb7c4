"""Dispatch's batch pipelines: graded disputes into orders, department updates into order changes.

Each batch runs in one database transaction: load state, decide, publish every output and await the
acknowledgements, write the effects with the processed ids, commit. The caller commits offsets after.
Outputs derive from the inputs and stored state only (times from the events, the routing table pinned in the
store), so a batch redelivered after publishing but before committing republishes the very same records.
"""

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, NamedTuple, TypeVar

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.catalog import UPDATES_CHANNEL, sender_departments
from schemas.common import Contract
from schemas.disputes import DISPUTES_INVALID, DISPUTES_REASSESS, DisputeReported, DisputeTriaged
from schemas.workorders import WORKORDERS_EVENTS, WORKORDERS_UPDATES_INVALID, UpdateAnswered, WorkOrderUpdate, work_order_topic
from services.dispatch.cases import cases_for, take_report
from services.dispatch.calendar import HolidayFile, WorkingCalendar, holidays_id, holidays_text, parse_holidays
from services.dispatch.disclosure import DisclosurePolicy
from services.dispatch.lifecycle import (
    UNSEEN,
    Effects,
    Order,
    Rejection,
    answer,
    apply_update,
    check_sender,
    check_update,
    content_hash,
    is_repeat,
    legacy_update_key,
    successor,
    update_key,
    update_time,
    waits_for_order,
)
from services.dispatch.metrics import DispatchMetrics
from services.dispatch.routing import RoutingTable, parse_pinned, pinned_text, routing_id
from services.dispatch.store import DispatchStore, ParkedUpdate, Pin
from services.runtime.clock import Clock
from services.runtime.deadletter import dead_letter, validated
from services.runtime.faults import fault_point
from services.runtime.kafka import Outgoing, encode_event
from services.runtime.poison import isolate_poison
from services.runtime.reload import Reloadable
from services.runtime.purge import purge_pages
from services.runtime.retry import Readiness, in_transaction
from services.runtime.settings import KafkaSettings
from services.runtime.store import written_beside

log = logging.getLogger(__name__)

T = TypeVar("T")

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


def _where(record: Any) -> tuple[str, int, int]:
    # Where a record was consumed: a parked update's identity, whatever its content.
    return record.topic, record.partition, record.offset


def _take(effects: Effects, disputes: dict, orders: dict, by_dispute: defaultdict[str, dict[str, Order]], batch: Effects) -> None:
    # Later events of the batch must see what earlier ones changed.
    disputes.update(effects.disputes)
    orders.update(effects.orders)
    for order in effects.orders.values():
        by_dispute[order.dispute_id][order.work_order_id] = order
    batch.merge(effects)


class Policies(NamedTuple):
    """A routing table and the disclosure policy pinned with it."""

    table: RoutingTable
    disclosure: DisclosurePolicy


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
        park_seconds: float = 600.0,
        *,
        disclosure: Reloadable[DisclosurePolicy],
    ):
        self.kafka = kafka
        # Each department's own updates topic on this cluster -> that department; the shared development topic is absent.
        self.senders = {kafka.topic(t): d for t, d in sender_departments(UPDATES_CHANNEL).items()}
        self.routing = routing
        # Swapped like the routing table, and pinned with it: an attempt discloses by the policy it was routed with.
        self.disclosure = disclosure
        self.calendar = calendar
        self.store = store
        self.publish = publish
        self.clock = clock
        self.metrics = metrics
        self.readiness = readiness
        self.max_message_bytes = max_message_bytes
        # How long an update waits for its order to become visible before it is refused as naming an unknown one.
        self.patience = timedelta(seconds=park_seconds)
        # The service's one writing lock: one transaction at a time, and none while SQLite's log is emptied.
        self.writing = writing
        # Routing tables, each with the disclosure policy pinned with it, and calendars, by id: the current ones,
        # and those pinned inputs or disputes still name.
        self._tables: dict[str, Policies] = {}
        self._current: tuple[Policies, str, str] | None = None
        self._calendars: dict[str, WorkingCalendar] = {}
        self._current_file: tuple[HolidayFile, str, str] | None = None

    async def _transaction(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        return await in_transaction(self.store.engine, work, self.readiness, self.metrics.store_retries.inc, self.writing)

    async def _publish_writing(self, outgoing: list[Outgoing], write: Callable[[], Awaitable[None]], inputs: str) -> None:
        """Publish a batch's outputs while `write` writes its effects into the open transaction, which commits after both."""
        # The write does not commit, so it need not wait for the acknowledgements `written_beside` hands it.
        async with written_beside(lambda _: write()):
            await self.publish(outgoing)
            fault_point("after_publish", inputs)

    def _outgoing(self, effects: Effects, reports: EncodedReports) -> list[Outgoing]:
        # Each record's ce_time is its event's own time: a header must repeat on redelivery like the value.
        # Notices first: a department reading its topic in order drops a cancelled order before it takes its successor.
        records = [encode_event(self.kafka.topic(work_order_topic(n.department)), n, n.event_id, CE_SOURCE, n.at) for n in effects.notices]
        records += [
            encode_event(self.kafka.topic(work_order_topic(o.department)), o, o.work_order_id, CE_SOURCE, o.issued_at) for o in effects.issued
        ]
        events = self.kafka.topic(WORKORDERS_EVENTS)
        records += [encode_event(events, e, e.event_id, CE_SOURCE, e.at, reports.value(e)) for e in effects.events]
        records += [encode_event(self.kafka.topic(DISPUTES_REASSESS), r, r.event_id, CE_SOURCE, r.requested_at) for r in effects.reassessments]
        return records

    def _current_routing(self) -> tuple[Policies, str, str]:
        """Return the table and disclosure policy in use with their id and text, naming them once per swap."""
        table, disclosure = self.routing.current, self.disclosure.current
        if self._current is None or self._current[0].table is not table or self._current[0].disclosure is not disclosure:
            text = pinned_text(table, disclosure)
            self._current = (Policies(table, disclosure), routing_id(table, text), text)
            self._tables[self._current[1]] = self._current[0]
        return self._current

    def _current_holidays(self) -> tuple[HolidayFile, str, str]:
        """Return the holidays file in use with its id and text, naming it once per swap."""
        holidays = self.calendar.file()
        if self._current_file is None or self._current_file[0] is not holidays:
            text = holidays_text(holidays)
            self._current_file = (holidays, holidays_id(holidays, text), text)
        return self._current_file

    async def _pin(self, keys: list[str]) -> dict[str, Pin]:
        """Pin inputs to the current routing table and holidays file in a transaction of its own, unless pinned before."""
        _, routing, text = self._current_routing()
        _, holidays, holidays_body = self._current_holidays()

        async def work(connection: AsyncConnection) -> dict[str, Pin]:
            # Committed before anything is published: a redelivery after a crash finds the table and file its first try used.
            return await self.store.pin_routing(connection, keys, (routing, text), (holidays, holidays_body), self.clock.now())

        return await self._transaction(work)

    async def _working_calendars(self, connection: AsyncConnection, ids: Iterable[str | None]) -> dict[str | None, WorkingCalendar]:
        """Return the calendars of these holidays ids; None, pinned before holidays were, gets the calendar in use."""
        _, current, _ = self._current_holidays()
        missing = sorted({i for i in ids if i is not None and i != current and i not in self._calendars})
        for found, text in (await self.store.load_holidays_texts(connection, missing)).items():
            self._calendars[found] = WorkingCalendar(parse_holidays(text), self.calendar.zone)
        return {None: self.calendar, current: self.calendar} | {i: self._calendars[i] for i in ids if i is not None and i != current}

    async def _routings(self, connection: AsyncConnection, ids: Iterable[str | None]) -> dict[str | None, Policies]:
        """Return the tables and policies of these ids; None, a dispute routed before pins existed, gets the current ones."""
        current = self._current_routing()[0]
        missing = sorted({i for i in ids if i is not None and i not in self._tables})
        for found, text in (await self.store.load_routing_texts(connection, missing)).items():
            self._tables[found] = Policies(*parse_pinned(text, current.disclosure))
        return {None: current} | {i: self._tables[i] for i in ids if i is not None}

    async def on_triaged(self, records: Sequence[Any]) -> None:
        """Issue the orders of a batch of graded disputes."""
        valid, dead = validated(
            records, DisputeTriaged.model_validate_json, self.kafka.topic(DISPUTES_INVALID), self.max_message_bytes, self.metrics.invalid_triaged.inc,
            source=CE_SOURCE,
        )

        keys = [f"triaged:{t.source_event_id}" for _, t in valid]
        pins = await self._pin(keys) if keys else {}

        async def work(connection: AsyncConnection) -> None:
            seen = await self.store.processed_ids(connection, keys)
            fresh, done = [], set(seen)
            for record, triaged in valid:
                key = f"triaged:{triaged.source_event_id}"
                if key not in done:
                    done.add(key)
                    fresh.append((record, triaged))
            self.metrics.duplicates.labels("triaged").inc(len(valid) - len(fresh))
            # A report may belong to a case under another id: the ids it names, and the cases those joined.
            asked = sorted({d for _, t in fresh for d in (t.dispute_id, *t.same_matter)})
            aliases = await self.store.load_aliases(connection, asked)
            dispute_ids = sorted({aliases.get(d, d) for d in asked})
            disputes = await self.store.load_disputes(connection, dispute_ids)
            orders = await self.store.load_orders(connection, dispute_ids, [])
            known_disputes, known_orders = set(disputes), set(orders)
            tables, batch = await self._routings(connection, [r for r, _ in pins.values()]), Effects()
            calendars = await self._working_calendars(connection, [h for _, h in pins.values()])
            by_dispute = _by_dispute(orders.values())
            for _, triaged in fresh:
                # Orders date from when triage graded the dispute: a redelivery must not move issued_at and due_at.
                routing, holidays = pins[f"triaged:{triaged.source_event_id}"]
                policies = tables[routing]
                own, matter = cases_for(triaged, aliases, disputes, by_dispute)
                effects = take_report(triaged, own, matter, policies.table, calendars[holidays], policies.disclosure, routing, holidays)
                _take(effects, disputes, orders, by_dispute, batch)
                aliases.update(effects.aliases)
            reports = EncodedReports()
            outgoing = self._outgoing(batch, reports) + dead
            processed = [f"triaged:{t.source_event_id}" for _, t in fresh]
            # processed_at is bookkeeping, never published: the clock is fine there.
            now = self.clock.now()
            await self._publish_writing(
                outgoing, lambda: self.store.write(connection, batch, known_disputes, known_orders, processed, now, reports), "triaged"
            )
            await self.store.unpin(connection, keys)
            self._observe_issued(batch, [r for r, _ in fresh])
            for (source, how, outcome), count in Counter((e.source, e.matched_by, e.outcome) for e in batch.events if e.kind == "reported_again").items():
                self.metrics.rereports.labels(source, how, outcome).inc(count)

        await self._transaction(work)
        fault_point("after_record", "triaged")

    async def forget_triaged(self, record: Any) -> None:
        """Drop the routing pin of a graded dispute dead-lettered after it was pinned: no redelivery will need it."""
        try:
            key = f"triaged:{DisputeTriaged.model_validate_json(record.value).source_event_id}"
        except ValidationError:
            return  # refused by the contract before anything was pinned
        await self._transaction(lambda connection: self.store.unpin(connection, [key]))

    async def on_updates(self, records: Sequence[Any]) -> None:
        """Apply a batch of department updates; park those whose order is not yet visible."""
        await self._updates(records, None)

    async def retry_parked(self) -> None:
        """Retry the parked updates: apply those whose order appeared, refuse those past their deadline.

        They run apart from any new batch, under poison isolation of their own: a parked update that fails for a
        reason other than an outage is dead-lettered alone and unparked, instead of failing every later batch.
        """
        parked = await self._transaction(self.store.load_parked)
        if parked:
            await isolate_poison(
                parked, self._retry, self.publish, self.kafka.topic(WORKORDERS_UPDATES_INVALID),
                self.metrics.rejected_updates.labels("unprocessable").inc, self._forget, source=CE_SOURCE,
            )

    async def _retry(self, parked: Sequence[ParkedUpdate]) -> None:
        await self._updates([], {_where(p) for p in parked})

    async def _forget(self, parked: ParkedUpdate) -> None:
        await self._transaction(lambda connection: self.store.unpark(connection, [parked]))

    async def _updates(self, records: Sequence[Any], retrying: set[tuple[str, int, int]] | None) -> None:
        # `retrying`: the places of the parked updates to retry, with no new record; None for a new batch.
        invalid_topic = self.kafka.topic(WORKORDERS_UPDATES_INVALID)
        valid, dead = validated(
            records, WorkOrderUpdate.model_validate_json, invalid_topic, self.max_message_bytes, self.metrics.rejected_updates.labels("invalid").inc,
            source=CE_SOURCE,
        )

        async def work(connection: AsyncConnection) -> None:
            # Parked updates are locked, so one instance at a time retries each, and retried in order of first sight.
            parked = await self.store.load_parked(connection)
            first_seen = {_where(p): p.first_seen for p in parked}
            retried = [p for p in parked if retrying is not None and _where(p) in retrying]
            revived, letters = validated(
                retried, WorkOrderUpdate.model_validate_json, invalid_topic, self.max_message_bytes, self.metrics.rejected_updates.labels("invalid").inc,
                source=CE_SOURCE,
            )
            # A record parked by a try whose offsets did not commit comes again: it keeps its first sight.
            inputs = revived + [(r, u) for r, u in valid if _where(r) not in first_seen]
            letters += dead
            hashes = await self.store.processed_hashes(connection, [k for _, u in inputs for k in (update_key(u), legacy_update_key(u))])
            dispute_ids = sorted({u.dispute_id for _, u in inputs})
            # Lock the disputes before reading their orders, else another instance's commit between the read and the
            # lock goes unseen. An order of another dispute than its update names is refused without its dispute.
            disputes = await self.store.load_disputes(connection, dispute_ids)
            orders = await self.store.load_orders(connection, dispute_ids, [u.work_order_id for _, u in inputs])
            known_disputes, known_orders = set(disputes), set(orders)
            tables, batch = await self._routings(connection, [d.routing_id for d in disputes.values()]), Effects()
            calendars = await self._working_calendars(connection, [d.holidays_id for d in disputes.values()])
            by_dispute = _by_dispute(orders.values())
            now, done, waiting = self.clock.now(), {}, []  # done: a dict keeps the order of first sight
            for record, update in inputs:
                try:
                    check_sender(update, self.senders.get(record.topic))
                except Rejection as impostor:
                    # Not recorded as processed: its id is the named department's, which must stay free for that department.
                    letters.append(self._refuse(record, impostor, invalid_topic))
                    continue
                key, content = update_key(update), content_hash(record.value)
                try:
                    repeat = is_repeat(done.get(key, hashes.get(key, hashes.get(legacy_update_key(update), UNSEEN))), content)
                except Rejection as conflict:
                    batch.notices.append(self._answer(update, content, conflict, orders, disputes, by_dispute))
                    continue
                if repeat:
                    self.metrics.duplicates.labels("updates").inc()
                    continue
                # The attempt's own table, policy and calendar decide, whatever was swapped in since it was routed.
                policies = tables[getattr(disputes.get(update.dispute_id), "routing_id", None)]
                try:
                    order = check_update(update, orders.get(update.work_order_id), policies.table)
                except Rejection as rejection:
                    if waits_for_order(rejection, first_seen.get(_where(record), now), now, self.patience):
                        waiting.append(record)
                        continue
                    done[key] = content
                    if rejection.unauthorised:
                        letters.append(self._refuse(record, rejection, invalid_topic))
                    else:
                        batch.notices.append(self._answer(update, content, rejection, orders, disputes, by_dispute))
                    continue
                done[key] = content
                dispute = disputes[order.dispute_id]
                siblings = [o for o in by_dispute[dispute.dispute_id].values() if o.attempt == dispute.attempt]
                effects = apply_update(
                    update, order, dispute, siblings, update_time(update, order), policies.table, calendars[dispute.holidays_id], policies.disclosure
                )
                _take(effects, disputes, orders, by_dispute, batch)
                batch.notices.append(self._answer(update, content, None, orders, disputes, by_dispute))
                self.metrics.updates.labels(update.status).inc()
            reports = EncodedReports()
            outgoing = self._outgoing(batch, reports) + letters
            await self._publish_writing(
                outgoing, lambda: self.store.write(connection, batch, known_disputes, known_orders, list(done), now, reports, done), "updates"
            )
            still = {_where(r) for r in waiting}
            await self.store.park(connection, [r for r in waiting if _where(r) not in first_seen], now)
            await self.store.unpark(connection, [p for p in retried if _where(p) not in still])
            for event in batch.events:
                if event.kind == "escalated":
                    self.metrics.escalations.labels(event.reason).inc()
            self._observe_issued(batch, [])

        await self._transaction(work)
        fault_point("after_record", "updates")

    async def purge(self, retention_days: int) -> int:
        """Erase the personal data of disputes settled `retention_days` ago (see DispatchStore.retained_page); return how many."""
        return await purge_pages(self._transaction, self.store, self.clock.now(), retention_days, self.metrics.erased_disputes.inc)

    def _answer(
        self, update: WorkOrderUpdate, content: str, rejection: Rejection | None, orders: dict[str, Order], disputes: dict, by_dispute: defaultdict
    ) -> UpdateAnswered:
        """Answer an update on its department's topic, with the order as it now stands if it is that department's."""
        order = orders.get(update.work_order_id)
        own = order if order is not None and order.department == update.department else None
        replaced_by = None
        if rejection is not None and rejection.reason == "superseded":
            replaced_by = successor(own, disputes.get(own.dispute_id), by_dispute[own.dispute_id].values())
        answered = answer(update, content, own, rejection, replaced_by)
        self.metrics.answers.labels(answered.outcome).inc()
        if answered.outcome == "refused":
            self.metrics.rejected_updates.labels(rejection.reason).inc()
        return answered

    def _refuse(self, record: Any, rejection: Rejection, invalid_topic: str) -> Any:
        self.metrics.rejected_updates.labels(rejection.reason).inc()
        return dead_letter(record, str(rejection), invalid_topic, source=CE_SOURCE)

    def _observe_issued(self, batch: Effects, records: list[Any]) -> None:
        # One increment per label set: a batch issues hundreds of orders over a few dozen sets.
        for (department, level, role), count in Counter((o.department, o.level, o.role) for o in batch.issued).items():
            self.metrics.orders_issued.labels(department, str(level), role).inc(count)
        for reason, count in Counter(n.reason for n in batch.notices if n.notice == "order_cancelled").items():
            self.metrics.cancelled_orders.labels(reason).inc(count)
        acknowledged = time.time()
        for record in records:
            self.metrics.latency.observe(max(0.0, acknowledged - record.timestamp / 1000))
