"""Every department update is answered on the department's own topic, and a new attempt cancels the open orders."""

from datetime import timedelta

import pytest

from schemas.workorders import WorkOrderUpdate, updates_topic
from services.dispatch.routing import work_order_id
from tests.support.pipelines import DISPATCH_NOW as NOW
from tests.support.pipelines import Record, dispatch_pipeline
from tests.support.samples import TRIAGED

LEAD, SUPPORT, CENTRE, CIVIL = "joint_consultation", "labor_arbitration", "governance_centre", "civil_affairs"  # TRIAGED's orders
CASE = TRIAGED.dispute_id


@pytest.fixture
async def pipeline(database_url):
    processor, published, engine = await dispatch_pipeline(database_url)
    await processor.on_triaged([Record("disputes.triaged", TRIAGED.to_bytes())])
    published.clear()
    yield processor, published
    await engine.dispose()


def update(department, status, event, order_of=None, dispute=CASE, note="") -> tuple:
    """An update `department` sends on its own topic about the attempt-1 order of `order_of` (its own by default)."""
    return ("update", department, WorkOrderUpdate(
        event_id=event, work_order_id=work_order_id(CASE, order_of or department, 1), dispute_id=dispute,
        department=department, status=status, note=note, at=NOW + timedelta(hours=1),
    ))


REASSESSED = ("reassessed", None, TRIAGED.model_copy(update={
    "event_id": "tri-breach", "source_event_id": "rea-breach", "cause": "sla_breached", "triaged_at": NOW + timedelta(days=1),
}))


async def feed(processor, steps) -> None:
    for offset, (kind, department, body) in enumerate(steps):
        if kind == "update":
            await processor.on_updates([Record(updates_topic(department), body.to_bytes(), offset=offset)])
        else:
            await processor.on_triaged([Record("disputes.triaged", body.to_bytes(), offset=offset)])


# (case, what the departments and triage send, the answers: (update, outcome, refusal, the order's status, its successor))
CASES = [
    ("an applied update is answered with the order's new status",
     [update(LEAD, "accepted", "u1")], [("u1", "applied", None, "accepted", None)]),
    ("a transition the order cannot make is refused, naming the field",
     [update(LEAD, "resolved", "u1"), update(LEAD, "accepted", "u2")],
     [("u1", "applied", None, "resolved", None), ("u2", "refused", "illegal_transition", "resolved", None)]),
    ("an update for another dispute than its order's is refused",
     [update(LEAD, "accepted", "u1", dispute="D-other")], [("u1", "refused", "dispute_mismatch", "issued", None)]),
    ("a resend of an answered update changes nothing and is not answered again",
     [update(LEAD, "accepted", "u1"), update(LEAD, "accepted", "u1")], [("u1", "applied", None, "accepted", None)]),
    ("an event id reused with other content is refused",
     [update(LEAD, "accepted", "u1"), update(LEAD, "in_progress", "u1")],
     [("u1", "applied", None, "accepted", None), ("u1", "refused", "event_id_conflict", "accepted", None)]),
    ("an update to an order superseded meanwhile is answered superseded, naming its successor",
     [REASSESSED, update(SUPPORT, "accepted", "u1")], [("u1", "superseded", None, "superseded", work_order_id(CASE, SUPPORT, 2))]),
    ("an update about another department's order is dead-lettered, never answered",
     [update(SUPPORT, "accepted", "u1", order_of=LEAD)], []),
]


@pytest.mark.parametrize("case, steps, expected", CASES, ids=[c[0] for c in CASES])
async def test_each_update_is_answered_on_its_departments_topic(pipeline, case, steps, expected):
    processor, published = pipeline
    await feed(processor, steps)
    answers = published.answers()
    assert [(a.update_event_id, a.outcome, a.refusal, a.order_status, a.replaced_by) for a in answers] == expected
    assert all(a.reason.split(":")[0] in ("work_order_id", "status", "dispute_id", "event_id") for a in answers if a.outcome != "applied")
    # Each answer is on the topic of the department that sent the update, and only there.
    departments = {o.topic.removeprefix("workorders.") for o in published if b'"update_answered"' in o.value}
    assert departments == {a.department for a in answers}
    letters = [o.header("dlq_reason") for o in published if o.topic == "workorders.updates.invalid"]
    assert letters == ([] if expected else ["department: department_mismatch: not the department of this order"])
    first = {o.value for o in published}
    published.clear()
    await feed(processor, steps)  # redelivered: nothing new; a reused id not recorded as processed repeats its answer's bytes
    assert published.orders() == [] and {o.value for o in published} <= first
    assert len(published.answers()) == sum(r[2] == "event_id_conflict" for r in expected)


async def test_a_new_attempt_cancels_every_open_order_naming_the_departments_new_order(pipeline):
    processor, published = pipeline
    await feed(processor, [update(LEAD, "accepted", "u1")])
    published.clear()
    await feed(processor, [REASSESSED])
    cancelled = published.notices("order_cancelled")
    assert sorted((c.department, c.work_order_id, c.reason, c.replaced_by, c.next_attempt) for c in cancelled) == sorted(
        (d, work_order_id(CASE, d, 1), "superseded", work_order_id(CASE, d, 2), 2) for d in (LEAD, SUPPORT, CENTRE, CIVIL)
    )
    # Each on its own department's topic, before the new order there: a system reading in order drops, then takes.
    for department in (LEAD, SUPPORT, CENTRE, CIVIL):
        mine = [o.value for o in published if o.topic == f"workorders.{department}"]
        assert [b'"order_cancelled"' in v for v in mine] == [True, False]
    assert processor.metrics.cancelled_orders.labels("superseded")._value.get() == 4
