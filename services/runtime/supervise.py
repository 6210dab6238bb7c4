"""Background loops under supervision: a loop that fails is reported not ready and restarted after a growing pause."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.runtime.retry import Readiness

log = logging.getLogger(__name__)

Loop = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """How long to wait before restarting a failed loop, and how long a run must last to count as healthy."""

    first_seconds: float = 0.5
    max_seconds: float = 30.0
    # A run that lasts this long clears the loop's failing mark and starts the pauses over. One rule for every
    # loop, with no progress hook to thread through: a loop that fails again at once stays marked, and one that
    # only fails now and then is restarted quickly each time. Longer than any loop takes to reach its first round
    # (the file watchers poll every 2 s, the others work first and then wait), so a restarted loop that fails
    # again does so before it counts as healthy.
    healthy_seconds: float = 10.0

    def after(self, pause: float) -> float:
        """Return the pause after the one just taken: doubled, up to the longest."""
        return min(pause * 2, self.max_seconds)


def failing_mark(name: str) -> str:
    """Name a supervised loop in the readiness report."""
    return f"background:{name}"


async def supervise(name: str, loop: Loop, readiness: Readiness, backoff: Backoff = Backoff()) -> None:
    """Run `loop` until it returns or is cancelled, restarting it after every failure with doubling pauses."""
    # From a failure until the restarted run has lasted `healthy_seconds`, the readiness report names the loop,
    # so /health/ready answers 503. Cancellation (shutdown) is never caught: it stops the loop as it did unsupervised.
    mark, pause = failing_mark(name), backoff.first_seconds

    def healthy() -> None:
        nonlocal pause
        readiness.failing.discard(mark)
        pause = backoff.first_seconds

    while True:
        # The loop runs in this task, so a cancellation reaches it exactly as it did before supervision.
        timer = asyncio.get_running_loop().call_later(backoff.healthy_seconds, healthy)
        try:
            await loop()
            readiness.failing.discard(mark)  # a loop that ends has done its work
            return
        except Exception as error:  # CancelledError is a BaseException: shutdown passes through
            readiness.failing.add(mark)
            # The type only: an error's text may quote the personal data the loop was handling.
            log.error("background loop %s failed (%s); restarting in %.2f s", name, type(error).__name__, pause)
        finally:
            timer.cancel()
        await asyncio.sleep(pause)
        pause = backoff.after(pause)
