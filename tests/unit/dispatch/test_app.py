"""The dispatch app is wired as its AsyncAPI document says, and building it connects to nothing."""

from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from schemas.catalog import SERVICES
from services.cli import app as cli
from services.dispatch.app import create_app
from services.dispatch.routing import DEFAULT_ROUTING
from services.dispatch.settings import DispatchSettings
from services.runtime.settings import KafkaSettings


def test_app_subscribes_to_the_documented_topics_without_connecting(tmp_path):
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="x.")
    app = create_app(DispatchSettings(data_dir=tmp_path), kafka, registry=CollectorRegistry())
    [broker] = app.brokers
    topics = {getattr(t, "name", t) for sub in broker.subscribers for t in sub.topics}
    assert topics == {kafka.topic(c.topic) for c in SERVICES["dispatch"].consumes}
    assert not list(tmp_path.iterdir()), "no database file before start"


def test_routing_check_command(tmp_path):
    runner = CliRunner()
    assert "routing 2026.11.1 is valid" in runner.invoke(cli, ["routing", "check", str(DEFAULT_ROUTING)]).output
    broken = tmp_path / "routing.yaml"
    broken.write_text(DEFAULT_ROUTING.read_text(encoding="utf-8").replace("returned_to: governance_centre", "returned_to: nobody"))
    result = runner.invoke(cli, ["routing", "check", str(broken)])
    assert result.exit_code == 1 and "returned_to: Input should be" in result.output
