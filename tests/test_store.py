"""Storage engines: SQLite by default, PostgreSQL where it runs (CI has it)."""

import os

import asyncpg
import pytest
from sqlalchemy import text

from services.runtime.store import create_engine, is_sqlite, ping

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@pytest.fixture
async def postgres_url() -> str:
    """Give PostgreSQL's URL; skip only off CI when no server runs, fail on CI."""
    try:
        connection = await asyncpg.connect(POSTGRES_URL.replace("+asyncpg", ""), timeout=3)
    except (OSError, asyncpg.PostgresError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL must run on CI: {type(error).__name__}")
        pytest.skip("PostgreSQL is not running here")
    await connection.close()
    return POSTGRES_URL


async def test_sqlite_file_is_created_in_wal_mode(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'triage.db'}"
    engine = create_engine(url)
    try:
        assert is_sqlite(url)
        assert await ping(engine)
        async with engine.connect() as connection:
            mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
        assert mode == "wal"
        assert (tmp_path / "nested" / "triage.db").exists()
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_postgres_answers(postgres_url):
    engine = create_engine(postgres_url)
    try:
        assert not is_sqlite(postgres_url)
        assert await ping(engine)
    finally:
        await engine.dispose()


async def test_unreachable_database_is_not_ready():
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        assert not await ping(engine)
    finally:
        await engine.dispose()
