"""Follow-up's pipelines: dispatch events set and cancel timers, due timers fire, revisit results re-grade rebounds."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.disputes import DISPUTES_REASSESS
from schemas.followups import FOLLOWUPS_DUE, FOLLOWUPS_RESULTS_INVALID, FollowupResult
from schemas.workorders import WORK_ORDER_EVENT, WORKORDERS_EVENTS_INVALID
from services.followup.metrics import FollowupMetrics
from services.followup.settings import FollowupSettings
from services.followup.store import FollowupStore, disputes, orders, resolutions, results, timers
from services.followup.timers import Timer, breach_reassessment, due_message, rebound_reassessment, revisit_timers, sla_timers
from services.runtime.clock import Clock
from services.runtime.deadletter import dead_letter, validated
from services.runtime.kafka import Outgoing, encode_event
from services.runtime.retry import TRANSIENT, Readiness, in_transaction
from services.runtime.settings import KafkaSettings
from services.runtime.store import insert_ignoring_duplicates, utc

log = logging.getLogger(__name__)

CE_SOURCE = "/fengqiao/followup"
CLOSING = {"resolved": "resolved", "mediation_failed": "closed", "returned": "closed", "superseded": "closed"}


class FollowupProcessor:
    """Runs the three pipelines; each batch or round is one transaction, published before it commits."""

    def __init__(
        self,
        settings: FollowupSettings,
        kafka: KafkaSettings,
        store: FollowupStore,
        publish: Callable[[list[Outgoing]], Awaitable[None]],
        clock: Clock,
        metrics: FollowupMetrics,
        readiness: Readiness,
        writing: asyncio.Lock,
    ):
        self.settings = settings
        self.kafka = kafka
        self.store = store
        self.publish = publish
        self.clock = clock
        self.metrics = metrics
        self.readiness = readiness
        self.wake = asyncio.Event()
        # When the timer loop will look next; None while it decides or when nothing is pending.
        self.planned: datetime | None = None
        # One transaction at a time in a process (on SQLite a second writer would only fail and retry), and
        # none while SQLite's log is emptied: the service's one writing lock.
        self.writing = writing

    async def _transaction(self, work: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
        return await in_transaction(self.store.engine, work, self.readiness, self.metrics.store_retries.inc, self.writing)

    def _encode(self, topic: str, event: Any, event_id: str, now: datetime) -> Outgoing:
        return encode_event(self.kafka.topic(topic), event, event_id, CE_SOURCE, now)

    async def on_events(self, records: Sequence[Any]) -> None:
        """Set and cancel timers from dispatch's audit trail."""
        parsed, dead = validated(
            records, WORK_ORDER_EVENT.validate_json, self.kafka.topic(WORKORDERS_EVENTS_INVALID), self.settings.max_message_bytes,
            self.metrics.invalid.labels("workorder_event").inc,
        )
        valid = [event for _, event in parsed]

        async def work(connection: AsyncConnection) -> list[Timer]:
            seen = await self.store.processed_ids(connection, [f"event:{e.event_id}" for e in valid])
            fresh: dict[str, Any] = {}
            for event in valid:
                if f"event:{event.event_id}" not in seen:
                    fresh.setdefault(event.event_id, event)
            added = await self._apply(connection, list(fresh.values()))
            await self.store.mark_processed(connection, [f"event:{e}" for e in fresh], self.clock.now())
            if dead:
                await self.publish(dead)
            return added

        added = await self._transaction(work)
        # Waking the loop costs two transactions: only a timer due before its next look needs it.
        if added and (self.planned is None or min(t.due_at for t in added) < self.planned):
            self.wake.set()

    async def _apply(self, connection: AsyncConnection, events: list[Any]) -> list[Timer]:
        """Apply a batch of events with a handful of bulk statements, in the order that keeps their meaning; return the timers set."""
        issued = [e for e in events if e.kind == "issued"]
        closing = [e for e in events if e.kind == "status_changed" and e.status in CLOSING]
        resolved = [e for e in events if e.kind == "dispute_resolved"]
        await insert_ignoring_duplicates(connection, orders, [{
            "work_order_id": e.work_order_id, "dispute_id": e.dispute_id, "department": e.department,
            "role": e.role, "attempt": e.attempt, "status": "open", "due_at": utc(e.due_at),
        } for e in issued])
        added = [t for e in issued for t in sla_timers(e, self.settings.warning_fraction)]
        await self.store.add_timers(connection, added)
        await self._remember_disputes(connection, issued)
        if closing:
            await connection.execute(
                update(orders).where(orders.c.work_order_id == bindparam("key")).values(status=bindparam("status")),
                [{"key": e.work_order_id, "status": CLOSING[e.status]} for e in closing],
            )
            await self.store.cancel(connection, timers.c.work_order_id.in_([e.work_order_id for e in closing]))
        if resolved:
            await insert_ignoring_duplicates(connection, resolutions, [{
                "event_id": e.event_id, "dispute_id": e.dispute_id, "attempt": e.attempt,
                "department": e.resolving_department, "failed_mediations": e.report.history.failed_mediations,
            } for e in resolved])
            revisits = [
                t for e in resolved
                for t in revisit_timers(e.dispute_id, e.attempt, e.resolving_department, e.at, self.settings.revisit_days)
            ]
            await self.store.add_timers(connection, revisits)
            added += revisits
        # A new attempt means the dispute was reported or reassessed again: earlier revisits are moot.
        newest: dict[str, int] = {}
        for event in issued:
            newest[event.dispute_id] = max(event.attempt, newest.get(event.dispute_id, 0))
        for dispute_id, attempt in newest.items():
            if attempt > 1:
                await self.store.cancel(connection, timers.c.dispute_id == dispute_id, timers.c.kind == "revisit", timers.c.attempt < attempt)
        return added

    async def _remember_disputes(self, connection: AsyncConnection, issued: list[Any]) -> None:
        """Keep each dispute's newest attempt, level and report, for reassessments and revisits."""
        latest: dict[str, Any] = {}
        for event in issued:
            if event.dispute_id not in latest or event.attempt >= latest[event.dispute_id].attempt:
                latest[event.dispute_id] = event
        known = await self.store.load_disputes(connection, sorted(latest))
        rows = [
            {"key": e.dispute_id, "attempt": e.attempt, "level": e.level, "report": e.report.model_dump_json()}
            for e in latest.values()
            if e.dispute_id not in known or e.attempt >= known[e.dispute_id][0]
        ]
        changed = [r for r in rows if r["key"] in known]
        if changed:
            await connection.execute(
                update(disputes).where(disputes.c.dispute_id == bindparam("key"))
                .values(attempt=bindparam("attempt"), level=bindparam("level"), report=bindparam("report")),
                changed,
            )
        new = [{"dispute_id": r["key"], "attempt": r["attempt"], "level": r["level"], "report": r["report"]} for r in rows if r["key"] not in known]
        await insert_ignoring_duplicates(connection, disputes, new)

    async def fire_due(self) -> int:
        """Fire every due timer once (catch-up included); return how many fired."""

        async def work(connection: AsyncConnection) -> int:
            now = self.clock.now()
            due = await self.store.claim_due(connection, now, self.settings.fire_batch)
            if not due:
                return 0
            open_orders = await self.store.open_orders(connection, [t.work_order_id for t in due if t.work_order_id])
            known = await self.store.load_disputes(connection, sorted({t.dispute_id for t in due}))
            reassessed = await self.store.processed_ids(connection, [f"breach:{t.dispute_id}:{t.attempt}" for t in due])
            # A support order left open after its dispute was resolved is reported, but re-grades nothing.
            reassessed |= {f"breach:{d}:{a}" for d, a in await self.store.resolved_attempts(connection, sorted(known))}
            outgoing, fired, cancelled = [], [], []
            for timer in due:
                if (timer.work_order_id and timer.work_order_id not in open_orders) or timer.dispute_id not in known:
                    cancelled.append(timer.followup_id)  # the order closed in time: nothing to say
                    continue
                _, level, report = known[timer.dispute_id]
                outgoing.append(self._encode(FOLLOWUPS_DUE, due_message(timer, report, now), timer.followup_id, now))
                fired.append(timer)
                key = f"breach:{timer.dispute_id}:{timer.attempt}"
                if timer.kind == "sla_breached" and timer.regrades and key not in reassessed:
                    reassessed.add(key)
                    request = breach_reassessment(timer, report, level, now)
                    outgoing.append(self._encode(DISPUTES_REASSESS, request, request.event_id, now))
                    await self.store.mark_processed(connection, [key], now)
            await self.publish(outgoing)
            ids = [t.followup_id for t in fired]
            if ids:
                await connection.execute(update(timers).where(timers.c.followup_id.in_(ids)).values(state="fired", fired_at=utc(now)))
            if cancelled:
                await connection.execute(update(timers).where(timers.c.followup_id.in_(cancelled)).values(state="cancelled"))
            for timer in fired:
                self.metrics.timer_lag.observe((now - timer.due_at).total_seconds())
            return len(due)

        return await self._transaction(work)

    async def next_due(self) -> datetime | None:
        """Return when the next pending timer is due."""

        async def work(connection: AsyncConnection) -> datetime | None:
            return await self.store.next_due(connection)

        return await self._transaction(work)

    async def run_timers(self) -> None:
        """Fire due timers forever: at start (catch-up), when the next one is due, or when new ones arrive."""
        while True:
            self.wake.clear()
            self.planned = None
            try:
                while await _to_the_end(self.fire_due()) >= self.settings.fire_batch:
                    pass  # a full round: more may be due already
                upcoming = await self.next_due()
            except TRANSIENT as error:
                log.warning("timer round failed (%s); trying again", type(error).__name__)
                upcoming = None
            self.planned = upcoming
            waits = [asyncio.ensure_future(self.wake.wait())]
            if upcoming is not None:
                waits.append(asyncio.ensure_future(self.clock.sleep_until(upcoming)))
            await asyncio.wait(waits, timeout=self.settings.max_tick_seconds, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()

    async def on_results(self, records: Sequence[Any]) -> None:
        """Record revisit results; a rebound or a broken agreement goes back to triage."""
        invalid_topic = self.kafka.topic(FOLLOWUPS_RESULTS_INVALID)
        valid, dead = validated(
            records, FollowupResult.model_validate_json, invalid_topic, self.settings.max_message_bytes, self.metrics.invalid.labels("result").inc
        )

        async def work(connection: AsyncConnection) -> None:
            now = self.clock.now()
            seen = await self.store.processed_ids(connection, [f"result:{r.event_id}" for _, r in valid])
            known_timers = await self.store.timers_by_id(connection, [r.followup_id for _, r in valid])
            known = await self.store.load_disputes(connection, sorted({r.dispute_id for _, r in valid}))
            outgoing, done = list(dead), []
            for record, result in valid:
                key = f"result:{result.event_id}"
                if key in seen or key in done:
                    continue
                done.append(key)
                timer = known_timers.get(result.followup_id)
                reason = _refusal(result, timer)
                if reason:
                    self.metrics.invalid.labels(reason).inc()
                    outgoing.append(dead_letter(record, _REFUSALS[reason], invalid_topic))
                    continue
                await insert_ignoring_duplicates(connection, results, [{
                    "event_id": result.event_id, "followup_id": result.followup_id, "satisfaction": result.satisfaction,
                    "flared_up": result.rebound or not result.agreement_fulfilled,
                }])
                _, level, report = known[result.dispute_id]
                request = rebound_reassessment(result, report, level, now)
                if request is not None:
                    outgoing.append(self._encode(DISPUTES_REASSESS, request, request.event_id, now))
            await self.publish(outgoing)
            await self.store.mark_processed(connection, done, now)

        await self._transaction(work)


async def _to_the_end(work: Awaitable[int]) -> int:
    """Await `work`; if the caller is cancelled meanwhile (shutdown), let it finish first.

    A round of fires cancelled between publishing and recording would fire again after a restart."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


_REFUSALS = {
    "unknown_followup": "followup_id: unknown_followup: no timer has this id",
    "dispute_mismatch": "dispute_id: dispute_mismatch: not the dispute of this follow-up",
    "not_a_revisit": "followup_id: not_a_revisit: only revisits take results",
}


def _refusal(result: FollowupResult, timer: Any) -> str | None:
    if timer is None:
        return "unknown_followup"
    if timer.dispute_id != result.dispute_id:
        return "dispute_mismatch"
    if timer.kind != "revisit":
        return "not_a_revisit"
    return None
