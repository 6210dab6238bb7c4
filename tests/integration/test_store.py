"""Storage engines: SQLite by default, PostgreSQL where it runs (CI has it)."""

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError

from services.runtime.inline_sqlite import STATEMENTS_CACHED
from services.runtime.retry import Readiness, is_outage, retry_transient
from services.runtime.settings import RetrySettings
from services.runtime.store import (
    IGNORE_DUPLICATES,
    Insert,
    aware,
    checkpoint,
    create_engine,
    create_reader,
    insert_beside,
    insert_ignoring_duplicates,
    insert_rows,
    is_sqlite,
    ping,
    present,
    present_sql,
    time_binder,
    written_beside,
)
from tests.support.postgres import generic_plan


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


@pytest.mark.parametrize(
    "others, compiled_again",
    [
        (STATEMENTS_CACHED - 1, False),  # still among the statements kept: reused as it was compiled
        (STATEMENTS_CACHED, True),  # pushed out by as many others as are kept
        (100, True),  # sqlite3's own default (128) would have kept it
    ],
)
async def test_a_sqlite_connection_keeps_only_its_last_statements_compiled(tmp_path, others, compiled_again):
    # Each IN list of another length is another statement of hundreds of kB: a connection keeps only the latest few.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'statements.db'}")
    try:
        async with engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            compiling: list[int] = []
            # SQLite asks the authorizer while it compiles a statement, never when it runs one already compiled.
            driver._conn.set_authorizer(lambda action, *_: compiling.append(action) or sqlite3.SQLITE_OK)
            await connection.exec_driver_sql("SELECT ? AS watched", (1,))
            for n in range(others):
                await connection.exec_driver_sql(f"SELECT ? AS other_{n}", (n,))
            compiling.clear()
            await connection.exec_driver_sql("SELECT ? AS watched", (2,))
            assert bool(compiling) == compiled_again
    finally:
        await engine.dispose()


@pytest.fixture
async def written_store(tmp_path):
    """Return a service's engine and reader on a SQLite file just given 1,500 pages, none checkpointed."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    engine = create_engine(url, checkpoints_elsewhere=True)
    reader = create_reader(url, engine)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE pages (body BLOB)")
            await connection.exec_driver_sql("INSERT INTO pages VALUES (?)", [(bytes(4000),)] * 1500)
        yield engine, reader
    finally:
        await reader.dispose()
        await engine.dispose()


async def test_a_service_store_leaves_its_checkpoints_to_the_reader_thread(tmp_path, written_store):
    engine, reader = written_store
    database, log = tmp_path / "service.db", tmp_path / "service.db-wal"
    # Past the 1,000 pages at which SQLite would checkpoint in the committing (event loop's) connection.
    assert log.stat().st_size > 1000 * 4096
    assert database.stat().st_size < 1000 * 4096
    await checkpoint(reader, asyncio.Lock())
    assert database.stat().st_size > 1500 * 4000


async def test_a_long_write_ahead_log_is_emptied_by_the_reader(tmp_path, written_store):
    # A passive checkpoint leaves the log at its length; under steady writes SQLite never starts it over.
    engine, reader = written_store
    log = tmp_path / "service.db-wal"
    await checkpoint(reader, asyncio.Lock())
    assert log.stat().st_size > 1500 * 4000  # below the default bound: left for the writer to reuse
    await checkpoint(reader, asyncio.Lock(), frames_before_truncate=1000)
    assert log.stat().st_size == 0
    async with engine.connect() as connection:
        assert (await connection.exec_driver_sql("SELECT count(*) FROM pages")).scalar() == 1500


class WatchedLock(asyncio.Lock):
    """A lock that tells when someone has asked for it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()

    async def acquire(self) -> bool:
        self.asked.set()
        return await super().acquire()


async def test_emptying_the_log_waits_for_the_writer_lock_instead_of_locking_writers_out(tmp_path, written_store):
    engine, reader = written_store
    log, writing = tmp_path / "service.db-wal", WatchedLock()
    async with writing:  # a store transaction in progress
        writing.asked.clear()
        emptying = asyncio.create_task(checkpoint(reader, writing, frames_before_truncate=1000))
        await asyncio.wait_for(writing.asked.wait(), timeout=20)
        assert log.stat().st_size > 1500 * 4000 and not emptying.done()
    await emptying
    assert log.stat().st_size == 0


async def test_postgres_answers(postgres_url):
    engine = create_engine(postgres_url)
    try:
        assert not is_sqlite(postgres_url)
        assert await ping(engine)
    finally:
        await engine.dispose()


async def test_a_postgres_connection_dropped_in_the_pool_costs_one_retry(postgres_url):
    # The pool does not ping on every checkout (a round trip per store call): a connection the server
    # dropped fails its next statement, and the store retry must take a fresh one.
    engine, readiness, retries = create_engine(postgres_url), Readiness(), []

    async def backend_and_answer() -> tuple[int, int]:
        async with engine.connect() as connection:
            return tuple((await connection.execute(text("SELECT pg_backend_pid(), 1"))).one())

    try:
        dropped, _ = await backend_and_answer()
        server = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            assert await server.fetchval("SELECT pg_terminate_backend($1)", dropped)
        finally:
            await server.close()
        backend, answer = await retry_transient(
            backend_and_answer, "store", readiness, RetrySettings(first_delay_seconds=0.01), on_retry=lambda: retries.append(1)
        )
        assert (answer, backend != dropped, len(retries)) == (1, True, 1)
        assert not readiness.failing
    finally:
        await engine.dispose()


async def test_unreachable_database_is_not_ready():
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        assert not await ping(engine)
    finally:
        await engine.dispose()


async def _recreate(connection, metadata: MetaData) -> None:
    await connection.run_sync(lambda sync: metadata.drop_all(sync, checkfirst=True))
    await connection.run_sync(metadata.create_all)


async def test_rows_inserted_as_driver_text_read_back_as_written_and_repeats_are_ignored(database_url):
    metadata = MetaData()
    table = Table(
        "store_probe", metadata,
        Column("key", String(16), primary_key=True), Column("at", DateTime(timezone=True)), Column("flag", Boolean), Column("n", Integer),
    )
    engine = create_engine(database_url)
    moment = datetime(2026, 3, 2, 2, 0, 0, 123456, tzinfo=timezone.utc)
    try:
        async with engine.begin() as connection:
            await _recreate(connection, metadata)
            await insert_ignoring_duplicates(connection, table, [{"key": "a", "at": moment, "flag": True, "n": 7}])
            await insert_ignoring_duplicates(connection, table, [
                {"key": "a", "at": moment + timedelta(days=1), "flag": False, "n": 8}, {"key": "b", "at": moment, "flag": False, "n": 9},
            ])
            rows = (await connection.execute(select(table).order_by(table.c.key))).all()
            # SQLAlchemy's own comparison still works on what the driver text wrote.
            later = (await connection.execute(select(table.c.key).where(table.c.at > moment - timedelta(microseconds=1)))).scalars().all()
            stored = (await connection.exec_driver_sql("SELECT at FROM store_probe WHERE key = 'a'")).scalar()
            await connection.run_sync(metadata.drop_all)
        assert [(r.key, aware(r.at), r.flag, r.n) for r in rows] == [("a", moment, True, 7), ("b", moment, False, 9)]
        assert sorted(later) == ["a", "b"]
        if is_sqlite(database_url):  # SQLAlchemy's own text for times, offset dropped: text comparisons order them
            assert stored == "2026-03-02 02:00:00.123456"
    finally:
        await engine.dispose()


def _beside_tables() -> tuple[MetaData, Table, Table]:
    metadata = MetaData()
    first = Table(
        "beside_first", metadata,
        Column("key", String(16), primary_key=True), Column("at", DateTime(timezone=True)), Column("note", String(64)), Column("n", Integer),
    )
    return metadata, first, Table("beside_second", metadata, Column("key", String(16), primary_key=True))


async def _beside_rows(engine, first: Table, second: Table) -> tuple[list, list]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(first).order_by(first.c.key))).all()
        keys = (await connection.execute(select(second.c.key).order_by(second.c.key))).scalars().all()
    return [(r.key, aware(r.at) if r.at else None, r.note, r.n) for r in rows], keys


async def test_inserts_written_beside_the_loop_store_what_plain_inserts_store(database_url):
    # On SQLite the rows go over as one JSON array per table on the writer thread; the stored values must not tell.
    metadata, first, second = _beside_tables()
    engine = create_engine(database_url)
    moment = datetime(2026, 3, 2, 2, 0, 0, 123456, tzinfo=timezone.utc)
    try:
        async with engine.begin() as connection:
            await _recreate(connection, metadata)
            bind = time_binder(connection)
            rows = [("a", bind(moment), "甲 \"quoted\" \\ 𠀀", 7), ("b", None, None, None), ("a", bind(moment + timedelta(days=1)), "second a", 8)]
            await insert_beside(connection, [
                Insert(first, ["key", "at", "note", "n"], rows, IGNORE_DUPLICATES), Insert(second, ["key"], [("x",), ("y",)]), Insert(second, ["key"], []),
            ])
        stored = await _beside_rows(engine, first, second)
        async with engine.begin() as connection:
            await connection.run_sync(metadata.drop_all)
        # In order: of the two rows keyed a, the first stays.
        assert stored == ([("a", moment, '甲 "quoted" \\ 𠀀', 7), ("b", None, None, None)], ["x", "y"])
    finally:
        await engine.dispose()


async def test_a_write_beside_commits_after_its_block_and_rolls_back_when_the_block_fails(database_url):
    metadata, first, second = _beside_tables()
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await _recreate(connection, metadata)

    waiting = asyncio.Event()

    async def write(key: str, released) -> None:
        async with engine.begin() as connection:
            await insert_beside(connection, [Insert(second, ["key"], [(key,)])])
            waiting.set()
            await released

    try:
        async with written_beside(lambda released: write("kept", released)):
            await asyncio.wait_for(waiting.wait(), timeout=10)
            assert (await _beside_rows(engine, first, second))[1] == [], "nothing is committed before the block ends"
        with pytest.raises(RuntimeError):
            async with written_beside(lambda released: write("dropped", released)):
                raise RuntimeError("publishing failed")
        assert (await _beside_rows(engine, first, second))[1] == ["kept"]
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.drop_all)
        await engine.dispose()


async def test_a_locked_sqlite_file_fails_a_write_beside_as_an_outage(tmp_path):
    # The driver is called directly on the writer thread: its error must still read as an outage, to be retried,
    # and not as the batch's fault, which would dead-letter its records.
    path = tmp_path / "locked.db"
    metadata, _, second = _beside_tables()
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(Exception) as refused:
                async with engine.begin() as connection:
                    await insert_beside(connection, [Insert(second, ["key"], [("x",)])])
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert is_outage(refused.value), repr(refused.value)
    finally:
        await engine.dispose()


async def test_plain_inserts_refuse_a_key_that_exists(database_url):
    # Dispatch inserts rows it has just found missing: a row that appeared meanwhile is a conflict to retry, not to skip.
    metadata = MetaData()
    table = Table("store_plain", metadata, Column("key", String(16), primary_key=True), Column("at", DateTime(timezone=True)))
    engine = create_engine(database_url)
    moment = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
    try:
        async with engine.begin() as connection:
            await _recreate(connection, metadata)
            await insert_rows(connection, table, [{"key": "a", "at": moment}, {"key": "b", "at": moment}])
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await insert_rows(connection, table, [{"key": "c", "at": moment}, {"key": "a", "at": moment}])
        async with engine.begin() as connection:
            keys = (await connection.execute(select(table.c.key).order_by(table.c.key))).scalars().all()
            await connection.run_sync(metadata.drop_all)
        assert keys == ["a", "b"]  # the failed statement's transaction left nothing behind
    finally:
        await engine.dispose()


def _keyed_table() -> Table:
    return Table("store_keys", MetaData(), Column("key", String(64), primary_key=True), Column("at", DateTime(timezone=True)))


async def test_present_names_the_values_a_key_column_already_holds(database_url):
    table = _keyed_table()
    engine = create_engine(database_url)
    moment = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: table.metadata.drop_all(sync, checkfirst=True))
            await connection.run_sync(table.metadata.create_all)
            await insert_rows(connection, table, [{"key": f"e-{n}", "at": moment} for n in range(0, 1200, 3)])
            asked = [f"e-{n}" for n in range(1200)] + ["e-3", "e-4"]  # more than one chunk of 500, and repeats
            found = await present(connection, table.c.key, asked)
            await connection.run_sync(table.metadata.drop_all)
        assert found == {f"e-{n}" for n in range(0, 1200, 3)}
    finally:
        await engine.dispose()


async def test_key_lookups_use_the_key_even_in_a_generic_plan_made_on_an_empty_table(empty_postgres_url):
    # PostgreSQL may fix a generic plan after five executions; made while the table is empty, the plan for
    # `key = ANY($1)` scanned the whole table on every batch, and one triage instance slowed as it grew.
    url = empty_postgres_url
    table = _keyed_table()
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(table.metadata.create_all)
    finally:
        await engine.dispose()
    plan = await generic_plan(url, present_sql(table.c.key, 500, numbered=True), "ARRAY['e-1', 'e-2']")
    assert "Seq Scan on store_keys" not in plan, plan
    assert "Index Only Scan using store_keys_pkey" in plan, plan


async def _ticks_during(engine, query: str) -> int:
    """Count how often the event loop ran another task while `query` was in flight."""
    ticks, in_flight = 0, True

    async def ticker() -> None:
        nonlocal ticks
        while in_flight:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    ticks = 0
    async with engine.connect() as connection:
        await connection.execute(text(query))
    in_flight = False
    await task
    return ticks


async def test_whole_table_counts_on_sqlite_leave_the_event_loop_free(tmp_path):
    # Gauges count every open order; on the loop's own SQLite connection that stalls every batch meanwhile.
    url = f"sqlite+aiosqlite:///{tmp_path / 'dispatch.db'}"
    engine = create_engine(url)
    reader = create_reader(url, engine)
    slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000) SELECT count(*) FROM n"
    try:
        assert reader is not engine
        assert await _ticks_during(engine, slow) < 10  # only the awaits around the query itself
        assert await _ticks_during(reader, slow) > 1000
    finally:
        await reader.dispose()
        await engine.dispose()


def test_other_databases_count_on_their_own_engine():
    for url in ("postgresql+asyncpg://postgres@127.0.0.1:5432/test", "sqlite+aiosqlite:///:memory:"):
        engine = create_engine(url)
        assert create_reader(url, engine) is engine


@pytest.mark.parametrize("which", ["engine", "reader"])
async def test_a_refused_statement_names_no_parameter_in_its_error(database_url, which):
    # A store error is logged and raised through the services: the values it was given are reports' text.
    engine = create_engine(database_url, checkpoints_elsewhere=True)
    used = engine if which == "engine" else create_reader(database_url, engine)
    marker = "FQMARK-a-reporters-words"
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE hygiene (name TEXT CHECK (length(name) <= 8))")
        for statement in (
            lambda c: c.execute(text("INSERT INTO hygiene (name) VALUES (:name)"), {"name": marker}),
            lambda c: c.exec_driver_sql(f"INSERT INTO hygiene (name) VALUES ({'$1' if c.dialect.name == 'postgresql' else '?'})", (marker,)),
        ):
            with pytest.raises(IntegrityError) as refused:
                async with used.begin() as connection:
                    await statement(connection)
            assert marker not in str(refused.value) and "parameters hidden" in str(refused.value)
    finally:
        if used is not engine:
            await used.dispose()
        await engine.dispose()
