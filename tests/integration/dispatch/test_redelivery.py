"""A batch published but not committed, redelivered after the clock moved and the routing table, disclosure policy and holidays were swapped."""

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from schemas.workorders import WorkOrderIssued, WorkOrderUpdate
from services.dispatch.calendar import SHIPPED_HOLIDAYS
from services.dispatch.disclosure import DEFAULT_DISCLOSURE
from services.dispatch.routing import DEFAULT_ROUTING
from services.dispatch.store import orders, reports_taken
from tests.support.pipelines import DISPATCH_NOW as NOW
from tests.support.pipelines import Published, Record, dispatch_pipeline
from tests.support.samples import TRIAGED, graded


def edited(path, replacements: list[tuple[str, str]]) -> str:
    """Return a file's text with each of these passages, found exactly once, replaced."""
    text = path.read_text(encoding="utf-8")
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


# Another lead, another centre for returned orders, shorter deadlines: every output of the first try would change.
SWAPPED = edited(DEFAULT_ROUTING, [
    ('version: "2026.11.1"', 'version: "2026.12.1"'),
    ("joint_consultation: joint_consultation", "joint_consultation: mediation_room"),
    ("returned_to: governance_centre", "returned_to: justice_office"),
    ("  3: 15", "  3: 10"),
])
# Nine more days off right after NOW: every deadline of the first try would move.
NEW_YEAR = "      元旦: {first: 2026-01-01, last: 2026-01-03}"
MORE_HOLIDAYS = edited(SHIPPED_HOLIDAYS, [
    ('version: "2026.1"', 'version: "2026.2"'), (NEW_YEAR, NEW_YEAR + "\n      停工: {first: 2026-03-03, last: 2026-03-13}"),
])
# Leads see masked names and phones: every order and audit record of the first try would change.
SWAPPED_DISCLOSURE = edited(DEFAULT_DISCLOSURE, [
    ('version: "2026.12.1"', 'version: "2026.12.2"'), ("lead: {name: full, phone: full,", "lead: {name: masked, phone: masked,"),
])


def wire(published) -> list[tuple]:
    return [(o.topic, o.key, o.value, list(o.headers)) for o in published]


def lead_order(published) -> WorkOrderIssued:
    return published.orders("joint_consultation")[0]


def update(order: WorkOrderIssued, status: str) -> Record:
    body = WorkOrderUpdate(
        event_id=f"u-{status}", work_order_id=order.work_order_id, dispute_id=order.dispute_id, department=order.department,
        status=status, at=NOW,
    )
    return Record("workorders.updates", body.to_bytes())


def fail_after_next_publish(processor, published, error: Exception, first: list) -> None:
    """Make the next publish go out, keep what it published, move the clock three days, swap routing, disclosure and holidays
    and raise, before the batch's write commits."""
    publish = processor.publish

    async def failing(outgoing):
        processor.publish = publish
        await publish(outgoing)
        first.extend(published)
        processor.clock.advance(timedelta(days=3))
        assert processor.routing.offer(SWAPPED, "file")
        assert processor.disclosure.offer(SWAPPED_DISCLOSURE, "file")
        assert processor.calendar._source.offer(MORE_HOLIDAYS, "file")
        raise error

    processor.publish = failing


async def _triaged(processor, published) -> None:
    await processor.on_triaged([Record("disputes.triaged", TRIAGED.to_bytes())])


async def _returned(processor, published) -> None:
    await processor.on_updates([update(lead_order(published), "returned")])


async def _mediation_failed(processor, published) -> None:
    await processor.on_updates([update(lead_order(published), "mediation_failed")])


CRASH = RuntimeError("the process dies before the commit")  # the test redelivers, as Kafka does after a restart
OUTAGE = OperationalError("INSERT", {}, ConnectionResetError("store gone"))  # retried in place by the handler


@pytest.mark.parametrize("failure", [CRASH, OUTAGE], ids=["crash", "outage"])
@pytest.mark.parametrize(
    "setup, batch",
    [
        (None, _triaged),  # orders issued: issued_at, due_at, lead and ce_time must not follow the clock or the new table
        (_triaged, _returned),  # a returned lead: the status change's time, and no reroute to the new table's centre
        (_triaged, _mediation_failed),  # a failed mediation: the reassessment's time
    ],
    ids=["triaged", "returned", "mediation_failed"],
)
async def test_a_batch_redelivered_after_publishing_republishes_the_same_records(database_url, failure, setup, batch):
    processor, published, engine = await dispatch_pipeline(database_url)
    try:
        if setup is not None:
            await setup(processor, published)
        before = Published(published)
        published.clear()
        first: list = []
        fail_after_next_publish(processor, published, failure, first)
        if failure is CRASH:
            with pytest.raises(RuntimeError):
                await batch(processor, before)
            assert wire(published) == wire(first)
            await batch(processor, before)  # redelivered
        else:
            await batch(processor, before)
        assert first
        assert wire(published[len(first):]) == wire(first)
        # What was published is what dispatch recorded: no department holds an order dispatch does not know.
        async with engine.connect() as connection:
            stored = {row.work_order_id for row in await connection.execute(select(orders.c.work_order_id))}
        sent = {o.work_order_id for o in Published(before + first).orders()}
        assert sent <= stored
    finally:
        await engine.dispose()


async def test_a_new_attempt_is_routed_by_the_table_in_use(database_url):
    processor, published, engine = await dispatch_pipeline(database_url)
    try:
        await _triaged(processor, published)
        assert processor.routing.offer(SWAPPED, "file")
        assert processor.disclosure.offer(SWAPPED_DISCLOSURE, "file")
        again = TRIAGED.model_copy(
            update={"event_id": "tri-again", "source_event_id": "rea-again", "cause": "sla_breached", "triaged_at": NOW + timedelta(days=1)}
        )
        published.clear()
        await processor.on_triaged([Record("disputes.triaged", again.to_bytes())])
        leads = published.orders("mediation_room")
        assert [(o.attempt, o.role, o.issued_at) for o in leads] == [(2, "lead", again.triaged_at)]
        # ...and disclosed by the policy in use.
        assert [(o.disclosure, o.parties[0].name, o.parties[0].phone) for o in leads] == [("2026.12.2", "张**", "139****0002")]
    finally:
        await engine.dispose()


# The same dispute reported again through 110 under its own id, at the same grade: it joins its case.
BY_110 = graded(TRIAGED.report.model_copy(update={"event_id": "evt-110", "source": "police_110"}), "tri-110")


def _reports() -> list[Record]:
    return [Record("disputes.triaged", t.to_bytes(), offset=n) for n, t in enumerate((TRIAGED, BY_110))]


async def _twice_in_one_batch(processor, published) -> None:
    await processor.on_triaged(_reports() + _reports())


async def _again_after_the_commit(processor, published) -> None:
    await processor.on_triaged(_reports())
    await processor.on_triaged(_reports())


async def _again_after_a_crash_before_the_commit(processor, published) -> None:
    fail_after_next_publish(processor, published, CRASH, [])
    with pytest.raises(RuntimeError):
        await processor.on_triaged(_reports())
    await processor.on_triaged(_reports())


@pytest.mark.parametrize("deliver", [_twice_in_one_batch, _again_after_the_commit, _again_after_a_crash_before_the_commit])
async def test_a_redelivered_report_is_recorded_once(database_url, deliver):
    """Record each report taken once, however often its grading is delivered: reports received count reports, not deliveries."""
    processor, published, engine = await dispatch_pipeline(database_url)
    try:
        await deliver(processor, published)
        async with engine.connect() as connection:
            taken = reports_taken.c
            rows = (await connection.execute(select(taken.event_id, taken.case_id, taken.source, taken.outcome).order_by(taken.event_id))).all()
    finally:
        await engine.dispose()
    case = TRIAGED.dispute_id
    assert [tuple(row) for row in rows] == [(TRIAGED.source_event_id, case, TRIAGED.report.source, "new"), ("evt-110", case, "police_110", "joined")]
