"""Working days on China's statutory calendar: the State Council's holiday notices as data, then `chinese_calendar`.

Each November the State Council publishes the next year's notice (国务院办公厅关于某年部分节假日安排的通知).
Operators add it to the holidays file (`DISPATCH_HOLIDAYS_FILE`; services/dispatch/holidays.yaml holds 2026):

    version: "2027.1"                 # change it with every edit: dispatch reloads the file when it changes
    years:
      - year: 2027
        notice: 国办发明电〔2026〕N号    # the notice's reference (文号), as text
        days_off:                     # by holiday: a range, both ends included, or a list of dates
          春节: {first: 2027-02-05, last: 2027-02-11}
          清明节: [2027-04-05]
        make_up_workdays: [2027-01-31, 2027-02-20]   # 调休上班: Saturdays and Sundays only

A year in the file is wholly described by it: a day it does not list works Monday to Friday. A year absent
from the file comes from `chinese_calendar` (2004-2026 in 1.11), else counts weekends only, with a warning.
"""

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import chinese_calendar
import yaml
from prometheus_client import Gauge
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from services.runtime.reload import Reloadable
from services.runtime.yamlfile import yaml_mapping

log = logging.getLogger(__name__)

CHINA = ZoneInfo("Asia/Shanghai")

# The library refuses any year outside its table, and its table has no gaps.
LIBRARY_YEARS = frozenset(range(min(chinese_calendar.holidays).year, max(chinese_calendar.holidays).year + 1))

# The CalendarCoverageLow alert's threshold too: the next year's notice comes out in November, two months ahead.
COVERAGE_WARNING_DAYS = 60

_Strict = ConfigDict(extra="forbid", frozen=True, strict=True)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# The longest statutory break so far is ten days (Spring Festival 2020): a longer range is a typing mistake.
_LONGEST_BREAK = timedelta(days=31)


class HolidaysError(ValueError):
    """A holidays file that cannot be used; the message names the year and the key."""


class DayRange(BaseModel):
    """Consecutive days off, both ends included."""

    model_config = _Strict

    first: date
    last: date

    @model_validator(mode="after")
    def _ordered(self) -> "DayRange":
        if not self.first <= self.last <= self.first + _LONGEST_BREAK:
            raise ValueError(f"last must be from first to {_LONGEST_BREAK.days} days after it")
        return self

    def days(self) -> list[date]:
        """List the days of the range."""
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


def _shape(value: Any) -> str:
    return "range" if isinstance(value, dict) else "dates"


_DaysOff = Annotated[Annotated[DayRange, Tag("range")] | Annotated[list[date], Tag("dates")], Discriminator(_shape)]
_HolidayName = Annotated[str, StringConstraints(min_length=1, max_length=20)]


class YearNotice(BaseModel):
    """One year's notice: its days off by holiday and its make-up working days (调休上班)."""

    model_config = _Strict

    year: Annotated[int, Field(ge=2000, le=2100)]
    notice: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    days_off: Annotated[dict[_HolidayName, _DaysOff], Field(min_length=1)]
    make_up_workdays: list[date] = []

    def days_off_by_holiday(self) -> dict[str, list[date]]:
        """List each holiday's days off."""
        return {name: listed.days() if isinstance(listed, DayRange) else listed for name, listed in self.days_off.items()}

    def days_off_list(self) -> list[date]:
        """List every day off, holiday by holiday."""
        return [d for days in self.days_off_by_holiday().values() for d in days]

    @model_validator(mode="after")
    def _consistent(self) -> "YearNotice":
        problems = _out_of_year(self) + _overlaps(self.days_off_list(), self.make_up_workdays)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _out_of_year(notice: YearNotice) -> list[str]:
    listed = [(f"days_off.{name}", days) for name, days in notice.days_off_by_holiday().items()]
    listed.append(("make_up_workdays", notice.make_up_workdays))
    return [f"{key}: {d} is not in {notice.year}" for key, days in listed for d in days if d.year != notice.year]


def _overlaps(off: list[date], work: list[date]) -> list[str]:
    problems = [f"days_off: {d} is listed twice" for d in _repeated(off)]
    problems += [f"make_up_workdays: {d} is listed twice" for d in _repeated(work)]
    problems += [f"make_up_workdays: {d} is also a day off" for d in sorted(set(off) & set(work))]
    return problems + [f"make_up_workdays: {d} is a {_WEEKDAYS[d.weekday()]}, not a Saturday or Sunday" for d in work if d.weekday() < 5]


def _repeated(items: list) -> list:
    return sorted(item for item, times in Counter(items).items() if times > 1)


class HolidayFile(BaseModel):
    """A whole holidays file: one notice per year."""

    model_config = _Strict

    version: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,47}$")]
    years: list[YearNotice]

    @field_validator("years")
    @classmethod
    def _unique(cls, years: list[YearNotice]) -> list[YearNotice]:
        twice = _repeated([n.year for n in years])
        if twice:
            raise ValueError(f"{', '.join(map(str, twice))} listed twice")
        return years

    def decided_days(self) -> dict[date, bool]:
        """Map every listed day to whether it is worked."""
        decided = {d: False for notice in self.years for d in notice.days_off_list()}
        return decided | {d: True for notice in self.years for d in notice.make_up_workdays}


NO_HOLIDAYS = HolidayFile(version="none", years=[])
SHIPPED_HOLIDAYS = Path(__file__).parent / "holidays.yaml"  # the notices transcribed so far, read unless DISPATCH_HOLIDAYS_FILE names another


def holidays_text(holidays: HolidayFile) -> str:
    """Write a holidays file back as text that `parse_holidays` reads into an equal file."""
    # The callable discriminator of days off leaves pydantic unsure of the union's member; the dump is right (tested).
    return yaml.safe_dump(holidays.model_dump(mode="python", warnings=False), allow_unicode=True, sort_keys=True)


def holidays_id(holidays: HolidayFile, text: str | None = None) -> str:
    """Name a holidays file by version and content, so a pin always finds the very file it was taken on."""
    digest = hashlib.sha256((text or holidays_text(holidays)).encode()).hexdigest()
    return f"{holidays.version}@{digest[:12]}"


def parse_holidays(text: str) -> HolidayFile:
    """Validate a holidays file's text; raise HolidaysError naming the year and key on any problem."""
    try:
        raw = yaml_mapping(text)
        return HolidayFile.model_validate(raw)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        raise HolidaysError("; ".join(f"{_where(p['loc'], raw)}: {p['msg'].removeprefix('Value error, ')}" for p in problems)) from None
    except ValueError as error:
        raise HolidaysError(str(error)) from None


def _where(loc: tuple, raw: dict[str, Any]) -> str:
    # Operators know a notice by its year, not by its place in the list.
    if len(loc) > 1 and loc[0] == "years" and isinstance(loc[1], int):
        entry = raw["years"][loc[1]]
        year = entry.get("year") if isinstance(entry, dict) else None
        head = f"years[{year}]" if isinstance(year, int) else f"years[#{loc[1] + 1}]"
        return ".".join([head, *map(str, loc[2:])])
    return ".".join(map(str, loc)) or "file"


def load_holidays(path: Path) -> HolidayFile:
    """Read and validate a holidays file."""
    return parse_holidays(path.read_text(encoding="utf-8"))


def covered_until(today: date, library_years: Iterable[int], file_years: Iterable[int]) -> date | None:
    """Return the last day of the last year known without a gap from today's year; None if today's year is unknown."""
    known = set(library_years) | set(file_years)
    if today.year not in known:
        return None
    year = today.year
    while year + 1 in known:
        year += 1
    return date(year, 12, 31)


def covered_days(today: date, library_years: Iterable[int], file_years: Iterable[int]) -> int:
    """Count the days from today to the last covered day; 0 when today's year is unknown."""
    until = covered_until(today, library_years, file_years)
    return 0 if until is None else (until - today).days


_REMEMBERED_DAYS = 20_000  # half a century of days: enough for any replay, bounded all the same


class WorkingCalendar:
    """Decides working days: the holidays file for its years, then the library, then weekends only."""

    def __init__(self, holidays: HolidayFile | Reloadable[HolidayFile] | None = None, zone: ZoneInfo = CHINA):
        # A reloadable file is followed: the calendar starts afresh whenever another version is swapped in.
        # A swap never splits a batch: it happens between awaits, and deciding a batch's orders never awaits.
        self._source = holidays if isinstance(holidays, Reloadable) else None
        self.zone = zone
        self._use(self._source.current if self._source else holidays or NO_HOLIDAYS)

    def _use(self, holidays: HolidayFile) -> None:
        self.holidays = holidays
        self.file_years = frozenset(n.year for n in holidays.years)
        self._listed = holidays.decided_days()
        self._warned: set[int] = set()
        # The library scans its whole table on every call; a deadline walks up to a few weeks of days.
        self._known: dict[date, bool] = {}
        # Every order of a batch starts on the same day: the walk is done once per day and length.
        self._after: dict[tuple[date, int], date] = {}

    def _follow(self) -> None:
        if self._source is not None and self._source.current is not self.holidays:
            self._use(self._source.current)

    def file(self) -> HolidayFile:
        """Return the holidays file in use now."""
        self._follow()
        return self.holidays

    def is_working_day(self, day: date) -> bool:
        """Tell whether government departments work on `day`."""
        self._follow()
        return self._working(day)

    def _working(self, day: date) -> bool:
        if day not in self._known:
            if len(self._known) > _REMEMBERED_DAYS:
                self._known.clear()
            self._known[day] = self._decide(day)
        return self._known[day]

    def _decide(self, day: date) -> bool:
        if day.year in self.file_years:
            return self._listed.get(day, day.weekday() < 5)
        if day.year in LIBRARY_YEARS:
            return chinese_calendar.is_workday(day)
        if day.year not in self._warned:
            self._warned.add(day.year)
            log.warning("no statutory calendar for %d: counting weekends only; add its notice to the holidays file", day.year)
        return day.weekday() < 5

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """Return the same local time of day `days` working days after `start` (in China's time zone)."""
        self._follow()
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
            if self._working(day):
                days -= 1
        return day

    def covered_days(self, today: date) -> int:
        """Count the days from `today` to the last day the file or the library decides without a gap."""
        self._follow()
        return covered_days(today, LIBRARY_YEARS, self.file_years)


class CoverageWatch:
    """Exports how far ahead the calendar is covered; warns at most once a day when it runs short."""

    def __init__(self, calendar: WorkingCalendar, gauge: Gauge, warn_below: int = COVERAGE_WARNING_DAYS):
        self.calendar = calendar
        self.gauge = gauge
        self.warn_below = warn_below
        self._warned_on: date | None = None

    def refresh(self, now: datetime) -> int:
        """Set the gauge from China's date at `now`; return the days covered."""
        today = now.astimezone(self.calendar.zone).date()
        days = self.calendar.covered_days(today)
        self.gauge.set(days)
        if days < self.warn_below and self._warned_on != today:
            self._warned_on = today
            log.warning(
                "working-day calendar covered only %d days ahead (from %s): deadlines after that count weekends only; "
                "add next year's State Council holiday notice to the holidays file", days, today,
            )
        return days
