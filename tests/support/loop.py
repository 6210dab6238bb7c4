"""The whole loop as processes for end-to-end tests: triage, dispatch and follow-up on one fast simulated clock."""

from datetime import datetime, timezone

import pytest

from tests.support.processes import services_env, start_service

# One simulated day every two real seconds, from a Monday morning in Beijing: revisits come due within seconds.
SPEED = 43200
# One simulated day every ten real seconds, for tests whose department must answer before the deadline: the lead's
# three working days then last at least 30 s. At two seconds a day a resolution sent 15 s after the order found
# it superseded by the breach's re-grading (measured), and slow CI runs come that close.
ANSWERING_SPEED = 8640
START = "2026-03-02T09:00:00+08:00"
SERVICES = ("triage", "dispatch", "followup")


@pytest.fixture
async def loop(request, embedded_broker, kafka_settings, contract_topics_created, tmp_path):
    """Start triage, dispatch and follow-up on the test's topics and one simulated clock; revisits at days 1 and 3.

    A test sets another clock speed by parametrizing `loop` indirectly.
    """
    env = services_env(embedded_broker.bootstrap_servers, kafka_settings.topic_prefix, tmp_path, *SERVICES) | {
        "FENGQIAO_CLOCK_SPEED": str(getattr(request, "param", SPEED)),
        "FENGQIAO_CLOCK_EPOCH": datetime.now(timezone.utc).isoformat(),
        "FENGQIAO_CLOCK_START": START,
        "FOLLOWUP_REVISIT_DAYS": "[1, 3]",
    }
    services = {name: start_service(name, env, tmp_path) for name in SERVICES}
    services["env"] = env
    try:
        for name in SERVICES:
            await services[name].wait_ready()
        yield services
    finally:
        for name in reversed(SERVICES):
            assert services[name].stop() == 0, services[name].log_tail()
