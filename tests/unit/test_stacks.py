"""The SIGUSR1 task dump: where each task waits, down to the await it is stuck on, without any frame's variables."""

import asyncio
import logging
import os
import signal

from services.runtime.stacks import dump_stacks_on_signal, task_stacks
from tests.support.conditions import wait_for

SECRET = "13800000001"  # a phone number held by a waiting task must not reach the log


async def _hold(lock: asyncio.Lock, holding: asyncio.Event, release: asyncio.Event) -> None:
    async with lock:
        holding.set()
        await release.wait()


async def _wait_for_the_lock(lock: asyncio.Lock) -> None:
    phone = SECRET  # noqa: F841 - a local the dump must leave out
    async with lock:
        pass


async def test_a_task_waiting_on_a_lock_is_shown_at_the_await_it_is_stuck_on():
    lock, holding, release = asyncio.Lock(), asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(lock, holding, release), name="holder")
    await holding.wait()
    waiter = asyncio.create_task(_wait_for_the_lock(lock), name="waiter")
    try:
        await wait_for(lambda: _true("in acquire" in _stack_of("waiter", task_stacks())))
        dump = task_stacks()
        # Each coroutine of the chain at its line: the caller's `async with`, then the lock's own acquire.
        assert "in _wait_for_the_lock\n    async with lock:" in _stack_of("waiter", dump)
        assert "in _hold\n    await release.wait()" in _stack_of("holder", dump)
        assert SECRET not in dump
    finally:
        release.set()
        await asyncio.gather(holder, waiter)


async def test_sigusr1_logs_the_stacks(caplog):
    caplog.set_level(logging.WARNING, logger="services.runtime.stacks")
    dump_stacks_on_signal()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        await wait_for(lambda: _true(any("asyncio tasks on SIGUSR1" in r.getMessage() for r in caplog.records)))
        assert "test_sigusr1_logs_the_stacks" in caplog.text
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)


def _stack_of(name: str, dump: str) -> str:
    return dump.split(f"task {name} (", 1)[1].split("\ntask ", 1)[0]


async def _true(value: object) -> bool:
    return bool(value)
