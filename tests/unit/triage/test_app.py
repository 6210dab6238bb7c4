"""The triage app is wired as its AsyncAPI document says, and building it connects to nothing."""

from prometheus_client import CollectorRegistry

from schemas.catalog import SERVICES
from schemas.rules import RULES_TRIAGE
from services.runtime.settings import KafkaSettings
from services.triage.app import create_app
from services.triage.settings import TriageSettings


def test_app_subscribes_to_the_documented_topics_without_connecting(tmp_path):
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="x.")
    app = create_app(TriageSettings(data_dir=tmp_path), kafka, registry=CollectorRegistry())
    [broker] = app.brokers
    topics = {getattr(topic, "name", topic) for sub in broker.subscribers for topic in sub.topics}
    documented = {kafka.topic(c.topic) for c in SERVICES["triage"].consumes}
    assert topics == documented | {kafka.topic(RULES_TRIAGE)}
    assert not list(tmp_path.iterdir()), "no database file before start"
