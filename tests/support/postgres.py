"""The PostgreSQL server tests use: one database per test worker; a missing server fails the test."""

import os

import asyncpg
import pytest

BASE_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
# Parallel workers (pytest-xdist) each empty their own database: one shared database would be dropped under another's test.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
POSTGRES_URL = f"{BASE_URL}_{WORKER}" if WORKER else BASE_URL
_created: set[str] = set()


def _plain(url: str) -> str:
    return url.replace("+asyncpg", "")


async def _create_worker_database() -> None:
    name = POSTGRES_URL.rsplit("/", 1)[1]
    connection = await asyncpg.connect(_plain(BASE_URL), timeout=3)
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    _created.add(name)


async def required_postgres() -> str:
    """Return PostgreSQL's URL for this worker; fail the test when no server answers."""
    try:
        if WORKER and not _created:
            await _create_worker_database()
        connection = await asyncpg.connect(_plain(POSTGRES_URL), timeout=3)
    except (OSError, asyncpg.PostgresError) as error:
        # Never a skip: the suite proves the PostgreSQL paths, so a missing server fails it, here as on CI.
        pytest.fail(f"PostgreSQL must run at {BASE_URL} (TEST_POSTGRES_URL): {type(error).__name__}")
    await connection.close()
    return POSTGRES_URL


async def empty_postgres() -> str:
    """Drop every table in this worker's database, so each test starts from nothing."""
    url = await required_postgres()
    connection = await asyncpg.connect(_plain(url))
    try:
        for table in await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"):
            await connection.execute(f'DROP TABLE IF EXISTS "{table["tablename"]}" CASCADE')
    finally:
        await connection.close()
    return url


async def generic_plan(url: str, statement: str, arguments: str) -> str:
    """Return the plan PostgreSQL runs a prepared statement with once it settles on a generic one."""
    connection = await asyncpg.connect(_plain(url))
    try:
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        await connection.execute(f"PREPARE statement AS {statement}")
        return "\n".join(row[0] for row in await connection.fetch(f"EXPLAIN EXECUTE statement({arguments})"))
    finally:
        await connection.close()
