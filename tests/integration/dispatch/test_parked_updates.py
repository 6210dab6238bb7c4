"""Department updates that arrive before their order is visible, and event ids reused across or within departments."""

from datetime import timedelta

import pytest

import services.dispatch.handlers
from sqlalchemy import func, insert, select

from schemas.workorders import WORK_ORDER_EVENT, WorkOrderUpdate
from services.dispatch.routing import work_order_id
from services.dispatch.store import parked_updates, processed
from tests.support.pipelines import DISPATCH_NOW as NOW
from tests.support.pipelines import Record, dispatch_pipeline, failing_for
from tests.support.samples import TRIAGED

LEAD, SUPPORT = "joint_consultation", "labor_arbitration"  # TRIAGED's lead and one of its support departments
PARK = timedelta(seconds=600)  # DISPATCH_PARK_SECONDS' default


@pytest.fixture
async def pipeline(database_url):
    processor, published, engine = await dispatch_pipeline(database_url)
    yield processor, published, engine
    await engine.dispose()


def update(event: str, status: str, department: str = LEAD, offset: int = 0, note: str = "") -> Record:
    body = WorkOrderUpdate(
        event_id=event, work_order_id=work_order_id(TRIAGED.dispute_id, department, 1), dispute_id=TRIAGED.dispute_id,
        department=department, status=status, note=note, at=NOW,
    )
    return Record("workorders.updates", body.to_bytes(), offset=offset)


def changes(published) -> list[tuple[str, str]]:
    """Return the (department, status) of each status change published."""
    found = [WORK_ORDER_EVENT.validate_json(o.value) for o in published if o.topic == "workorders.events"]
    return [(e.department, e.status) for e in found if e.kind == "status_changed"]


def refused(published) -> list[str]:
    """Return the reasons of the updates refused: answered on the department's topic, or dead-lettered."""
    letters = [o.header("dlq_reason") for o in published if o.topic == "workorders.updates.invalid"]
    return [a.reason for a in published.answers("refused")] + letters


async def parked_count(engine) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(select(func.count()).select_from(parked_updates))).scalar_one()


async def _triaged(processor) -> None:
    await processor.on_triaged([Record("disputes.triaged", TRIAGED.to_bytes())])


async def _background(processor) -> None:
    await processor.retry_parked()


async def _next_batch(processor) -> None:
    # As the updates subscriber does: the parked first, in order of first sight, then the new batch.
    await processor.retry_parked()
    await processor.on_updates([update("u-3", "resolved", offset=3)])


@pytest.mark.parametrize(
    "retry, statuses",
    [
        (_background, ["accepted", "in_progress"]),  # no update arrives: the background loop applies them
        (_next_batch, ["accepted", "in_progress", "resolved"]),  # the next batch applies them first, in order of first sight
    ],
    ids=["background", "next_batch"],
)
async def test_an_update_consumed_before_its_order_commits_is_applied_once_the_order_exists(pipeline, retry, statuses):
    processor, published, engine = pipeline
    await processor.on_updates([update("u-1", "accepted", offset=1)])
    await processor.on_updates([update("u-2", "in_progress", offset=2)])
    assert refused(published) == [] and changes(published) == []
    assert await parked_count(engine) == 2
    await _triaged(processor)
    processor.clock.advance(timedelta(seconds=30))
    await retry(processor)
    await processor.retry_parked()  # nothing left to apply twice
    assert changes(published) == [(LEAD, s) for s in statuses]
    assert refused(published) == []
    assert await parked_count(engine) == 0


async def test_an_update_whose_order_never_appears_is_refused_after_the_park_deadline_and_not_before(pipeline):
    processor, published, engine = pipeline
    await processor.on_updates([update("u-1", "accepted", offset=7)])
    processor.clock.advance(PARK - timedelta(seconds=1))
    await processor.retry_parked()
    # u-1 redelivered (its offset not committed) keeps its first sight; u-2 is parked behind it, first seen later.
    await processor.on_updates([update("u-1", "accepted", offset=7), update("u-2", "in_progress", offset=8)])
    assert refused(published) == []
    processor.clock.advance(timedelta(seconds=1))
    await processor.retry_parked()
    # Refused to the department on its own topic, naming the field: no dead letter, the sender is who it says.
    [answer] = published.answers()
    assert (answer.update_event_id, answer.outcome, answer.refusal) == ("u-1", "refused", "unknown_work_order")
    assert answer.reason.startswith("work_order_id: unknown_work_order: ") and answer.order_status is None
    assert await parked_count(engine) == 1
    processor.clock.advance(PARK)
    await processor.retry_parked()
    assert [a.update_event_id for a in published.answers("refused")] == ["u-1", "u-2"]
    assert [o for o in published if o.topic == "workorders.updates.invalid"] == []
    assert await parked_count(engine) == 0 and changes(published) == []


async def _one_batch(processor, records) -> None:
    await processor.on_updates(records)


async def _one_by_one(processor, records) -> None:
    for record in records:
        await processor.on_updates([record])


@pytest.mark.parametrize("feed", [_one_batch, _one_by_one], ids=["one_batch", "one_by_one"])
@pytest.mark.parametrize(
    "second, applied, reasons",
    [
        # Event ids are the sender's: another department's id is no repeat of this one's.
        (update("u-1", "accepted", department=SUPPORT, offset=2), [(LEAD, "accepted"), (SUPPORT, "accepted")], []),
        (update("u-1", "accepted", offset=2), [(LEAD, "accepted")], []),  # the same update again: a silent duplicate
        (update("u-1", "accepted", offset=2, note="另一条"), [(LEAD, "accepted")], ["event_id: event_id_conflict: "]),
        (update("u-1", "in_progress", offset=2), [(LEAD, "accepted")], ["event_id: event_id_conflict: "]),
    ],
    ids=["other_department", "identical", "other_note", "other_status"],
)
async def test_a_repeated_event_id_is_applied_per_department_and_refused_when_its_content_differs(pipeline, feed, second, applied, reasons):
    processor, published, _ = pipeline
    await _triaged(processor)
    published.clear()
    await feed(processor, [update("u-1", "accepted", offset=1), second])
    assert changes(published) == applied
    assert [r[: len("event_id: event_id_conflict: ")] for r in refused(published)] == reasons
    counted = processor.metrics.rejected_updates.labels("event_id_conflict")._value.get()
    assert counted == len(reasons)
    await feed(processor, [update("u-1", "accepted", offset=1), second])  # redelivered: nothing new applied
    assert changes(published) == applied


async def test_an_update_processed_before_ids_were_scoped_by_department_is_not_applied_again(pipeline):
    processor, published, engine = pipeline
    await _triaged(processor)
    published.clear()
    async with engine.begin() as connection:  # as the previous version recorded it: no department, no hash
        await connection.execute(insert(processed).values(event_id="update:u-1", processed_at=NOW))
    await processor.on_updates([update("u-1", "accepted")])
    assert changes(published) == [] and refused(published) == []


async def test_a_parked_update_that_fails_when_retried_is_dead_lettered_alone_and_the_others_proceed(pipeline, monkeypatch):
    processor, published, engine = pipeline
    await processor.on_updates([update("u-1", "accepted", offset=1), update("u-2", "in_progress", offset=2)])
    await _triaged(processor)
    failing = failing_for(services.dispatch.handlers.apply_update, lambda update: update.event_id == "u-1")
    monkeypatch.setattr(services.dispatch.handlers, "apply_update", failing)
    await processor.retry_parked()
    assert [(r.header("dlq_reason"), r.header("dlq_source_offset")) for r in published if r.topic == "workorders.updates.invalid"] == [
        ("unprocessable: ValueError", "1")
    ]
    assert await parked_count(engine) == 0
    await processor.retry_parked()
    await processor.on_updates([update("u-3", "resolved", offset=3)])  # later batches are no longer failed by it
    assert refused(published) == ["unprocessable: ValueError"]
    assert changes(published) == [(LEAD, "in_progress"), (LEAD, "resolved")]
    assert processor.metrics.rejected_updates.labels("unprocessable")._value.get() == 1
