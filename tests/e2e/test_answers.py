"""A department hears about its own orders on its own topic, through the real broker: answers and cancellations."""

from schemas.workorders import DEPARTMENT_MESSAGE, WORKORDERS_UPDATES_INVALID, OrderCancelled, UpdateAnswered, work_order_topic
from tests.support.department import Department, report
from tests.support.processes import read_all


async def test_every_update_is_answered_and_a_new_attempt_cancels_the_open_orders(embedded_broker, kafka_settings, loop):
    bootstrap = embedded_broker.bootstrap_servers
    department = Department(bootstrap, kafka_settings)
    # An elderly complainant: civil affairs supports the police's lead from the first attempt.
    elderly = [{"role": "complainant", "kind": "person", "name": "王某", "phone": "13800000001", "age": 76, "vulnerable": ["elderly"]},
               {"role": "respondent", "kind": "person", "name": "李某"}]
    await report(bootstrap, kafka_settings, "D-answers", parties=elderly)
    lead = await department.wait_order("D-answers", "community_police", 1)
    await department.wait_order("D-answers", "civil_affairs", 1)
    others = [o for o in await department.orders("D-answers") if o.work_order_id != lead.work_order_id]

    async def answer_to(update) -> UpdateAnswered | None:
        # Read off the sender's own topic only, as its system (and its ACL) would: the answer must be there.
        records = await read_all(bootstrap, [kafka_settings.topic(work_order_topic(update.department))])
        answers = [m for m in (DEPARTMENT_MESSAGE.validate_json(r.value) for r in records) if isinstance(m, UpdateAnswered)]
        return next((a for a in answers if a.update_event_id == update.event_id), None)

    async def answered(status, order) -> UpdateAnswered:
        update = await department.update(order, status)
        await loop["dispatch"].wait_for(lambda: answer_to(update), 60)
        return await answer_to(update)

    # Applied: the order now has the status asked.
    accepted = await answered("accepted", lead)
    assert (accepted.outcome, accepted.order_status, accepted.work_order_id) == ("applied", "accepted", lead.work_order_id)

    # A failed mediation: applied, and triage grades the dispute again, so dispatch opens attempt 2 and cancels the rest.
    failed = await answered("mediation_failed", lead)
    assert (failed.outcome, failed.order_status) == ("applied", "mediation_failed")

    async def cancellations() -> list[OrderCancelled]:
        found = await department.notices("D-answers", OrderCancelled)
        return found if len(found) == len(others) else []

    await loop["dispatch"].wait_for(cancellations, 90)
    cancelled = {c.work_order_id: c for c in await cancellations()}
    assert set(cancelled) == {o.work_order_id for o in others}
    for order in others:
        notice = cancelled[order.work_order_id]
        assert (notice.department, notice.attempt, notice.next_attempt) == (order.department, 1, 2)
        if notice.reason == "superseded":
            successor = await department.wait_order("D-answers", order.department, 2)
            assert notice.replaced_by == successor.work_order_id

    # An update the department sent before it read the cancellation: answered superseded, not refused.
    late = await answered("accepted", others[0])
    assert (late.outcome, late.refusal, late.replaced_by) == ("superseded", None, cancelled[others[0].work_order_id].replaced_by)
    # A transition the lead's failed order cannot make: refused, naming the field.
    refused = await answered("resolved", lead)
    assert (refused.outcome, refused.refusal, refused.order_status) == ("refused", "illegal_transition", "mediation_failed")
    assert refused.reason.startswith("status: illegal_transition: ")

    # Nothing of it was left for the operators' dead letters: they keep what is malformed or unauthorised.
    records = await read_all(bootstrap, [kafka_settings.topic(WORKORDERS_UPDATES_INVALID)])
    assert [r for r in records if b"D-answers" in r.value] == []
