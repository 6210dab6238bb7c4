"""The follow-up app is wired as its AsyncAPI document says, and building it connects to nothing."""

from prometheus_client import CollectorRegistry

from schemas.catalog import SERVICES
from services.followup.app import create_app
from services.followup.settings import FollowupSettings
from services.runtime.settings import KafkaSettings


def test_app_subscribes_to_the_documented_topics_without_connecting(tmp_path, monkeypatch):
    monkeypatch.setenv("FOLLOWUP_REVISIT_DAYS", "[7, 30, 90]")
    settings = FollowupSettings(data_dir=tmp_path)
    assert settings.revisit_days == [7, 30, 90]
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="x.")
    app = create_app(settings, kafka, registry=CollectorRegistry())
    [broker] = app.brokers
    topics = {getattr(t, "name", t) for sub in broker.subscribers for t in sub.topics}
    assert topics == {kafka.topic(c.topic) for c in SERVICES["followup"].consumes}
    assert not list(tmp_path.iterdir()), "no database file before start"
