"""A graded dispute that fails alone after it was pinned: dead-lettered, its pin dropped, the others issued."""

import pytest
from sqlalchemy import func, select

import services.dispatch.cases
from services.dispatch.store import routing_pins
from services.runtime.poison import isolate_poison
from tests.support.pipelines import Record, dispatch_pipeline, failing_for
from tests.support.samples import TRIAGED, graded


@pytest.fixture
async def pipeline(database_url):
    processor, published, engine = await dispatch_pipeline(database_url)
    yield processor, published, engine
    await engine.dispose()


def graded_record(n: int) -> Record:
    """Return the n-th graded dispute's record, at offset n."""
    report = TRIAGED.report.model_copy(update={"dispute_id": f"d-{n}"})
    return Record("disputes.triaged", graded(report, f"tri-{n}", f"rep-{n}").to_bytes(), offset=n)


async def test_a_graded_dispute_failing_alone_is_dead_lettered_and_leaves_no_pin(pipeline, monkeypatch):
    processor, published, engine = pipeline
    failing = failing_for(services.dispatch.cases.dispatch, lambda triaged: triaged.dispute_id == "d-2")
    monkeypatch.setattr(services.dispatch.cases, "dispatch", failing)
    batch = [graded_record(n) for n in range(4)] + [Record("disputes.triaged", b"{}", offset=9)]
    await isolate_poison(batch, processor.on_triaged, published, "disputes.invalid", processor.metrics.invalid_triaged.inc, processor.forget_triaged, source="/fengqiao/dispatch")
    letters = sorted((o.header("dlq_source_offset"), o.header("dlq_reason").split(":")[0]) for o in published if o.topic == "disputes.invalid")
    assert letters == [("2", "unprocessable"), ("9", "event_id")]
    issued = {o.key for o in published if o.topic.startswith("workorders.") and o.topic != "workorders.events"}
    assert issued == {b"d-0", b"d-1", b"d-3"}
    async with engine.connect() as connection:
        assert (await connection.execute(select(func.count()).select_from(routing_pins))).scalar_one() == 0
