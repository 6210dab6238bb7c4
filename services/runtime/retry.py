"""Outages of the store or the broker are retried with backoff, never dead-lettered; other failures are the record's."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import cache
from typing import TypeVar

from aiokafka.errors import CorruptRecordException, KafkaError, MessageSizeTooLargeError, RecordTooLargeError
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.runtime.settings import RetrySettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# SQLSTATE classes that say the server, not the statement, failed: connection (08), transaction rolled back by a
# deadlock or a serialization conflict (40: trying again succeeds), resources (53), operator intervention (57),
# system (58). Any other class (22 data, 23 integrity, 42 syntax or access) refuses the statement's values.
_OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
# Broker errors about the records themselves, not about reaching the broker.
_RECORD_REFUSED = (MessageSizeTooLargeError, RecordTooLargeError, CorruptRecordException)


def is_outage(error: BaseException) -> bool:
    """Tell whether an error means the store or the broker is unavailable (wait it out) rather than refusing what it was given."""
    if isinstance(error, (OSError, asyncio.TimeoutError, PoolTimeout, DisconnectionError)):
        return True
    if isinstance(error, KafkaError):
        return not isinstance(error, _RECORD_REFUSED)
    if isinstance(error, DBAPIError):
        state = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        if state:
            return str(state)[:2] in _OUTAGE_SQLSTATE_CLASSES
        # SQLite's locked or busy file and lost connections carry no SQLSTATE.
        return error.connection_invalidated or isinstance(error, (OperationalError, InterfaceError))
    return False


class Readiness:
    """What /health/ready reports: every dependency that failed last time it was tried."""

    def __init__(self) -> None:
        self.failing: set[str] = set()

    @property
    def ready(self) -> bool:
        """Tell whether every dependency worked on its last use."""
        return not self.failing


@cache
def retry_settings() -> RetrySettings:
    """Return the process's retry schedule, read from the environment once."""
    return RetrySettings()


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    what: str,
    readiness: Readiness,
    schedule: RetrySettings | None = None,
    on_retry: Callable[[], None] = lambda: None,
) -> T:
    """Run `operation`, retrying outages with doubling delays; raise once attempts run out, or at once on any other error.

    While it fails the dependency is reported not ready; the caller's batch is then redelivered,
    so nothing is committed past work that was not done. The schedule is the process's `RetrySettings`
    unless the caller names one.
    """
    waits, retried = (schedule or retry_settings()).delays(), 0
    while True:
        try:
            result = await operation()
        except Exception as error:
            if not is_outage(error):
                raise  # the data is at fault: retrying in place cannot help, the caller isolates the record
            readiness.failing.add(what)
            if retried == len(waits):
                raise
            delay, retried = waits[retried], retried + 1
            on_retry()
            log.warning("%s failed (%s), retry %d/%d in %.1f s", what, type(error).__name__, retried, len(waits), delay)
            await asyncio.sleep(delay)
        else:
            readiness.failing.discard(what)
            return result


async def retry_holding(
    lock: asyncio.Lock, operation: Callable[[], Awaitable[T]], what: str, readiness: Readiness, on_retry: Callable[[], None]
) -> T:
    """Run `operation` holding `lock`, retrying transient errors; the lock is let go while a retry waits."""

    async def attempt() -> T:
        async with lock:
            return await operation()

    return await retry_transient(attempt, what, readiness, on_retry=on_retry)


async def in_transaction(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    readiness: Readiness,
    on_retry: Callable[[], None],
    lock: asyncio.Lock,
) -> T:
    """Run `work` in one database transaction holding `lock`, retrying the whole of it on transient failures."""

    async def transaction() -> T:
        async with engine.begin() as connection:
            return await work(connection)

    return await retry_holding(lock, transaction, "store", readiness, on_retry)
