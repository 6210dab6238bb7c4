"""Injected clocks: real, simulated (shared by all services through settings) and manual for tests."""

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Protocol

from services.runtime.settings import ClockSettings


class Clock(Protocol):
    """Where services read the time; never `datetime.now()` directly."""

    def now(self) -> datetime:
        """Return the current (possibly simulated) time, timezone-aware."""

    async def sleep_until(self, moment: datetime) -> None:
        """Wait until the clock reads `moment` or later."""


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        """Return the wall-clock time in UTC."""
        return datetime.now(timezone.utc)

    async def sleep_until(self, moment: datetime) -> None:
        """Sleep in real time until `moment`."""
        await asyncio.sleep(max(0.0, (moment - self.now()).total_seconds()))


class SimulatedClock:
    """Time that runs `speed` times faster than the wall clock from a real `epoch`.

    Every process computes the same simulated time from the same settings, with no
    coordination: simulated = start + (wall - epoch) * speed.
    """

    def __init__(
        self,
        epoch: datetime,
        speed: float,
        start: datetime | None = None,
        until: datetime | None = None,
        wall: SystemClock | None = None,
    ):
        if any(m is not None and m.tzinfo is None for m in (epoch, start, until)):
            raise ValueError("clock epoch, start and until must be timezone-aware")
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.epoch = epoch
        self.speed = speed
        self.start = start or epoch
        self.until = until
        self._wall = wall or SystemClock()

    def now(self) -> datetime:
        """Return the simulated time; it stands still at `until`, so a finished run can be counted at rest."""
        elapsed = (self._wall.now() - self.epoch).total_seconds()
        moment = self.start + timedelta(seconds=elapsed * self.speed)
        return min(moment, self.until) if self.until else moment

    async def sleep_until(self, moment: datetime) -> None:
        """Sleep the real time it takes the simulation to reach `moment` (forever past `until`)."""
        if self.until and moment > self.until:
            await asyncio.Event().wait()
        await asyncio.sleep(max(0.0, (moment - self.now()).total_seconds() / self.speed))


class ManualClock:
    """A clock tests move by hand; sleepers wake when it is advanced past their moment."""

    def __init__(self, start: datetime):
        if start.tzinfo is None:
            raise ValueError("clock start must be timezone-aware")
        self._now = start
        self._moved = asyncio.Event()

    def now(self) -> datetime:
        """Return the time the test set."""
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward and wake every sleeper."""
        if delta < timedelta(0):
            raise ValueError("a clock never goes back")
        self._now += delta
        self._moved.set()
        self._moved = asyncio.Event()

    async def sleep_until(self, moment: datetime) -> None:
        """Wait until a test advances the clock to `moment` or later."""
        while self._now < moment:
            await self._moved.wait()


def clock_from_settings(settings: ClockSettings) -> Clock:
    """Build the clock the settings describe: the system clock unless a simulation is configured."""
    if settings.epoch is None:
        return SystemClock()
    return SimulatedClock(settings.epoch, settings.speed, settings.start, settings.until)

