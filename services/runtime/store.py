"""Database engines for the services' own stores: SQLite file by default, PostgreSQL by URL."""

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from dataclasses import dataclass
from functools import lru_cache, partial
from operator import itemgetter
from pathlib import Path
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Column, Table, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.runtime import inline_sqlite


def is_sqlite(url: str) -> bool:
    """Tell whether a database URL points at SQLite."""
    return url.startswith("sqlite")


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (health checks, metrics) run beside the writer. Calls run on the event loop,
    # so a locked file must not be waited for here: it fails fast and the caller's retry waits
    # with the loop free (heartbeats, /health/ready).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=100")
    cursor.close()


def _defer_checkpoints(dbapi_connection: Any, _record: Any) -> None:
    # A checkpoint syncs the file to disk; on the loop's own connection it stalled every batch of the
    # service behind the disk. `checkpoint` runs them on the reader's thread instead.
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


def _cache_pages(mebibytes: int, dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute(f"PRAGMA cache_size=-{1024 * mebibytes}")  # negative: in KiB, whatever the page size


def _sqlite_file(url: str) -> str | None:
    """Return the file of a SQLite URL; None for other databases and SQLite in memory."""
    path = url.split("///", 1)[-1] if is_sqlite(url) else ""
    return path if path and path != ":memory:" else None


def _sqlite_time(moment: datetime) -> str:
    # SQLAlchemy's own storage format for SQLite DATETIME ("2026-03-10 02:00:00.000000", no offset), so its
    # reads parse what text statements write and text comparisons order times; isoformat is twice as fast as strftime.
    return moment.isoformat(" ", "microseconds")[:26]


def _store_times_as_sqlalchemy_does() -> None:
    """Make the SQLite driver write times bound to text statements in SQLAlchemy's format.

    The driver calls the adapter for times only: converting every parameter in Python first
    (strftime, then a check of each value) was a tenth of a triage batch."""
    sqlite3.register_adapter(datetime, _sqlite_time)


# A database error's text otherwise carries the statement's parameters: reporters' names, descriptions and
# phones, which then reach logs and tracebacks. Every engine keeps them out of its errors and its own logging.
_ENGINE_OPTIONS: dict[str, Any] = {"hide_parameters": True}


def create_engine(url: str, checkpoints_elsewhere: bool = False, cache_mib: int | None = None) -> AsyncEngine:
    """Create an async engine; for SQLite make the parent folder and tune the connection.

    `checkpoints_elsewhere`: the caller runs `checkpoint` on a reader, so this engine never does.
    `cache_mib`: SQLite's page cache of each connection, instead of its 2 MB default; other databases ignore it.
    """
    if is_sqlite(url):
        _store_times_as_sqlalchemy_does()
        path = _sqlite_file(url)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Last in, first out: the connection just returned, whose page cache is warm, serves the next call. In turn
        # (the pool's default), a second connection opened once by an overlapping call (a health probe) would take
        # every other call, each finding the other's commits and dropping its whole cache.
        pooling = {"pool_use_lifo": True} if path else {}  # in memory: one static connection
        engine = create_async_engine(url, async_creator=partial(inline_sqlite.connect, path or ":memory:"), **pooling, **_ENGINE_OPTIONS)
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        if path and checkpoints_elsewhere:
            event.listen(engine.sync_engine, "connect", _defer_checkpoints)
        if cache_mib:
            event.listen(engine.sync_engine, "connect", partial(_cache_pages, cache_mib))
        return engine
    return create_async_engine(url, pool_size=5, max_overflow=5, **_ENGINE_OPTIONS)


def create_reader(url: str, engine: AsyncEngine) -> AsyncEngine:
    """Return the engine for whole-table counts on the report path (dispatch's gauge): for a SQLite file, aiosqlite's own thread.

    The main engine runs SQLite on the event loop; a count over every order would stall the
    loop's batches for tens of milliseconds as the tables grow. WAL lets this reader run beside the writer.
    """
    if _sqlite_file(url) is None:
        return engine  # PostgreSQL answers off the loop already; a memory database exists only in its one connection
    reader = create_async_engine(url, **_ENGINE_OPTIONS)
    event.listen(reader.sync_engine, "connect", _tune_sqlite)
    return reader


# About 64 MB of log (4 kB pages). SQLite starts its log over only after a checkpoint that copied every
# frame, and a passive one never does while the writer keeps appending: under a steady load triage's log
# reached 12 GB, and its mapped index 22 MB of resident memory, over 1,000,000 reports.
_LOG_FRAMES_BEFORE_TRUNCATE = 16_384


async def checkpoint(
    reader: AsyncEngine, writing: asyncio.Lock, frames_before_truncate: int = _LOG_FRAMES_BEFORE_TRUNCATE
) -> None:
    """Copy a SQLite file's write-ahead log into the database, off the event loop; other databases need nothing.

    A passive checkpoint never waits for the writer. Once the log is long, a truncating one follows: it
    holds new write transactions back while it copies what the passive pass left, then empties the log.
    It takes the service's `writing` lock for that, so writers wait their turn instead of finding the file
    locked: on a 3.6 GB follow-up store each truncation outlasted the writer's busy timeout, 818 store
    retries in 24 minutes of steady load, each marking the store not ready.
    """
    if reader.dialect.name == "sqlite":
        async with reader.connect() as connection:
            _, log_frames, _ = (await connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")).one()
            if log_frames > frames_before_truncate:
                async with writing:
                    await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


async def ping(engine: AsyncEngine) -> bool:
    """Tell whether the database answers a trivial query (readiness)."""
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means not ready; the cause is logged by the caller's retry
        return False


def utc(moment: datetime) -> datetime:
    """Convert an aware time to UTC before storing: SQLite keeps no offset."""
    if moment.tzinfo is None:
        raise ValueError("only timezone-aware times are stored")
    return moment.astimezone(timezone.utc)


def aware(moment: datetime) -> datetime:
    """Read a stored time back as aware UTC (SQLite hands back naive values)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


async def create_schema(engine: AsyncEngine, build: Callable[[Connection], None]) -> None:
    """Create or migrate a schema; on PostgreSQL one instance at a time, since instances of a
    service start together and concurrent CREATE TABLE IF NOT EXISTS collide in the catalog."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('fengqiao-schema'))"))
        await connection.run_sync(build)


# Statements sent to the driver as text (inserts, dedupe lookups, triage's probes): SQLAlchemy's
# compilation and per-parameter processing cost several times what these statements do. Times are
# bound as they are: asyncpg takes them, and SQLite's driver formats them (`_store_times_as_sqlalchemy_does`).
# The conflict clause of an insert that skips rows whose primary key exists: reprocessing a batch changes nothing.
IGNORE_DUPLICATES = " ON CONFLICT DO NOTHING"


async def insert_ignoring_duplicates(connection: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows, skipping those whose primary key exists: reprocessing a batch changes nothing."""
    await insert_rows(connection, table, rows, IGNORE_DUPLICATES)


async def insert_rows(connection: AsyncConnection, table: Table, rows: list[dict[str, Any]], on_conflict: str = "") -> None:
    """Insert rows that all name the same columns; a duplicate key fails the statement unless `on_conflict` says otherwise."""
    if not rows:
        return
    names = list(rows[0])
    pick = itemgetter(*names)  # a tuple of the values, made in C, unless there is one name
    await insert_tuples(connection, table, names, [pick(row) for row in rows] if len(names) > 1 else [(pick(row),) for row in rows], on_conflict)


async def insert_tuples(connection: AsyncConnection, table: Table, names: list[str], rows: list[tuple], on_conflict: str = "") -> None:
    """Insert rows given as tuples of the named columns' values, in that order; `on_conflict` as for insert_rows."""
    if not rows:
        return
    marks = ", ".join(parameter_marks(numbered_parameters(connection), len(names)))
    await connection.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks}){on_conflict}", rows)


@dataclass(frozen=True)
class Insert:
    """Rows given as tuples of the named columns' values, for `insert_beside`; `on_conflict` as for insert_tuples."""

    table: Table
    names: list[str]
    rows: list[tuple]
    on_conflict: str = ""


async def insert_beside(connection: AsyncConnection, inserts: list[Insert]) -> None:
    """Insert as `insert_tuples` does, without holding the event loop: on a SQLite file each insert is one statement
    over its rows as a JSON array, all run in one call on the writer thread with the GIL released; other drivers wait
    on the network anyway.

    Values are text, numbers or None (times bound by `time_binder`). Rows go in in order, so of two with one key the first wins.
    """
    inserts = [insert for insert in inserts if insert.rows]
    driver = await _inline_driver(connection)
    if driver is None:
        for insert in inserts:
            await insert_tuples(connection, insert.table, insert.names, insert.rows, insert.on_conflict)
        return
    # `executemany` on a thread would take the GIL back for every row, each time waiting out the loop's switch
    # interval, and a call per statement would wait for the loop, busy deciding, to hand over the next one.
    # pydantic's serializer writes the array in a third of json.dumps' time; SQLite reads its bytes as text.
    await _execute_beside(driver, [(_json_insert_sql(i.table.name, tuple(i.names), i.on_conflict), (to_json(i.rows),)) for i in inserts])


async def _inline_driver(connection: AsyncConnection) -> inline_sqlite.InlineConnection | None:
    """Return the connection's driver when it is SQLite run by `inline_sqlite`, which has a writer thread; None otherwise."""
    driver = (await connection.get_raw_connection()).driver_connection
    return driver if isinstance(driver, inline_sqlite.InlineConnection) else None


async def _execute_beside(driver: inline_sqlite.InlineConnection, statements: list[tuple[str, Any]]) -> None:
    """Run statements on the driver's writer thread, its errors raised as SQLAlchemy's.

    The driver is called directly, so its errors are wrapped here as SQLAlchemy wraps them everywhere else: a locked
    file is then an outage to retry (`retry.is_outage`), not a fault of the batch's records.
    """
    try:
        await driver.execute_beside(statements)
    except sqlite3.Error as error:
        raise DBAPIError.instance(None, None, error, sqlite3.Error, hide_parameters=True) from None


@lru_cache(maxsize=32)
def _json_insert_sql(table: str, names: tuple[str, ...], on_conflict: str) -> str:
    # "WHERE true" tells SQLite's parser that ON CONFLICT belongs to the insert, not to the select.
    values = ", ".join(f"value ->> {n}" for n in range(len(names)))
    return f"INSERT INTO {table} ({', '.join(names)}) SELECT {values} FROM json_each(CAST(? AS TEXT)) WHERE true{on_conflict}"


@asynccontextmanager
async def written_beside(write: Callable[[Awaitable[None]], Awaitable[None]]) -> AsyncIterator[None]:
    """Run `write` beside the block: it is handed an awaitable that completes once the block ends without error, and
    must await it before it commits. An error in the block cancels the write, whose transaction rolls back.

    A batch's record is written while its decisions are made and published, and committed only once they are acknowledged.
    """
    released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    writing = asyncio.ensure_future(write(released))
    # One turn of the loop lets the write run to its first real wait (its statement on the writer thread) before the
    # block's own work, which need not wait for anything, keeps the loop busy.
    await asyncio.sleep(0)
    try:
        yield
    except BaseException:
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)
        raise
    released.set_result(None)
    await writing


def time_binder(connection: AsyncConnection) -> Callable[[datetime], Any]:
    """Return how this connection's text statements take an aware time: in UTC, and for SQLite already as the text it stores.

    Each distinct time is converted once per binder: a batch's rows and probes share a few times, and the driver's
    adapter is not called for each of them."""
    convert: Callable[[datetime], Any] = (lambda moment: _sqlite_time(utc(moment))) if connection.dialect.name == "sqlite" else utc
    bound: dict[datetime, Any] = {}

    def bind(moment: datetime) -> Any:
        value = bound.get(moment)
        if value is None:
            value = bound[moment] = convert(moment)
        return value

    return bind


def numbered_parameters(connection: AsyncConnection) -> bool:
    """Tell whether the connection's driver numbers its parameters ($1, asyncpg) rather than marking them (?, SQLite)."""
    return connection.dialect.name == "postgresql"


def parameter_marks(numbered: bool, count: int) -> list[str]:
    """Return the marks of a text statement's parameters, in order."""
    return [f"${n}" for n in range(1, count + 1)] if numbered else ["?"] * count


# SQLite limits the parameters of one statement.
_IN_CHUNK = 500


async def present(connection: AsyncConnection, column: Column, values: list[str]) -> set[str]:
    """Return which of these values a key column already holds, one query per 500 values.

    Sent to the driver as text, like the inserts: compiling an expanding IN list on every batch
    cost SQLAlchemy several times what the lookup did."""
    found: set[str] = set()
    numbered = numbered_parameters(connection)
    for start in range(0, len(values), _IN_CHUNK):
        chunk = values[start : start + _IN_CHUNK]
        # PostgreSQL gets one array parameter: one prepared statement whatever the chunk's length.
        parameters = (chunk,) if numbered else tuple(chunk)
        found.update(row[0] for row in await connection.exec_driver_sql(present_sql(column, len(chunk), numbered), parameters))
    return found


def present_sql(column: Column, count: int, numbered: bool) -> str:
    """Return the text of `present`'s lookup of `count` values.

    On PostgreSQL each value is looked up on its own through the key: a generic plan that PostgreSQL
    caches while the table is empty scans the whole table for `= ANY($1)`, and keeps doing so as it grows
    (one triage instance's lookups took 95 -> 260 ms a batch over 20,000 reports)."""
    name, table = column.name, column.table.name
    if numbered:
        return (
            f"SELECT found.{name} FROM unnest($1::text[]) AS wanted(value) "
            f"CROSS JOIN LATERAL (SELECT {name} FROM {table} WHERE {name} = wanted.value LIMIT 1) AS found"
        )
    return f"SELECT {name} FROM {table} WHERE {name} IN ({', '.join(parameter_marks(False, count))})"
