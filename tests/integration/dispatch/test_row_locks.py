"""Two dispatch instances on one PostgreSQL database applying updates to the same dispute at once."""

import asyncio

import pytest
from sqlalchemy import select, text

from schemas.workorders import WORK_ORDER_EVENT, WorkOrderIssued, WorkOrderUpdate
from services.dispatch.store import orders
from services.runtime.store import create_engine
from tests.support.pipelines import DISPATCH_NOW as NOW
from tests.support.pipelines import Published, Record, dispatch_pipeline
from tests.support.samples import TRIAGED

# An immediate dispute has two leads: the first-response police and the tier's lead.
IMMEDIATE = TRIAGED.model_copy(update={"urgency": "immediate"})


def update(order: WorkOrderIssued, status: str, event_id: str) -> Record:
    body = WorkOrderUpdate(
        event_id=event_id, work_order_id=order.work_order_id, dispute_id=order.dispute_id, department=order.department,
        status=status, at=NOW,
    )
    return Record("workorders.updates", body.to_bytes())


async def wait_for_a_lock_wait(engine) -> None:
    """Return once a session of this database waits on a lock: the second instance is queued behind the first."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
    for _ in range(500):
        async with engine.connect() as connection:
            if (await connection.execute(query)).scalar_one():
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the second instance never waited on the first one's lock")


@pytest.mark.parametrize(
    "triaged, first_update, second_update, statuses, transitions, refused, resolved",
    [
        # Each lead resolved by its department: whichever commits second sees both resolved and resolves the dispute.
        (IMMEDIATE, ("community_police", "resolved"), ("joint_consultation", "resolved"),
         {"community_police": "resolved", "joint_consultation": "resolved"},
         [("issued", "resolved"), ("issued", "resolved")], [], 1),
        # One order resolved and failed at once: resolved is final, so the second is refused.
        (TRIAGED, ("joint_consultation", "resolved"), ("joint_consultation", "mediation_failed"),
         {"joint_consultation": "resolved"}, [("issued", "resolved")], ["status: illegal_transition: resolved -> mediation_failed"], 1),
        # One order's progress split across the instances: the second change starts from the first.
        (TRIAGED, ("joint_consultation", "accepted"), ("joint_consultation", "in_progress"),
         {"joint_consultation": "in_progress"}, [("issued", "accepted"), ("accepted", "in_progress")], [], 0),
    ],
    ids=["two_leads_resolved", "resolved_and_failed", "accepted_then_in_progress"],
)
async def test_two_instances_apply_one_disputes_updates_once(
    empty_postgres_url, triaged, first_update, second_update, statuses, transitions, refused, resolved
):
    first, first_published, first_engine = await dispatch_pipeline(empty_postgres_url)
    second, second_published, second_engine = await dispatch_pipeline(empty_postgres_url)
    watcher = create_engine(empty_postgres_url)
    try:
        await first.on_triaged([Record("disputes.triaged", triaged.to_bytes())])
        by_department = {o.department: o for o in first_published.orders()}
        first_published.clear()
        holding, release = asyncio.Event(), asyncio.Event()
        publish = first.publish

        async def publish_held(outgoing):
            # The first instance has locked and read the dispute; it holds its transaction open until the second waits.
            holding.set()
            await release.wait()
            await publish(outgoing)

        first.publish = publish_held
        (a_department, a_status), (b_department, b_status) = first_update, second_update
        one = asyncio.create_task(first.on_updates([update(by_department[a_department], a_status, "u-first")]))
        await asyncio.wait_for(holding.wait(), 10)
        other = asyncio.create_task(second.on_updates([update(by_department[b_department], b_status, "u-second")]))
        await wait_for_a_lock_wait(watcher)
        release.set()
        await asyncio.gather(one, other)

        published = Published(first_published + second_published)
        events = [WORK_ORDER_EVENT.validate_json(r.value) for r in published if r.topic == "workorders.events"]
        assert [(e.previous_status, e.status) for e in events if e.kind == "status_changed"] == transitions
        # The late update is refused to its department on its own topic, naming the field.
        assert [a.reason for a in published.answers("refused")] == refused
        assert sum(e.kind == "dispute_resolved" for e in events) == resolved
        ids = {by_department[d].work_order_id: d for d in statuses}
        async with watcher.connect() as connection:
            rows = await connection.execute(select(orders.c.work_order_id, orders.c.status).where(orders.c.work_order_id.in_(ids)))
            assert {ids[row.work_order_id]: row.status for row in rows} == statuses
    finally:
        for engine in (first_engine, second_engine, watcher):
            await engine.dispose()
