"""Follow-up's timer loop through a broker outage on a real store: not ready while rounds fail, then every due timer fires once."""

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from aiokafka.errors import KafkaTimeoutError

from schemas.followups import FollowupDue
from services.followup.store import FollowupStore
from services.runtime import retry
from services.runtime.clock import ManualClock
from services.runtime.settings import RetrySettings
from services.runtime.store import create_engine
from tests.support.conditions import wait_for
from tests.support.pipelines import Published, Record
from tests.support.pipelines import followup_processor as processor_on
from tests.support.samples import ISSUED_AT as ISSUED
from tests.support.samples import order_issued as issued


class Outage(Published):
    """A publisher that fails as aiokafka's producer does while the broker is away, and keeps what it sends otherwise."""

    def __init__(self):
        super().__init__()
        self.down = asyncio.Event()
        self.refused = 0

    async def __call__(self, outgoing):
        if self.down.is_set():
            self.refused += 1
            raise KafkaTimeoutError()
        await super().__call__(outgoing)


@pytest.fixture
async def timers(tmp_path, monkeypatch):
    # Whether or not the store's retries also wait out a broker error, one quick try each: the round is what is tested.
    monkeypatch.setattr(retry, "retry_settings", lambda: RetrySettings(attempts=1))
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'followup.db'}")
    await FollowupStore(engine).create()
    clock, published = ManualClock(ISSUED), Outage()
    processor = processor_on(engine, clock, published)
    processor.settings = processor.settings.model_copy(update={"max_tick_seconds": 0.05})
    loop = asyncio.create_task(processor.run_timers())
    yield processor, clock, published, loop
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    await engine.dispose()


async def test_timers_due_during_a_broker_outage_keep_the_service_not_ready_and_fire_once_it_is_back(timers):
    processor, clock, published, loop = timers
    await processor.on_events([Record("workorders.events", issued(f"wo-{n}", dispute=f"D-{n}").to_bytes(), offset=n) for n in range(3)])
    published.down.set()
    clock.advance(timedelta(days=30))  # every warning and breach comes due while the broker is away
    processor.wake.set()

    async def refused_twice() -> bool:
        return published.refused >= 2

    await processor_wait(loop, refused_twice)
    assert "timers" in processor.readiness.failing and not loop.done(), "the loop goes on, reported not ready"
    assert published == []

    published.down.clear()

    async def all_fired() -> bool:
        return len(fired(published)) >= 6

    await processor_wait(loop, all_fired)
    await processor_wait(loop, lambda: _ready(processor))
    assert Counter(fired(published)).most_common(1)[0][1] == 1, "each timer fired once"
    assert Counter(d.kind for d in due(published)) == {"sla_warning": 3, "sla_breached": 3}


async def processor_wait(loop: asyncio.Task, condition) -> None:
    """Wait for `condition`, showing the loop's own error if it ended instead."""

    async def met() -> bool:
        if loop.done():
            raise AssertionError(f"the timer loop ended: {loop.exception()!r}")
        return await condition()

    await wait_for(met, 10)


def due(published) -> list[FollowupDue]:
    return [FollowupDue.model_validate_json(o.value) for o in published if o.topic == "followups.due"]


def fired(published) -> list[str]:
    return [d.followup_id for d in due(published)]


async def _ready(processor) -> bool:
    return processor.readiness.ready


async def test_a_round_failing_for_another_reason_ends_the_loop_for_the_supervisor_to_restart(timers):
    processor, clock, published, loop = timers

    async def broken(outgoing):
        raise ValueError("a bug, not an outage")

    processor.publish = broken
    await processor.on_events([Record("workorders.events", issued("wo-1").to_bytes(), offset=0)])
    clock.advance(timedelta(days=30))
    processor.wake.set()
    with pytest.raises(ValueError):
        await asyncio.wait_for(loop, 10)
