"""Follow-up's timer loop outlives a broker outage of a minute: timers that come due while the broker is away make the
service not ready, and fire once each when it is back, in the same process."""

import asyncio
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

from schemas.followups import FOLLOWUPS_DUE, FollowupDue
from schemas.workorders import WORKORDERS_EVENTS, OrderIssued
from services.runtime.embedded import EmbeddedBroker, free_port
from services.runtime.topics import contract_topics, ensure_topics
from tests.support.db_proxy import TcpProxy
from tests.support.processes import ServiceProcess, produce, read_all, start_service
from tests.support.samples import order_issued

# A publish to a stopped broker fails after this long instead of aiokafka's 40 s.
PUBLISH_TIMEOUT_MS = 2000
# From feeding the orders to their deadlines: enough to see their warnings out before the broker stops.
LEAD = timedelta(seconds=8)
ORDERS = 10
# The broker stays away this long: past aiokafka's request and metadata timeouts and many failed rounds of the loop.
BROKER_AWAY = timedelta(seconds=60)


def order(name: str, issued_at: datetime, due_at: datetime) -> bytes:
    """Encode an order issued and due at the given instants (its warning is due at 80 % of the way)."""
    fields = order_issued(f"wo-{name}", dispute=f"D-{name}").model_dump() | {"at": issued_at, "issued_at": issued_at, "due_at": due_at}
    return OrderIssued.model_validate(fields).to_bytes()


async def ready_answer(service: ServiceProcess) -> tuple[int, str]:
    """GET /health/ready, waiting out the broker check's own 2 s when the broker is away."""

    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{service.http_port}/health/ready", timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    return await asyncio.to_thread(get)


async def test_timers_due_while_the_broker_is_away_fire_once_it_is_back_without_a_restart(kafka_settings, tmp_path):
    # The broker is taken away behind a proxy, not stopped: it comes back with its topics, as a real one does.
    # A restarted embedded broker comes back empty and acknowledges records for a topic not created yet, which
    # are not in it once it is created. Under load the round in flight when it returned was published in that
    # window, before the test had made the topics again: recorded as fired, its breaches were never seen, and
    # the loop, with nothing left due, had nothing to log.
    port = free_port()
    proxy = TcpProxy("127.0.0.1", port)
    broker = EmbeddedBroker(port=port, advertised_port=proxy.port)  # every client, the test's too, goes through the proxy
    broker.start()
    await proxy.start()
    bootstrap = f"127.0.0.1:{proxy.port}"
    # One partition: a round's fires travel in one record batch, sent or refused whole, so a round cut by the
    # broker's return cannot leave half its fires out to be published again.
    topics = contract_topics(1)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "FOLLOWUP_GROUP_ID": f"followup-{uuid.uuid4().hex[:8]}",
        "FOLLOWUP_PUBLISH_TIMEOUT_MS": str(PUBLISH_TIMEOUT_MS),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'followup.db'}",
    }
    events, due_topic = kafka_settings.topic(WORKORDERS_EVENTS), kafka_settings.topic(FOLLOWUPS_DUE)

    async def fired(kind: str) -> Counter:
        records = await read_all(bootstrap, [due_topic])
        return Counter(d.followup_id for d in map(FollowupDue.model_validate_json, (r.value for r in records)) if d.kind == kind)

    service = None
    try:
        await ensure_topics(kafka_settings, bootstrap, topics)
        service = start_service("followup", env, tmp_path)
        await service.wait_ready()
        pid = service.process.pid
        now = datetime.now(timezone.utc)
        # A probe whose warning is due at once: seen out, the service is consuming (its breach is hours away).
        await produce(bootstrap, events, [(b"D-probe", order("probe", now - timedelta(hours=10), now + timedelta(hours=1)))])
        await service.wait_for(lambda: _count(fired("sla_warning"), 1), 60)

        now = datetime.now(timezone.utc)
        deadline = now + LEAD
        # Issued an hour ago: their warnings are due at once, their breaches at the deadline.
        await produce(bootstrap, events, [(f"D-{n}".encode(), order(str(n), now - timedelta(hours=1), deadline)) for n in range(ORDERS)])
        await service.wait_for(lambda: _count(fired("sla_warning"), ORDERS + 1), 30)
        assert datetime.now(timezone.utc) < deadline - timedelta(seconds=1), "too slow to stop the broker before the deadlines"
        assert not await fired("sla_breached")
        await proxy.stop()
        stopped = datetime.now(timezone.utc)

        async def timers_not_ready() -> bool:
            status, body = await ready_answer(service)
            return status == 503 and "timers" in body

        # After the deadline, a round's publish fails: the loop goes on, reported not ready.
        await service.wait_for(timers_not_ready, LEAD.total_seconds() + 30)
        assert datetime.now(timezone.utc) > deadline

        async def away_long_enough() -> bool:
            # Checked at every poll until the broker has been away a minute: alive, the same process, not ready.
            assert service.process.poll() is None and await timers_not_ready(), service.log_tail()
            return datetime.now(timezone.utc) - stopped >= BROKER_AWAY

        await service.wait_for(away_long_enough, BROKER_AWAY.total_seconds() + 30)

        await proxy.start()  # the same address, the same broker: its topics and what was read before are there
        await service.wait_for(lambda: _count(fired("sla_breached"), ORDERS), 60)  # a rejoin under a loaded machine
        await service.wait_ready(30)
        assert service.process.poll() is None and service.process.pid == pid, "the same process fired them"
        breaches = await fired("sla_breached")
        assert len(breaches) == ORDERS and set(breaches.values()) == {1}, "each timer fired once"
    finally:
        if service is not None:
            assert await asyncio.to_thread(service.stop) == 0, service.log_tail()
        await proxy.stop()
        broker.stop()


async def _count(counting, at_least: int) -> bool:
    return sum((await counting).values()) >= at_least
