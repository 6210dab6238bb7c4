"""Working days on China's statutory calendar: holidays and make-up working days (调休) from `chinese_calendar`."""

import logging
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import yaml
from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)

CHINA = ZoneInfo("Asia/Shanghai")


class CalendarOverrides(BaseModel):
    """Dates the library does not know yet (a new year's schedule), as published by the State Council."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workdays: list[date] = []
    holidays: list[date] = []


def load_overrides(path: Path | None) -> CalendarOverrides:
    """Read an overrides file (YAML with `workdays` and `holidays` lists); none means no overrides."""
    if path is None:
        return CalendarOverrides()
    return CalendarOverrides.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


_REMEMBERED_DAYS = 20_000  # half a century of days: enough for any replay, bounded all the same


class WorkingCalendar:
    """Decides working days: overrides first, then the library, then weekends only for an unknown year."""

    def __init__(self, overrides: CalendarOverrides | None = None, zone: ZoneInfo = CHINA):
        overrides = overrides or CalendarOverrides()
        self._override = {d: True for d in overrides.workdays} | {d: False for d in overrides.holidays}
        self.zone = zone
        self._warned: set[int] = set()
        # The library scans its whole table on every call; a deadline walks up to a few weeks of days.
        self._known: dict[date, bool] = {}
        # Every order of a batch starts on the same day: the walk is done once per day and length.
        self._after: dict[tuple[date, int], date] = {}

    def is_working_day(self, day: date) -> bool:
        """Tell whether government departments work on `day`."""
        if day not in self._known:
            if len(self._known) > _REMEMBERED_DAYS:
                self._known.clear()
            self._known[day] = self._decide(day)
        return self._known[day]

    def _decide(self, day: date) -> bool:
        if day in self._override:
            return self._override[day]
        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            if day.year not in self._warned:
                self._warned.add(day.year)
                log.warning("no statutory calendar for %d: counting weekends only; add an overrides file", day.year)
            return day.weekday() < 5

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """Return the same local time of day `days` working days after `start` (in China's time zone)."""
        local = start.astimezone(self.zone)
        walk = (local.date(), days)
        if walk not in self._after:
            if len(self._after) > _REMEMBERED_DAYS:
                self._after.clear()
            self._after[walk] = self._walk(*walk)
        return datetime.combine(self._after[walk], time(local.hour, local.minute, local.second, local.microsecond), self.zone)

    def _walk(self, day: date, days: int) -> date:
        while days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                days -= 1
        return day
