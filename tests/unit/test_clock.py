"""Clocks: the simulated clock is shared by construction; the manual clock drives timer tests."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from services.runtime.clock import (
    ManualClock,
    SimulatedClock,
    SystemClock,
    clock_from_settings,
)
from services.runtime.settings import ClockSettings

EPOCH = datetime(2026, 3, 1, tzinfo=timezone.utc)


class FixedWall(SystemClock):
    def __init__(self, moment):
        self.moment = moment

    def now(self):
        return self.moment


# (real seconds since epoch, speed, simulated start, expected simulated time)
SIMULATIONS = [
    (0, 43200, None, EPOCH),
    (60, 43200, None, EPOCH + timedelta(days=30)),
    (1, 1, None, EPOCH + timedelta(seconds=1)),
    (10, 8640, datetime(2026, 9, 28, tzinfo=timezone.utc), datetime(2026, 9, 29, tzinfo=timezone.utc)),
]


@pytest.mark.parametrize("real, speed, start, expected", SIMULATIONS)
def test_simulated_time(real, speed, start, expected):
    clock = SimulatedClock(EPOCH, speed, start, wall=FixedWall(EPOCH + timedelta(seconds=real)))
    assert clock.now() == expected


def test_two_processes_with_the_same_settings_agree():
    wall = FixedWall(EPOCH + timedelta(seconds=7))
    first = SimulatedClock(EPOCH, 1000, wall=wall)
    second = SimulatedClock(EPOCH, 1000, wall=wall)
    assert first.now() == second.now() == EPOCH + timedelta(seconds=7000)


async def test_simulated_sleep_takes_real_time_divided_by_speed():
    clock = SimulatedClock(SystemClock().now(), speed=3600)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await clock.sleep_until(clock.now() + timedelta(minutes=30))
    assert loop.time() - started < 5  # half an hour simulated is half a real second


def test_settings_select_the_clock():
    assert isinstance(clock_from_settings(ClockSettings()), SystemClock)
    simulated = clock_from_settings(ClockSettings(speed=100, epoch=EPOCH))
    assert isinstance(simulated, SimulatedClock) and simulated.speed == 100


def test_simulation_needs_an_epoch():
    with pytest.raises(ValueError, match="FENGQIAO_CLOCK_EPOCH"):
        ClockSettings(speed=100)


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulatedClock(datetime(2026, 1, 1), 10)
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 1, 1))


async def test_manual_clock_wakes_sleepers_when_advanced():
    clock = ManualClock(EPOCH)
    sleeper = asyncio.create_task(clock.sleep_until(EPOCH + timedelta(hours=2)))
    clock.advance(timedelta(hours=1))
    await asyncio.sleep(0)
    assert not sleeper.done()
    clock.advance(timedelta(hours=1))
    await asyncio.wait_for(sleeper, 1)
    assert clock.now() == EPOCH + timedelta(hours=2)


def test_manual_clock_never_goes_back():
    with pytest.raises(ValueError, match="never goes back"):
        ManualClock(EPOCH).advance(timedelta(seconds=-1))


def test_simulated_time_stands_still_at_until():
    until = EPOCH + timedelta(days=10)
    clock = SimulatedClock(EPOCH, 86400, until=until, wall=FixedWall(EPOCH + timedelta(seconds=30)))
    assert clock.now() == until
    assert ClockSettings(speed=2, epoch=EPOCH, until=until).until == until


async def test_sleeping_past_until_never_returns():
    clock = SimulatedClock(SystemClock().now(), 86400, until=SystemClock().now() + timedelta(days=1))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(clock.sleep_until(clock.now() + timedelta(days=2)), 0.2)
