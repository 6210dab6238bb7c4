"""Each of dispatch and follow-up supervises an hourly purge loop whose pass runs on the service's own store."""

import pytest
from prometheus_client import CollectorRegistry

from services.dispatch import app as dispatch_app
from services.dispatch.settings import DispatchSettings
from services.followup import app as followup_app
from services.followup.settings import FollowupSettings
from services.runtime.clock import ManualClock
from services.runtime.settings import KafkaSettings
from tests.support.samples import ISSUED_AT

# (service, its app module, its settings, its erased-disputes counter)
SERVICES = [
    ("dispatch", dispatch_app, DispatchSettings, "fengqiao_dispatch_erased_disputes_total"),
    ("followup", followup_app, FollowupSettings, "fengqiao_followup_erased_disputes_total"),
]


@pytest.mark.parametrize("service, module, settings_type, counter", SERVICES, ids=[row[0] for row in SERVICES])
async def test_the_purge_loop_is_supervised_hourly_and_its_pass_runs_on_the_store(
    service, module, settings_type, counter, database_url, tmp_path, monkeypatch
):
    wired = {}

    def capture(parts, prepare, background):
        wired.update(parts=parts, prepare=prepare, background=background)

    monkeypatch.setattr(module, "service_app", capture)
    registry = CollectorRegistry()
    settings = settings_type(database_url=database_url, data_dir=tmp_path, retention_days=365)
    module.create_app(settings, KafkaSettings(bootstrap_servers="127.0.0.1:1"), ManualClock(ISSUED_AT), registry)
    try:
        loop = wired["background"]["purge"]
        seconds, purge, what = loop.args
        assert (loop.func.__name__, seconds, what) == ("every", 3600, "purge")
        await wired["prepare"]()
        await purge()  # an empty store: a pass that erases nothing
        assert registry.get_sample_value(counter) == 0
    finally:
        for engine in {wired["parts"].engine, wired["parts"].reader}:
            await engine.dispose()
