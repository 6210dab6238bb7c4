"""The dispatch app is wired as its AsyncAPI document says, and building it connects to nothing."""

from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

import pytest

from schemas.catalog import DEVELOPMENT_TOPICS
from services.cli import app as cli
from services.dispatch.app import create_app
from services.dispatch.routing import DEFAULT_ROUTING
from services.dispatch.settings import DispatchSettings
from services.runtime.settings import KafkaSettings
from tests.support.apps import documented, per_department, subscribed


def test_app_subscribes_to_the_documented_topics_without_connecting(tmp_path):
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="x.")
    app = create_app(DispatchSettings(data_dir=tmp_path), kafka, registry=CollectorRegistry())
    [broker] = app.brokers
    assert subscribed(broker) == documented("dispatch", kafka)
    assert not list(tmp_path.iterdir()), "no database file before start"


# Production reads departments' input only from their own topics: the shared ones would let anyone speak for anyone.
@pytest.mark.parametrize("environment, shared_read", [("development", True), ("production", False)])
def test_shared_department_topics_are_read_only_in_development(tmp_path, monkeypatch, environment, shared_read):
    monkeypatch.setenv("FENGQIAO_ENV", environment)
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    [broker] = create_app(DispatchSettings(data_dir=tmp_path), kafka, registry=CollectorRegistry()).brokers
    topics = subscribed(broker)
    departments = per_department("dispatch")
    assert len(departments) == 20 and departments <= topics
    assert bool(set(DEVELOPMENT_TOPICS.values()) & topics) is shared_read


def test_routing_check_command(tmp_path):
    runner = CliRunner()
    assert "routing 2026.11.1 is valid" in runner.invoke(cli, ["routing", "check", str(DEFAULT_ROUTING)]).output
    broken = tmp_path / "routing.yaml"
    broken.write_text(DEFAULT_ROUTING.read_text(encoding="utf-8").replace("returned_to: governance_centre", "returned_to: nobody"))
    result = runner.invoke(cli, ["routing", "check", str(broken)])
    assert result.exit_code == 1 and "returned_to: Input should be" in result.output
