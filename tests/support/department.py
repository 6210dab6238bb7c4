"""A department's system and an upstream platform, as the end-to-end tests play them."""

import json
import uuid

from schemas.disputes import DISPUTES_REPORTED
from schemas.followups import FOLLOWUP_MESSAGE, FOLLOWUPS_RESULTS, FollowupResult, results_topic
from schemas.workorders import (
    DEPARTMENT_MESSAGE,
    DEPARTMENTS,
    CaseNotice,
    WORK_ORDER_EVENT,
    WORKORDERS_EVENTS,
    WORKORDERS_UPDATES,
    WorkOrderIssued,
    WorkOrderUpdate,
    updates_topic,
    work_order_topic,
)
from tests.support.conditions import wait_for
from tests.support.processes import produce, read_all
from tests.support.samples import at, report_payload


class Department:
    """A department system: reads the orders on its own topics, posts updates; over TLS when given a context."""

    def __init__(self, bootstrap, settings, tls=None):
        self.bootstrap = bootstrap
        self.settings = settings
        self.tls = tls
        self.sent = 0

    async def messages(self):
        """Read every department topic: orders and the notices about their cases."""
        topics = [self.settings.topic(work_order_topic(d)) for d in DEPARTMENTS]
        return [DEPARTMENT_MESSAGE.validate_json(r.value) for r in await read_all(self.bootstrap, topics, tls=self.tls)]

    async def orders(self, dispute_id=None):
        found = [m for m in await self.messages() if isinstance(m, WorkOrderIssued)]
        return [o for o in found if dispute_id in (None, o.dispute_id)]

    async def notices(self, dispute_id=None, kind=CaseNotice):
        """Return the notices of one kind (case notices by default) on the department topics, of a dispute or all."""
        found = [m for m in await self.messages() if isinstance(m, kind)]
        return [n for n in found if dispute_id in (None, n.dispute_id)]

    async def wait_order(self, dispute_id, department, attempt):
        async def present():
            return any(o.department == department and o.attempt == attempt for o in await self.orders(dispute_id))

        await wait_for(present, 60)
        return next(o for o in await self.orders(dispute_id) if o.department == department and o.attempt == attempt)

    async def update(self, order, status, department=None, topic=None, event_id=None):
        """Post an update naming `department` (the order's by default) on `topic` (that department's own by default)."""
        self.sent += 1
        body = WorkOrderUpdate(
            event_id=event_id or f"upd-{uuid.uuid4().hex[:12]}", work_order_id=order.work_order_id, dispute_id=order.dispute_id,
            department=department or order.department, status=status, note="调解未达成一致", at=at("2026-03-03T10:00:00+08:00"),
        )
        topic = self.settings.topic(topic or updates_topic(body.department))
        await produce(self.bootstrap, topic, [(order.dispute_id.encode(), body.to_bytes())], tls=self.tls)
        return body

    def updates_topics(self):
        """Name every topic dispatch reads updates from in development: each department's own and the shared one."""
        return [self.settings.topic(t) for t in (*(updates_topic(d) for d in DEPARTMENTS), WORKORDERS_UPDATES)]

    def results_topics(self):
        """Name every topic follow-up reads revisit results from in development: each department's own and the shared one."""
        return [self.settings.topic(t) for t in (*(results_topic(d) for d in DEPARTMENTS), FOLLOWUPS_RESULTS)]

    async def answer(self, due, department=None, topic=None, event_id=None, rebound=True):
        """Post a revisit result on `topic` (the department's own, the revisit's department by default)."""
        body = FollowupResult(
            event_id=event_id or f"res-{uuid.uuid4().hex[:12]}", followup_id=due.followup_id, dispute_id=due.dispute_id,
            satisfaction=2 if rebound else 5, agreement_fulfilled=not rebound, rebound=rebound, note="回访", at=due.fired_at,
        )
        topic = self.settings.topic(topic or results_topic(department or due.department))
        await produce(self.bootstrap, topic, [(due.dispute_id.encode(), body.to_bytes())], tls=self.tls)
        return body

    async def events(self):
        return [WORK_ORDER_EVENT.validate_json(r.value) for r in await read_all(self.bootstrap, [self.settings.topic(WORKORDERS_EVENTS)], tls=self.tls)]


async def followup_messages(bootstrap, settings, topics, tls=None):
    """Read follow-up's topics: dues, and on a department's own due topic the answers to its revisit results too."""
    return [FOLLOWUP_MESSAGE.validate_json(r.value) for r in await read_all(bootstrap, [settings.topic(t) for t in topics], tls=tls)]


async def report(bootstrap, settings, dispute_id, event_id=None, tls=None, **fields):
    payload = report_payload(event_id=event_id or f"evt-{dispute_id}", dispute_id=dispute_id, **fields)
    await produce(bootstrap, settings.topic(DISPUTES_REPORTED), [(dispute_id.encode(), json.dumps(payload).encode())], tls=tls)
