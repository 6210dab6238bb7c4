"""The follow-up app is wired as its AsyncAPI document says, and building it connects to nothing."""

import pytest
from prometheus_client import CollectorRegistry

from schemas.catalog import DEVELOPMENT_TOPICS
from services.followup.app import create_app
from services.followup.settings import FollowupSettings
from services.runtime.settings import KafkaSettings
from tests.support.apps import documented, per_department, subscribed


def test_app_subscribes_to_the_documented_topics_without_connecting(tmp_path, monkeypatch):
    monkeypatch.setenv("FOLLOWUP_REVISIT_DAYS", "[7, 30, 90]")
    settings = FollowupSettings(data_dir=tmp_path)
    assert settings.revisit_days == [7, 30, 90]
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="x.")
    app = create_app(settings, kafka, registry=CollectorRegistry())
    [broker] = app.brokers
    assert subscribed(broker) == documented("followup", kafka)
    assert not list(tmp_path.iterdir()), "no database file before start"


# Production reads departments' input only from their own topics: the shared ones would let anyone speak for anyone.
@pytest.mark.parametrize("environment, shared_read", [("development", True), ("production", False)])
def test_shared_department_topics_are_read_only_in_development(tmp_path, monkeypatch, environment, shared_read):
    monkeypatch.setenv("FENGQIAO_ENV", environment)
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    [broker] = create_app(FollowupSettings(data_dir=tmp_path), kafka, registry=CollectorRegistry()).brokers
    topics = subscribed(broker)
    departments = per_department("followup")
    assert len(departments) == 20 and departments <= topics
    assert bool(set(DEVELOPMENT_TOPICS.values()) & topics) is shared_read
