"""SQLite for SQLAlchemy's async engine, run on the event loop's own thread instead of aiosqlite's.

aiosqlite hands every call (cursor, execute, fetch, close, commit) to a worker thread: at a few
records per batch those hand-overs cost a service more than its SQL did (14 % of triage's main
thread was spent queueing work for the thread). A local SQLite file answers in microseconds, so the
calls run in place. SQLAlchemy's aiosqlite dialect drives these objects through `async_creator`;
they implement the part of aiosqlite's interface it uses.

One kind of call goes to a thread instead: a write that runs beside the loop's own work (`execute_beside`), one
statement whose whole work SQLite does with the GIL released, so the loop keeps deciding on the other core.
"""

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# One thread for the process: writes are serialised by each service's writing lock anyway.
_BESIDE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-beside")

# Prepared statements a connection keeps, instead of sqlite3's 128. A statement with an expanding IN list is compiled
# anew for each length a batch brings, 230-460 kB apiece at a few hundred values: over 300,000 records dispatch's
# connection came to hold 128 of them (23 MB, still growing) and its soak peaked at 219-221 MB against the 200 MB
# bound. With 16 it peaked at 193 MB, and dispatch and triage ran at the same rates (docs/performance.md, "Memory").
STATEMENTS_CACHED = 16


async def _beside(call: Callable[[], T]) -> T:
    # A cancelled caller still waits for the thread: the connection must not be used by two threads at once
    # (a rollback on the loop while the thread inserts would block the loop on SQLite's mutex instead).
    running = asyncio.get_running_loop().run_in_executor(_BESIDE, call)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        await asyncio.wait([running])
        raise


class InlineCursor:
    """An aiosqlite-like cursor whose coroutines finish without waiting."""

    def __init__(self, cursor: sqlite3.Cursor):
        self._cursor = cursor

    @property
    def description(self) -> Any:
        """Describe the columns of the last query."""
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        """Return the rows the last statement changed."""
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        """Return the row id of the last insert."""
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        """Return how many rows fetchmany returns by default."""
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def __aenter__(self) -> "InlineCursor":
        return self

    async def __aexit__(self, *_: Any) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = None) -> "InlineCursor":
        """Run one statement."""
        self._cursor.execute(sql, () if parameters is None else parameters)
        return self

    async def executemany(self, sql: str, parameters: Any) -> "InlineCursor":
        """Run one statement for each set of parameters."""
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        """Return the next row."""
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        """Return the next rows."""
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        """Return the remaining rows."""
        return self._cursor.fetchall()

    async def close(self) -> None:
        """Close the cursor."""
        self._cursor.close()


class _RunNow:
    # SQLAlchemy sets the isolation level through aiosqlite's queue to its thread.
    def put_nowait(self, item: tuple[Any, Any]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:  # noqa: BLE001 - handed to the awaiting caller, as aiosqlite does
            future.set_exception(error)


class InlineConnection:
    """An aiosqlite-like connection over a plain sqlite3 connection."""

    def __init__(self, connection: sqlite3.Connection):
        self._conn = connection
        self._connection: sqlite3.Connection | None = connection  # SQLAlchemy reads it as "still open"
        self._tx = _RunNow()
        self._written_beside = False  # the open transaction wrote on the thread: its commit goes there too

    async def execute_beside(self, statements: list[tuple[str, Any]]) -> None:
        """Run write statements, each with its parameters, in one call on the writer thread while the loop goes on; they join the open transaction."""
        self._written_beside = True
        await _beside(lambda: [self._conn.execute(sql, parameters).close() for sql, parameters in statements])

    @property
    def isolation_level(self) -> str | None:
        """Return sqlite3's transaction mode."""
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        """Open a cursor."""
        return InlineCursor(self._conn.cursor())

    async def commit(self) -> None:
        """Commit the open transaction; one that wrote beside the loop writes its log there too."""
        if self._written_beside:
            self._written_beside = False
            await _beside(self._conn.commit)
        else:
            self._conn.commit()

    async def rollback(self) -> None:
        """Roll back the open transaction."""
        self._written_beside = False
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        """Register an SQL function."""
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        self.stop()

    def stop(self) -> None:
        """Close at once (SQLAlchemy's terminate)."""
        if self._connection is not None:
            self._connection = None
            self._conn.close()


async def connect(path: str) -> InlineConnection:
    """Open a SQLite file (or `:memory:`) for the async engine."""
    # The pool may close a connection from a finaliser on another thread; SQLite itself is threadsafe.
    return InlineConnection(sqlite3.connect(path, check_same_thread=False, cached_statements=STATEMENTS_CACHED))
