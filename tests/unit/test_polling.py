"""Only the report -> work order path polls the broker eagerly; inputs nobody waits on in real time let it gather records."""

from prometheus_client import CollectorRegistry

from services.dispatch.app import create_app as dispatch_app
from services.dispatch.settings import DispatchSettings
from services.followup.app import create_app as followup_app
from services.followup.settings import FollowupSettings
from services.runtime.settings import KafkaSettings, ServiceSettings
from services.triage.app import create_app as triage_app
from services.triage.settings import TriageSettings

EAGER, RELAXED = (10, 1), (200, 1024 * 1024)  # (fetch_max_wait_ms, fetch_min_bytes) with default settings

CASES = [
    (triage_app, TriageSettings, "disputes.reported", EAGER),
    (triage_app, TriageSettings, "disputes.reassess", EAGER),
    (dispatch_app, DispatchSettings, "disputes.triaged", EAGER),
    (dispatch_app, DispatchSettings, "workorders.updates", RELAXED),
    (followup_app, FollowupSettings, "workorders.events", RELAXED),
    (followup_app, FollowupSettings, "followups.results", RELAXED),
]


def test_each_input_polls_as_its_readers_need(tmp_path):
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    for create_app, settings, topic, expected in CASES:
        [broker] = create_app(settings(data_dir=tmp_path), kafka, registry=CollectorRegistry()).brokers
        [subscriber] = [s for s in broker.subscribers if topic in {getattr(t, "name", t) for t in s.topics}]
        options = subscriber._connection_args  # what the aiokafka consumer is built with
        assert (options["fetch_max_wait_ms"], options["fetch_min_bytes"]) == expected, topic
        assert options["fetch_max_bytes"] == ServiceSettings().fetch_max_bytes == 1024 * 1024, topic
