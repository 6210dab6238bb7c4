"""Dispatch's retention on a real store: a settled dispute's personal data is erased after the retention, every figure kept."""

from datetime import timedelta

from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

from schemas.workorders import WorkOrderIssued, WorkOrderUpdate
from services.dispatch.store import MIGRATIONS, DispatchStore, disputes, orders
from services.runtime.store import create_engine
from tests.support.pipelines import DISPATCH_NOW as NOW
from tests.support.pipelines import Record, dispatch_pipeline
from tests.support.retention import found, marked_report, planted
from tests.support.samples import TRIAGED, graded

DAYS = 180
SETTLED = marked_report(TRIAGED.dispute_id, "41")
OPEN = marked_report("D-2026-0099", "42")


def triaged(report, source="evt-0002", event="tri-5f1c", at=TRIAGED.triaged_at) -> Record:
    """Return the graded-dispute record of this report, as triage published it."""
    return Record("disputes.triaged", graded(report, event, source, at).to_bytes())


def issued(published, dispute_id: str) -> list[WorkOrderIssued]:
    return [o for o in published.orders() if o.dispute_id == dispute_id]


def update(order: WorkOrderIssued, status: str, offset: int, event: str | None = None) -> Record:
    body = WorkOrderUpdate(
        event_id=event or f"u-{order.work_order_id}-{status}", work_order_id=order.work_order_id, dispute_id=order.dispute_id,
        department=order.department, status=status, at=NOW,
    )
    return Record("workorders.updates", body.to_bytes(), offset=offset)


async def figures(processor, engine) -> dict:
    """Every figure dispatch's store yields: the open-order gauge, each order, each dispute's grade and history."""
    async with engine.connect() as connection:
        order_rows = sorted(tuple(r) for r in await connection.execute(select(orders)))
        dispute_rows = sorted(
            tuple(r) for r in await connection.execute(
                select(disputes.c.dispute_id, disputes.c.attempt, disputes.c.level, disputes.c.urgency, disputes.c.history, disputes.c.routing_id,
                       disputes.c.holidays_id)
            )
        )
    return {"open": await processor.store.open_orders_by_department(), "orders": order_rows, "disputes": dispute_rows}


async def test_a_settled_dispute_is_erased_after_the_retention_and_every_figure_is_kept(database_url):
    processor, published, engine = await dispatch_pipeline(database_url)
    try:
        await processor.on_triaged([triaged(SETTLED), triaged(OPEN, source="evt-0099", event="tri-0099")])
        closing = [update(o, "resolved", n) for n, o in enumerate(issued(published, SETTLED.dispute_id))]
        await processor.on_updates(closing)
        assert await found(engine, SETTLED) == planted(SETTLED)
        before = await figures(processor, engine)
        assert before["open"]  # the open dispute's orders

        assert await processor.purge(DAYS) == 0  # found settled: the retention starts now
        processor.clock.advance(timedelta(days=DAYS) - timedelta(seconds=1))
        assert await processor.purge(DAYS) == 0
        assert await found(engine, SETTLED) == planted(SETTLED)
        processor.clock.advance(timedelta(seconds=1))
        assert await processor.purge(DAYS) == 1
        assert await processor.purge(DAYS) == 0  # erased once

        assert await found(engine, SETTLED) == set()
        assert await found(engine, OPEN) == planted(OPEN)  # still needed: untouched
        assert await figures(processor, engine) == before
        assert processor.metrics.erased_disputes._value.get() == 1

        # Redelivered inputs are duplicates; a new update of a closed order is refused before the report is read.
        settled_orders = issued(published, SETTLED.dispute_id)
        published.clear()
        await processor.on_triaged([triaged(SETTLED)])
        await processor.on_updates(closing + [update(settled_orders[0], "in_progress", 99, "u-late")])
        [refused] = published
        [answer] = published.answers("refused")
        assert refused.topic == "workorders.joint_consultation" and answer.refusal == "illegal_transition"
        assert not any(t.encode() in refused.value for t in planted(SETTLED))
        assert await found(engine, SETTLED) == set()
        assert await figures(processor, engine) == before

        # Reported again long after (past the routing file's reopening window): a new attempt brings the report back,
        # and the retention starts over.
        await processor.on_triaged([triaged(SETTLED, source="evt-0003", event="tri-0002", at=processor.clock.now())])
        assert await found(engine, SETTLED) == planted(SETTLED)
        assert {o.attempt for o in issued(published, SETTLED.dispute_id)} == {2}
        processor.clock.advance(timedelta(days=DAYS * 2))
        assert await processor.purge(DAYS) == 0  # its new orders are open
    finally:
        await engine.dispose()


def _upgrade_to(revision: str):
    def upgrade(connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return upgrade


async def _settled_before(database_url, revision):
    """Return an engine on a store migrated up to `revision` that holds the settled dispute."""
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_to(revision))
        await connection.execute(
            text("INSERT INTO dispatch_disputes (dispute_id, attempt, level, urgency, report, history) VALUES (:d, 1, 3, 'urgent', :r, '{}')"),
            {"d": SETTLED.dispute_id, "r": SETTLED.to_bytes().decode()},
        )
    return engine


async def test_disputes_stored_before_the_retention_migration_are_kept_and_then_settled(database_url):
    engine = await _settled_before(database_url, "0004")
    try:
        store = DispatchStore(engine)
        await store.migrate()
        async with engine.connect() as connection:
            [kept] = await store.retained_page(connection, "", 10)
            assert (kept.dispute_id, kept.needed, kept.settled_at) == (SETTLED.dispute_id, False, None)
            assert (await store.reports(connection, [SETTLED.dispute_id]))[SETTLED.dispute_id] == SETTLED
    finally:
        await engine.dispose()


async def test_cases_stored_before_reports_were_recorded_count_their_first_report(database_url):
    engine = await _settled_before(database_url, "0006")
    try:
        await DispatchStore(engine).migrate()
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT event_id, case_id, dispute_id, source, outcome FROM dispatch_reports"))).all()
    finally:
        await engine.dispose()
    key = SETTLED.dispute_id
    assert [tuple(r) for r in rows] == [(SETTLED.event_id, key, key, SETTLED.source, "new")]
