"""Follow-up's retention on a real store: a dispute closed with its revisits done is erased after the retention, every figure kept."""

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from schemas.followups import FOLLOWUP_MESSAGE, FollowupDue, FollowupResult, due_topic
from schemas.workorders import DisputeResolved, OrderStatusChanged
from services.followup.store import FollowupStore, disputes, orders, results, timers
from services.runtime.store import create_engine
from tests.support.pipelines import Record, followup_pipeline
from tests.support.retention import found, marked_report, planted
from tests.support.samples import ISSUED_AT as ISSUED
from tests.support.samples import order_issued

DAYS = 180
SETTLED = marked_report("D-2026-0002", "51")
OPEN = marked_report("D-2026-0077", "52")
# Figures are counted at one instant before and after: only erasure may differ between the two counts.
COUNTED_AT = ISSUED + timedelta(days=400)


@pytest.fixture
async def followup(database_url):
    processor, published, engine = await followup_pipeline(database_url, ISSUED)
    yield processor, processor.clock, published, engine
    await engine.dispose()


def issued(report, order):
    return order_issued(order=order, dispute=report.dispute_id).model_copy(update={"report": report})


def closing_events(report):
    closed = OrderStatusChanged(
        event_id="ev-wo-1-resolved", dispute_id=report.dispute_id, attempt=1, at=ISSUED + timedelta(days=1), work_order_id="wo-1",
        department="mediation_room", role="lead", previous_status="issued", status="resolved",
    )
    resolved = DisputeResolved(
        event_id="ev-resolved", dispute_id=report.dispute_id, attempt=1, at=ISSUED + timedelta(days=2),
        resolving_department="mediation_room", level=2, report=report,
    )
    return [closed, resolved]


def records(*events, offset=0):
    return [Record("workorders.events", e.to_bytes(), offset=offset + n) for n, e in enumerate(events)]


def answer(due: FollowupDue, event: str, **fields) -> Record:
    values = {"satisfaction": 4, "agreement_fulfilled": True, "rebound": False} | fields
    result = FollowupResult(event_id=event, followup_id=due.followup_id, dispute_id=due.dispute_id, at=due.fired_at, **values)
    return Record("followups.results", result.to_bytes())


async def figures(processor, engine) -> dict:
    """Every figure follow-up's store yields: the closure figures and each order's, timer's and result's row."""
    async with engine.connect() as connection:
        rows = {t.name: sorted(tuple(r) for r in await connection.execute(select(t))) for t in (orders, timers, results)}
        rows["disputes"] = sorted(tuple(r) for r in await connection.execute(select(disputes.c.dispute_id, disputes.c.attempt, disputes.c.level)))
    return {"closure": await processor.store.figures(COUNTED_AT), **rows}


async def fire_all(processor) -> None:
    while await processor.fire_due():
        pass


async def test_a_dispute_closed_with_its_revisits_done_is_erased_after_the_retention_and_every_figure_is_kept(followup):
    processor, clock, published, engine = followup
    await processor.on_events(records(issued(SETTLED, "wo-1"), *closing_events(SETTLED), issued(OPEN, "wo-9")))
    clock.advance(timedelta(days=40))  # both revisits (7 and 30 days) fire; the open order's deadline passes
    await fire_all(processor)
    first, second = [FollowupDue.model_validate_json(o.value) for o in published if o.topic == "followups.due" and b'"revisit"' in o.value]
    await processor.on_results([answer(first, "res-1")])  # the second revisit is never answered
    before = await figures(processor, engine)
    assert before["closure"]["results"] == 1 and before["closure"]["fired"]["revisit"] == 2

    assert await processor.purge() == 0  # found settled: the retention starts now
    clock.advance(timedelta(days=DAYS) - timedelta(seconds=1))
    assert await processor.purge() == 0
    assert await found(engine, SETTLED) == planted(SETTLED)
    clock.advance(timedelta(seconds=1))
    assert await processor.purge() == 1
    assert await processor.purge() == 0

    assert await found(engine, SETTLED) == set()
    assert await found(engine, OPEN) == planted(OPEN)  # its order is still open: untouched
    assert await figures(processor, engine) == before
    assert processor.metrics.erased_disputes._value.get() == 1

    # The unanswered revisit's result, late, is refused as expired and re-grades nothing; a redelivered event is a duplicate.
    published.clear()
    await processor.on_results([answer(second, "res-2", rebound=True)])
    await processor.on_events(records(issued(SETTLED, "wo-1"), *closing_events(SETTLED)))
    [refused] = published  # answered to the revisit's department, on its due topic
    told = FOLLOWUP_MESSAGE.validate_json(refused.value)
    assert (refused.topic, told.refusal, told.reason) == (
        due_topic(second.department), "expired", "followup_id: expired: this revisit's dispute was erased after its retention",
    )
    assert await found(engine, SETTLED) == set()
    assert await figures(processor, engine) == before


async def test_a_dispute_with_a_pending_revisit_is_never_erased(followup):
    processor, clock, published, engine = followup
    await processor.on_events(records(issued(SETTLED, "wo-1"), *closing_events(SETTLED)))
    clock.advance(timedelta(days=10))
    await fire_all(processor)  # the first revisit fired, the second pending
    for _ in range(3):
        assert await processor.purge() == 0
        clock.advance(timedelta(days=DAYS + 1))
        async with engine.connect() as connection:
            assert (await connection.execute(select(timers.c.state).where(timers.c.revisit_number == 2))).scalar() == "pending"
    assert await found(engine, SETTLED) == planted(SETTLED)


async def test_a_store_created_before_retention_gets_its_columns_and_keeps_its_disputes(database_url):
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(
                "CREATE TABLE followup_disputes (dispute_id VARCHAR(64) PRIMARY KEY, attempt INTEGER NOT NULL, level INTEGER NOT NULL, report TEXT NOT NULL)"
            ))
            await connection.execute(
                text("INSERT INTO followup_disputes VALUES (:d, 1, 2, :r)"), {"d": SETTLED.dispute_id, "r": SETTLED.model_dump_json()}
            )
        store = FollowupStore(engine)
        await store.create()
        await store.create()  # a second start finds the columns there
        async with engine.connect() as connection:
            [kept] = await store.retained_page(connection, "", 10)
            assert (kept.dispute_id, kept.needed, kept.settled_at) == (SETTLED.dispute_id, False, None)
            [dispute] = (await store.load_disputes(connection, [SETTLED.dispute_id])).values()
            assert (dispute.report, dispute.erased) == (SETTLED, False)
    finally:
        await engine.dispose()
