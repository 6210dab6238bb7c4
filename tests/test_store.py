"""Storage engines: SQLite by default, PostgreSQL where it runs (CI has it)."""

import pytest
from sqlalchemy import text

from services.runtime.store import create_engine, is_sqlite, ping


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
