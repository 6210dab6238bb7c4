"""Supervised background loops: a failing loop is restarted after doubling pauses and reported not ready meanwhile."""

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import DataError

from services.runtime.http import service_routes
from services.runtime.retry import Readiness
from services.runtime.service import every
from services.runtime.supervise import Backoff, failing_mark, supervise
from tests.support.conditions import wait_for

QUICK = Backoff(first_seconds=0.02, max_seconds=0.08, healthy_seconds=0.3)
SECRET = "13800000001"  # a phone number in an error's text must not reach the log


class Flaky:
    """A loop that fails its first `failures` runs, then runs until told to fail again; notes /health/ready at each start."""

    def __init__(self, readiness: Readiness, failures: int):
        self.readiness, self.failures = readiness, failures
        self.ready_at_start: list[tuple[int, str]] = []
        self.fail_again = asyncio.Event()
        self.cancelled = False

    @property
    def starts(self) -> int:
        """Count the runs started so far."""
        return len(self.ready_at_start)

    async def __call__(self) -> None:
        self.ready_at_start.append(await ready_status(self.readiness))
        if self.starts <= self.failures:
            raise ValueError(f"cannot reach {SECRET}")
        try:
            await self.fail_again.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.fail_again.clear()
        raise ValueError(f"cannot reach {SECRET} again")


async def ready_status(readiness: Readiness) -> tuple[int, str]:
    """Ask the service's /health/ready route in process, as uvicorn would, and return its status and body."""
    route = dict(service_routes(CollectorRegistry(), readiness, {}))["/health/ready"]
    sent = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await route({"type": "http", "method": "GET", "path": "/health/ready", "headers": [], "query_string": b""}, receive, send)
    return sent[0]["status"], sent[1]["body"].decode()


def supervised_flaky(name: str, failures: int, backoff: Backoff = QUICK) -> tuple[Readiness, Flaky, asyncio.Task]:
    """Start a flaky loop under the supervisor; return its readiness, the loop and the supervising task."""
    readiness = Readiness()
    flaky = Flaky(readiness, failures=failures)
    return readiness, flaky, asyncio.create_task(supervise(name, flaky, readiness, backoff))


def pauses(caplog) -> list[float]:
    """Return the pauses the supervisor logged before each restart."""
    return [r.args[2] for r in caplog.records if r.name == "services.runtime.supervise"]


async def test_a_loop_that_fails_twice_is_restarted_not_ready_meanwhile_and_ready_once_it_runs(caplog):
    caplog.set_level(logging.ERROR, "services.runtime.supervise")
    readiness, flaky, supervised = supervised_flaky("timers", failures=2)
    try:
        await wait_for(lambda: _started(flaky, 3), 5)
        # Not ready from the first failure until the run that works has lasted `healthy_seconds`.
        down = (503, f"not ready: {failing_mark('timers')}\n")
        assert flaky.ready_at_start == [(200, "ready\n"), down, down]

        async def ready() -> bool:
            return (await ready_status(readiness))[0] == 200

        await wait_for(ready, 5)
        assert flaky.starts == 3 and not supervised.done()
    finally:
        supervised.cancel()
        with pytest.raises(asyncio.CancelledError):
            await supervised
    assert flaky.cancelled, "the cancellation reached the loop itself"
    assert flaky.starts == 3, "a cancelled loop is not restarted"
    assert pauses(caplog) == [0.02, 0.04]
    assert all("ValueError" in r.getMessage() and SECRET not in r.getMessage() for r in caplog.records)


async def test_the_pause_doubles_up_to_the_longest_and_starts_over_after_a_healthy_run(caplog):
    caplog.set_level(logging.ERROR, "services.runtime.supervise")
    readiness, flaky, supervised = supervised_flaky("watcher", failures=5)
    try:
        await wait_for(lambda: _started(flaky, 6), 5)
        await wait_for(lambda: _healthy(readiness), 5)
        assert pauses(caplog) == [0.02, 0.04, 0.08, 0.08, 0.08]
        flaky.fail_again.set()  # fails after a healthy run: marked again, restarted after the first pause
        await wait_for(lambda: _started(flaky, 7), 5)
        assert flaky.ready_at_start[-1][0] == 503
        assert pauses(caplog) == [0.02, 0.04, 0.08, 0.08, 0.08, 0.02]
    finally:
        supervised.cancel()
        await asyncio.gather(supervised, return_exceptions=True)


async def test_a_shutdown_while_a_failed_loop_waits_for_its_restart_stops_it():
    _, flaky, supervised = supervised_flaky("purge", failures=100, backoff=Backoff(first_seconds=60))
    await wait_for(lambda: _started(flaky, 1), 5)
    supervised.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(supervised, 5)
    assert flaky.starts == 1


async def test_a_loop_that_ends_is_not_restarted():
    readiness = Readiness()
    runs = []

    async def once() -> None:
        runs.append(1)

    await asyncio.wait_for(supervise("once", once, readiness, QUICK), 5)
    assert runs == [1] and readiness.ready


async def _started(flaky: Flaky, count: int) -> bool:
    return flaky.starts >= count


async def _healthy(readiness: Readiness) -> bool:
    return readiness.ready


@pytest.mark.parametrize(
    "error, ends",
    [
        (ConnectionRefusedError("store gone"), False),  # an outage: tried again at the next interval
        (asyncio.TimeoutError(), False),
        (ValueError("a bug"), True),  # anything else ends the loop, for its supervisor to restart and report
        (KeyError("x"), True),
        (DataError("INSERT", {}, ValueError("value too long")), True),  # the store refuses what it was given: no outage
    ],
    ids=["refused", "timeout", "value_error", "key_error", "data_error"],
)
async def test_a_periodic_task_waits_out_outages_and_hands_anything_else_to_its_supervisor(error, ends):
    runs = []

    async def work() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise error

    async def ended_or_ran_again() -> bool:
        return loop.done() or len(runs) >= 3

    loop = asyncio.create_task(every(0.001, work, "test work"))
    try:
        await wait_for(ended_or_ran_again, timeout=5)
        assert loop.done() is ends
        if ends:
            assert loop.exception() is error
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
