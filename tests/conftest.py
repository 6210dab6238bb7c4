"""Markers from where a test lives and what it uses; the session's embedded broker, a topic prefix per test, stores."""

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from services.runtime.embedded import EmbeddedBroker
from services.runtime.settings import KafkaSettings
from services.runtime.topics import contract_topics, ensure_topics
from tests.support.postgres import empty_postgres, required_postgres

pytest_plugins = ["tests.support.triage", "tests.support.loop"]

LEVELS = ("unit", "integration", "e2e", "faults")

# Hypothesis would keep its examples in .hypothesis/ under the working directory: tests leave nothing behind.
hypothesis_settings.register_profile("fengqiao", database=None)
hypothesis_settings.load_profile("fengqiao")
# It caches the constants it reads from the source there too, whatever the database: a directory of the session's own instead.
_HYPOTHESIS_HOME = tempfile.TemporaryDirectory(prefix="hypothesis-")
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", _HYPOTHESIS_HOME.name)

_TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its directory's level, `broker` when it uses the broker, `postgres` when it uses PostgreSQL."""
    for item in items:
        level = Path(item.fspath).relative_to(_TESTS).parts[0]
        if level not in LEVELS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/{{{','.join(LEVELS)}}}/")
        item.add_marker(level)
        fixtures = set(getattr(item, "fixturenames", ()))
        if "embedded_broker" in fixtures or level in ("e2e", "faults"):
            item.add_marker("broker")
        params = getattr(getattr(item, "callspec", None), "params", {})
        if fixtures & {"postgres_url", "empty_postgres_url"} or "postgres" in params.values():
            item.add_marker("postgres")


class _NoNetwork(Exception):
    pass


@pytest.fixture(autouse=True)
def _unit_tests_stay_in_process(request, monkeypatch) -> None:
    """Refuse connections in unit tests: they are pure, and one that reaches a server belongs in integration."""
    if request.node.get_closest_marker("unit"):
        def refuse(*_args, **_kwargs):
            raise _NoNetwork(f"{request.node.nodeid}: a unit test opened a connection")

        monkeypatch.setattr(socket.socket, "connect", refuse)
        monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
async def postgres_url() -> str:
    """Give this worker's PostgreSQL URL; fail the test when no server answers."""
    return await required_postgres()


@pytest.fixture
async def empty_postgres_url() -> str:
    """Give this worker's PostgreSQL URL with every table dropped."""
    return await empty_postgres()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request, tmp_path) -> str:
    """Run a store test on a fresh SQLite file and on an emptied PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    return await empty_postgres()


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """Start one embedded Tansu broker for the test session (one per worker)."""
    with EmbeddedBroker() as broker:
        yield broker


def fresh_prefix() -> str:
    """Return a topic prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def kafka_settings() -> KafkaSettings:
    """Give each test its own topic prefix, so tests never see each other's messages."""
    return KafkaSettings(bootstrap_servers=None, topic_prefix=fresh_prefix())


@pytest.fixture
async def contract_topics_created(embedded_broker: EmbeddedBroker, kafka_settings: KafkaSettings) -> list[str]:
    """Create every contract topic under the test's prefix."""
    return await ensure_topics(kafka_settings, embedded_broker.bootstrap_servers, contract_topics(partitions=2))
