"""Each service's batch pipeline built in-process on a real store, with a recording publisher and a stopped clock."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry

from schemas.disputes import DisputeTriaged
from schemas.workorders import DEPARTMENT_MESSAGE, DEPARTMENTS, UpdateAnswered, WorkOrderIssued, work_order_topic
from services.dispatch.app import disclosure_holder, holidays_holder, routing_holder
from services.dispatch.calendar import SHIPPED_HOLIDAYS, WorkingCalendar
from services.dispatch.disclosure import DEFAULT_DISCLOSURE
from services.dispatch.handlers import DispatchProcessor
from services.dispatch.metrics import DispatchMetrics
from services.dispatch.routing import DEFAULT_ROUTING
from services.dispatch.store import DispatchStore
from services.followup.handlers import FollowupProcessor
from services.followup.metrics import FollowupMetrics
from services.followup.settings import FollowupSettings
from services.followup.store import FollowupStore
from services.runtime.clock import Clock, ManualClock
from services.runtime.retry import Readiness
from services.runtime.settings import KafkaSettings
from services.runtime.store import create_engine
from services.triage.app import rules_holder
from services.triage.handlers import TriageProcessor
from services.triage.metrics import TriageMetrics
from services.triage.ruleset import DEFAULT_RULES
from services.triage.settings import TriageSettings
from services.triage.store import TriageStore
from tests.support.samples import at

TRIAGE_NOW = at("2026-03-10T10:00:00+08:00")
DISPATCH_NOW = at("2026-03-02T10:00:00+08:00")


@dataclass
class Record:
    """The fields of an aiokafka ConsumerRecord the pipeline reads."""

    topic: str
    value: bytes
    key: bytes = b"k"
    partition: int = 0
    offset: int = 0
    timestamp: int = 0


class Published(list):
    """A publisher that keeps what it is given."""

    async def __call__(self, outgoing):
        self.extend(outgoing)

    def triaged(self):
        """Return the triaged events published."""
        return [DisputeTriaged.model_validate_json(o.value) for o in self if o.topic == "disputes.triaged"]

    def dead(self):
        """Return the dead letters of triage."""
        return [o for o in self if o.topic == "disputes.invalid"]

    def orders(self, department: str | None = None) -> list[WorkOrderIssued]:
        """Return the work orders dispatch issued on the departments' own topics (of one department, or all)."""
        return [m for m in self._department_messages(department) if isinstance(m, WorkOrderIssued)]

    def _department_messages(self, department: str | None = None) -> list:
        topics = {work_order_topic(d) for d in DEPARTMENTS if department in (None, d)}
        return [DEPARTMENT_MESSAGE.validate_json(o.value) for o in self if o.topic in topics]

    def notices(self, kind: str) -> list:
        """Return the notices of one kind dispatch published on the departments' own topics, in order."""
        return [m for m in self._department_messages() if getattr(m, "notice", None) == kind]

    def answers(self, outcome: str | None = None) -> list[UpdateAnswered]:
        """Return dispatch's answers to department updates, of one outcome or all."""
        return [a for a in self.notices("update_answered") if outcome in (None, a.outcome)]


async def _parts(database_url: str, store_type: type, prepare: str, metrics_type: type) -> tuple:
    """Create a service's store on a fresh engine and prepare its schema; add fresh metrics and a recording publisher."""
    engine = create_engine(database_url)
    store = store_type(engine)
    await getattr(store, prepare)()
    return engine, store, metrics_type(CollectorRegistry()), Published()


async def triage_pipeline(database_url: str, max_message_bytes: int = 64 * 1024, now: datetime = TRIAGE_NOW):
    """Build the triage pipeline on a created store, a recording publisher and a clock stopped at `now`."""
    engine, store, metrics, published = await _parts(database_url, TriageStore, "create", TriageMetrics)
    processor = TriageProcessor(
        TriageSettings(hmac_key="k" * 32, max_message_bytes=max_message_bytes),
        KafkaSettings(),
        rules_holder(DEFAULT_RULES.read_text(encoding="utf-8"), metrics),
        store,
        published,
        ManualClock(now),
        metrics,
        Readiness(),
        asyncio.Lock(),
    )
    return processor, published, engine


async def dispatch_pipeline(database_url: str, now: datetime = DISPATCH_NOW):
    """Build the dispatch pipelines on a migrated store, a recording publisher and a clock stopped at `now`."""
    engine, store, metrics, published = await _parts(database_url, DispatchStore, "migrate", DispatchMetrics)
    processor = DispatchProcessor(
        KafkaSettings(), routing_holder(DEFAULT_ROUTING.read_text(encoding="utf-8"), metrics),
        WorkingCalendar(holidays_holder(SHIPPED_HOLIDAYS.read_text(encoding="utf-8"), metrics)),
        store, published, ManualClock(now), metrics, Readiness(), asyncio.Lock(),
        disclosure=disclosure_holder(DEFAULT_DISCLOSURE.read_text(encoding="utf-8"), metrics),
    )
    return processor, published, engine


def followup_processor(engine, clock: Clock, published: Published) -> FollowupProcessor:
    """Build follow-up's processor on an engine whose store exists."""
    return FollowupProcessor(
        FollowupSettings(), KafkaSettings(), FollowupStore(engine), published, clock, FollowupMetrics(CollectorRegistry()), Readiness(),
        asyncio.Lock(),
    )


async def followup_pipeline(database_url: str, now: datetime):
    """Build follow-up's pipelines on a created store, a recording publisher and a clock stopped at `now`."""
    engine = create_engine(database_url)
    await FollowupStore(engine).create()
    published = Published()
    return followup_processor(engine, ManualClock(now), published), published, engine


def failing_for(decide, refused) -> Callable:
    """Wrap a decision so that it raises, as a bug meeting an odd input would, for the inputs `refused` picks."""

    def decision(given, *args):
        if refused(given):
            raise ValueError("a bug meeting this input")  # what only a later layer refuses: neither outage nor contract
        return decide(given, *args)

    return decision
