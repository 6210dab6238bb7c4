"""Fixtures: a real embedded broker for the whole session, fresh topic names per test, domain-like reports."""

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from services.runtime.embedded import EmbeddedBroker
from services.runtime.settings import KafkaSettings
from services.runtime.topics import contract_topics, ensure_topics

BEIJING = timezone(timedelta(hours=8))
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


async def _postgres_or_skip() -> str:
    try:
        connection = await asyncpg.connect(POSTGRES_URL.replace("+asyncpg", ""), timeout=3)
    except (OSError, asyncpg.PostgresError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL must run on CI: {type(error).__name__}")
        pytest.skip("PostgreSQL is not running here")
    await connection.close()
    return POSTGRES_URL


@pytest.fixture
async def postgres_url() -> str:
    """Give PostgreSQL's URL; skip only off CI when no server runs, fail on CI."""
    return await _postgres_or_skip()


async def empty_postgres() -> str:
    """Drop every table in PostgreSQL's test database, so each test starts from nothing."""
    url = await _postgres_or_skip()
    connection = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        for table in await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"):
            await connection.execute(f'DROP TABLE IF EXISTS "{table["tablename"]}" CASCADE')
    finally:
        await connection.close()
    return url


async def generic_plan(url: str, statement: str, arguments: str) -> str:
    """Return the plan PostgreSQL runs a prepared statement with once it settles on a generic one."""
    connection = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        await connection.execute(f"PREPARE statement AS {statement}")
        return "\n".join(row[0] for row in await connection.fetch(f"EXPLAIN EXECUTE statement({arguments})"))
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request, tmp_path) -> str:
    """Run a store test on a fresh SQLite file and on an emptied PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    return await empty_postgres()


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """Start one embedded Tansu broker for the test session."""
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture
def kafka_settings() -> KafkaSettings:
    """Give each test its own topic prefix, so tests never see each other's messages."""
    return KafkaSettings(bootstrap_servers=None, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")


@pytest.fixture
async def contract_topics_created(embedded_broker: EmbeddedBroker, kafka_settings: KafkaSettings) -> list[str]:
    """Create every contract topic under the test's prefix."""
    return await ensure_topics(kafka_settings, embedded_broker.bootstrap_servers, contract_topics(partitions=2))


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0, every: float = 0.05) -> None:
    """Poll `condition` until it holds, failing the test at the deadline instead of sleeping and hoping."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)


def report_payload(**overrides: Any) -> dict[str, Any]:
    """Return a plain family dispute as JSON-ready data, reported by a grid worker."""
    payload: dict[str, Any] = {
        "event_id": "evt-0001",
        "dispute_id": "D-2026-0001",
        "reported_at": "2026-03-02T09:30:00+08:00",
        "source": "grid_app",
        "region": {"county": "诸暨市", "town": "枫桥镇", "community": "枫源村", "grid_id": "G-07"},
        "category": "family_marriage",
        "description": "夫妻因家务琐事争吵，妻子请求调解。",
        "parties": [
            {"role": "complainant", "kind": "person", "name": "王某", "phone": "13800000001", "age": 34},
            {"role": "respondent", "kind": "person", "name": "李某", "id_number": "33068119900101001X"},
        ],
        "party_count": 2,
    }
    payload.update(overrides)
    return payload


def at(text: str) -> datetime:
    """Parse an RFC 3339 time, for fixtures that read like the domain."""
    return datetime.fromisoformat(text)
