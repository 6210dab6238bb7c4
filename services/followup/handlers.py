"""Follow-up's pipelines: dispatch events set and cancel timers, due timers fire, revisit results re-grade rebounds.

Each batch or round is one transaction: decode, drop repeats, load, decide (`timers.py`), publish and await the
acknowledgements, record the effects with the processed ids (`store.py`), commit.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from schemas.catalog import RESULTS_CHANNEL, sender_departments
from schemas.disputes import DISPUTES_REASSESS
from schemas.followups import FOLLOWUPS_RESULTS_INVALID, FollowupResult, ResultAnswered, due_topic
from schemas.workorders import WORK_ORDER_EVENT, WORKORDERS_EVENTS_INVALID
from services.dispatch.disclosure import load_disclosure
from services.followup.metrics import FollowupMetrics
from services.followup.settings import FollowupSettings
from services.followup.store import FollowupStore, Transaction
from services.followup.timers import (
    DueContext,
    Judged,
    Refusal,
    Round,
    Timer,
    due_records,
    event_effects,
    fire_round,
    judge_results,
    legacy_result_key,
    result_answer,
    result_department,
    result_key,
    split_senders,
)
from services.runtime.faults import fault_point
from services.runtime.clock import Clock
from services.runtime.deadletter import dead_letter, validated
from services.runtime.kafka import Outgoing, encode_event
from services.runtime.purge import purge_pages
from services.runtime.retry import Readiness, in_transaction, is_outage
from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)

CE_SOURCE = "/fengqiao/followup"
T = TypeVar("T")
Item = TypeVar("Item")


def _event_key(event: Any) -> str:
    return f"event:{event.event_id}"


def _breach_key(dispute_id: str, attempt: int) -> str:
    # Recorded once an attempt's breach re-graded it, so another instance or a later round does not again.
    return f"breach:{dispute_id}:{attempt}"


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
        # Read once at start: a re-fire after a crash repeats its fired_at anew anyway, and names the version it used.
        self.disclosure = load_disclosure(settings.disclosure_file)
        self.kafka = kafka
        # Each department's own results topic on this cluster -> that department; the shared development topic is absent.
        self.senders = {kafka.topic(t): d for t, d in sender_departments(RESULTS_CHANNEL).items()}
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

    async def _transaction(self, work: Callable[[Transaction], Awaitable[T]]) -> T:
        return await in_transaction(self.store.engine, work, self.readiness, self.metrics.store_retries.inc, self.writing)

    def _encode(self, topic: str, event: Any, event_id: str, now: datetime) -> Outgoing:
        return encode_event(self.kafka.topic(topic), event, event_id, CE_SOURCE, now)

    async def _fresh(
        self, connection: Transaction, items: Sequence[Item], key: Callable[[Item], str], legacy: Callable[[Item], str] | None = None
    ) -> list[Item]:
        """Keep the first sighting of each input not processed before, under its key or, when given, its legacy key."""
        keys = [(key(item), legacy(item) if legacy else None) for item in items]
        seen = await self.store.processed_ids(connection, [k for pair in keys for k in pair if k is not None])
        fresh: dict[str, Item] = {}
        for item, (current, old) in zip(items, keys):
            if current not in seen and old not in seen:
                fresh.setdefault(current, item)
        return list(fresh.values())

    async def on_events(self, records: Sequence[Any]) -> None:
        """Set and cancel timers from dispatch's audit trail."""
        parsed, dead = validated(
            records, WORK_ORDER_EVENT.validate_json, self.kafka.topic(WORKORDERS_EVENTS_INVALID), self.settings.max_message_bytes,
            self.metrics.invalid.labels("workorder_event").inc, source=CE_SOURCE,
        )
        events = [event for _, event in parsed]

        async def work(connection: Transaction) -> list[Timer]:
            fresh = await self._fresh(connection, events, _event_key)
            known = await self.store.dispute_attempts(connection, sorted({e.dispute_id for e in fresh if e.kind == "issued"}))
            effects = event_effects(fresh, known, self.settings.warning_fraction, self.settings.revisit_days)
            if dead:
                await self.publish(dead)
            fault_point("after_publish", "events")
            await self.store.write_events(connection, effects, set(known), [_event_key(e) for e in fresh], self.clock.now())
            return effects.timers

        self._wake_for(await self._transaction(work))
        fault_point("after_record", "events")

    def _wake_for(self, added: list[Timer]) -> None:
        # Waking the loop costs two transactions: only a timer due before its next look needs it.
        if added and (self.planned is None or min(t.due_at for t in added) < self.planned):
            self.wake.set()

    async def fire_due(self) -> int:
        """Fire every due timer once (catch-up included); return how many were due."""

        async def work(connection: Transaction) -> tuple[datetime, list[Timer], Round]:
            now = self.clock.now()
            due = await self.store.claim_due(connection, now, self.settings.fire_batch)
            if not due:
                return now, due, Round()
            decided = fire_round(due, await self._due_context(connection, due), now, self.disclosure)
            await self.publish(self._round_outgoing(decided, now))
            fault_point("after_publish", "timers")
            regraded = [_breach_key(d, a) for d, a in decided.regraded]
            await self.store.record_round(connection, [t.followup_id for t in decided.fired], decided.cancelled, regraded, now)
            return now, due, decided

        now, due, decided = await self._transaction(work)
        if due:
            fault_point("after_record", "timers")  # a round with nothing due is no batch
        for timer in decided.fired:
            self.metrics.timer_lag.observe((now - timer.due_at).total_seconds())
        return len(due)

    async def _due_context(self, connection: Transaction, due: list[Timer]) -> DueContext:
        """Load what deciding a round needs: open orders, disputes, and the attempts already re-graded or resolved."""
        disputes = await self.store.load_disputes(connection, sorted({t.dispute_id for t in due}))
        attempts = {(t.dispute_id, t.attempt) for t in due}
        regraded = await self.store.processed_ids(connection, [_breach_key(d, a) for d, a in attempts])
        return DueContext(
            open_orders=await self.store.open_orders(connection, [t.work_order_id for t in due if t.work_order_id]),
            disputes=disputes,
            regraded={(d, a) for d, a in attempts if _breach_key(d, a) in regraded},
            resolved=await self.store.resolved_attempts(connection, sorted(disputes)),
        )

    def _round_outgoing(self, decided: Round, now: datetime) -> list[Outgoing]:
        # Each due twice, under its followup id: to its department's own topic, and without parties to the shared feed.
        return [self._encode(topic, d, d.followup_id, now) for due in decided.dues for topic, d in due_records(due)] + [
            self._encode(DISPUTES_REASSESS, r, r.event_id, now) for r in decided.reassessments
        ]

    async def next_due(self) -> datetime | None:
        """Return when the next pending timer is due."""
        return await self._transaction(self.store.next_due)

    async def run_timers(self) -> None:
        """Fire due timers forever: at start (catch-up), when the next one is due, or when new ones arrive."""
        mark = "timers"  # named in /health/ready while rounds fail
        while True:
            self.wake.clear()
            self.planned = None
            try:
                while await _to_the_end(self.fire_due()) >= self.settings.fire_batch:
                    pass  # a full round: more may be due already
                upcoming = await self.next_due()
            except Exception as error:
                if not is_outage(error):
                    raise  # not the store's nor the broker's: the supervisor restarts the loop (services/runtime/supervise.py)
                # Nothing was recorded, so the same timers are claimed again next round and fire once the store and
                # the broker are back. Not ready until a round completes: timers cannot fire meanwhile.
                self.readiness.failing.add(mark)
                log.warning("timer round failed (%s); trying again", type(error).__name__)
                upcoming = None
            else:
                self.readiness.failing.discard(mark)
            self.planned = upcoming
            waits = [asyncio.ensure_future(self.wake.wait())]
            if upcoming is not None:
                waits.append(asyncio.ensure_future(self.clock.sleep_until(upcoming)))
            await asyncio.wait(waits, timeout=self.settings.max_tick_seconds, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()

    async def on_results(self, records: Sequence[Any]) -> None:
        """Record the first result of each fired revisit; a rebound or a broken agreement goes back to triage."""
        invalid_topic = self.kafka.topic(FOLLOWUPS_RESULTS_INVALID)
        valid, dead = validated(
            records, FollowupResult.model_validate_json, invalid_topic, self.settings.max_message_bytes, self.metrics.invalid.labels("result").inc,
            source=CE_SOURCE,
        )

        async def work(connection: Transaction) -> tuple[list[Refusal], list[ResultAnswered]]:
            now = self.clock.now()
            timers = await self.store.timers_by_id(connection, sorted({r.followup_id for _, r in valid}))
            # Impostors go first and are not recorded as processed: their event ids must stay free for the real sender.
            trusted, impostors = split_senders(valid, timers, lambda record: self.senders.get(record.topic))

            def key(pair: tuple[Any, FollowupResult]) -> str:
                return result_key(result_department(self.senders.get(pair[0].topic), timers.get(pair[1].followup_id)), pair[1].event_id)

            # Results processed before ids were scoped by department were recorded under the bare event id: not again.
            fresh = await self._fresh(connection, trusted, key, lambda pair: legacy_result_key(pair[1].event_id))
            revisits = sorted({r.followup_id for _, r in fresh})
            answered = await self.store.answered_revisits(connection, revisits)
            disputes = await self.store.load_disputes(connection, sorted({r.dispute_id for _, r in fresh}))
            judged = judge_results(fresh, timers, answered, disputes, now)
            answers, unanswerable = self._answers(judged, timers)
            # Impostors, and results of no known revisit on the shared topic (no sender to answer), are the operators'.
            refused = [dead_letter(record, why.reason, invalid_topic, source=CE_SOURCE) for record, why in impostors + unanswerable]
            # Each answer's time is the result's own: a redelivery republishes the same record.
            told = [encode_event(self.kafka.topic(due_topic(a.department)), a, a.event_id, CE_SOURCE, a.at) for a in answers]
            reassess = [self._encode(DISPUTES_REASSESS, r, r.event_id, now) for r in judged.reassessments]
            await self.publish(dead + refused + told + reassess)
            fault_point("after_publish", "results")
            await self.store.record_results(connection, judged.recorded, [key(pair) for pair in fresh], now)
            return [why for _, why in impostors + judged.refused], answers

        refusals, answers = await self._transaction(work)
        for why in refusals:
            self.metrics.invalid.labels(why.label).inc()
        for answer in answers:
            self.metrics.result_answers.labels(answer.outcome).inc()
        fault_point("after_record", "results")

    def _answers(self, judged: Judged, timers: dict[str, Timer]) -> tuple[list[ResultAnswered], list[tuple[Any, Any]]]:
        """Answer each judged result for its department's due topic; return the answers and the refused with no department."""
        answers, unanswerable = [], []
        for record, result, refused, reassessed in judged.verdicts:
            department = result_department(self.senders.get(record.topic), timers.get(result.followup_id))
            if department is None:
                unanswerable.append((record, refused))
            else:
                answers.append(result_answer(result, department, record.value, refused, reassessed))
        return answers, unanswerable

    async def purge(self) -> int:
        """Erase the personal data of disputes settled `retention_days` ago (see FollowupStore.retained_page); return how many."""
        days = self.settings.retention_days
        return await purge_pages(self._transaction, self.store, self.clock.now(), days, self.metrics.erased_disputes.inc)


async def _to_the_end(work: Awaitable[int]) -> int:
    """Await `work`; if the caller is cancelled meanwhile (shutdown), let it finish first.

    A round of fires cancelled between publishing and recording would fire again after a restart."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
