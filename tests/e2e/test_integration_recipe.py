"""The README's "Integrating a department" example, run verbatim as labor arbitration's system against real dispatch.

The example reads `workorders.labor_arbitration` from its first record, skips notices and accepts each order. Its
topics carry no prefix, as in production, so this test runs on a broker of its own rather than the session's (where
every test works under a prefix of its own).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.workorders import WORKORDERS_UPDATES_INVALID, updates_topic, work_order_topic
from services.runtime.embedded import EmbeddedBroker
from services.runtime.settings import KafkaSettings
from services.runtime.topics import contract_topics, ensure_topics
from tests.support.conditions import wait_for
from tests.support.department import Department, report
from tests.support.processes import read_all, services_env, start_service, wait_until_committed

README = Path(__file__).parents[2] / "README.md"
DEPARTMENT = "labor_arbitration"
GROUP = "dept-labor-arbitration"
DISPUTE = "D-recipe"
# Forty workers owed wages: level 3, so labor arbitration supports the joint consultation with an order of its own.
WAGE_DISPUTE = {"category": "labor_wage", "party_count": 40}
# librdkafka's first join waits about half its 45 s session timeout on the embedded broker.
JOINED_AND_APPLIED_SECONDS = 90
UNPREFIXED = KafkaSettings(bootstrap_servers=None, topic_prefix="")


def readme_example() -> str:
    """Return the python block of the README's "Integrating a department" section, exactly as it is shown there."""
    section = README.read_text().split("\n## Integrating a department\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^```python\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    assert block, "README.md: no python block under 'Integrating a department'"
    return block.group(1)


@pytest.fixture
async def unprefixed(tmp_path):
    """Triage and dispatch on a broker of their own, on the production topic names; yield its bootstrap address."""
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        await ensure_topics(UNPREFIXED, bootstrap, contract_topics(partitions=2))
        env = services_env(bootstrap, UNPREFIXED.topic_prefix, tmp_path, "triage", "dispatch")
        services = [start_service("triage", env, tmp_path), start_service("dispatch", env, tmp_path)]
        try:
            for service in services:
                await service.wait_ready()
            yield bootstrap
        finally:
            for service in services:
                assert service.stop() == 0, service.log_tail()


def start_example(bootstrap: str, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """Run the README's block as a script of its own, given only what the README names: KAFKA_BOOTSTRAP_SERVERS."""
    script, log = tmp_path / "labor_arbitration.py", tmp_path / "labor_arbitration.log"
    script.write_text(readme_example())
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(script)], env=os.environ | {"KAFKA_BOOTSTRAP_SERVERS": bootstrap},
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return process, log


async def test_the_readme_department_reads_its_topic_from_the_first_order_and_accepts_it(unprefixed, tmp_path):
    bootstrap = unprefixed
    department = Department(bootstrap, UNPREFIXED)
    await report(bootstrap, UNPREFIXED, DISPUTE, **WAGE_DISPUTE)
    order = await department.wait_order(DISPUTE, DEPARTMENT, 1)
    # Reported again through 110, the case sends its holders a CaseNotice: after the order, on the same partition.
    await report(bootstrap, UNPREFIXED, DISPUTE, event_id="evt-110", source="police_110", **WAGE_DISPUTE)

    async def noticed():
        return any(n.department == DEPARTMENT for n in await department.notices(DISPUTE))

    await wait_for(noticed, 60)

    # Started only now, the example finds the order only by reading its topic from the beginning.
    example, log = start_example(bootstrap, tmp_path)

    def still_running():
        if example.poll() is not None:
            raise AssertionError(f"the README example exited with {example.returncode}:\n{log.read_text(errors='replace')}")
        return True

    async def accepted():
        changes = [e.status for e in await department.events() if e.kind == "status_changed" and e.work_order_id == order.work_order_id]
        return still_running() and changes == ["accepted"]

    try:
        await wait_for(accepted, JOINED_AND_APPLIED_SECONDS)
        # Its group committed the whole topic, the notice included: skipped, not fatal (it is still running).
        await wait_until_committed(bootstrap, GROUP, [work_order_topic(DEPARTMENT)])
        assert still_running()
    finally:
        example.terminate()
        example.wait(10)

    sent = await read_all(bootstrap, [updates_topic(DEPARTMENT)])
    assert [r.key for r in sent] == [DISPUTE.encode()], "one update, keyed by its dispute"
    assert not await read_all(bootstrap, [WORKORDERS_UPDATES_INVALID]), "dispatch refused nothing"
