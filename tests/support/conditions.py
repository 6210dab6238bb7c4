"""Waiting on conditions with a deadline, never on sleeps."""

import asyncio
from collections.abc import Awaitable, Callable


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0, every: float = 0.05) -> None:
    """Poll `condition` until it holds, failing the test at the deadline instead of sleeping and hoping."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)
