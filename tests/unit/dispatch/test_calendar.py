"""Deadlines across the Spring Festival and National Day holidays, with their make-up working days (调休)."""

from datetime import date, datetime

import pytest

from services.dispatch.calendar import (
    CHINA,
    CalendarOverrides,
    WorkingCalendar,
    load_overrides,
)

CALENDAR = WorkingCalendar()


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CHINA)


# (case, issued, working days, due)
DEADLINES = [
    ("plain week", "2026-03-02T10:00", 3, "2026-03-05T10:00"),
    ("over a weekend", "2026-03-06T10:00", 3, "2026-03-11T10:00"),
    # Spring Festival 2026: Feb 15-23 off; Saturdays Feb 14 and Feb 28 are make-up working days.
    ("into the Spring Festival make-up Saturday", "2026-02-12T09:00", 2, "2026-02-14T09:00"),
    ("across the Spring Festival", "2026-02-13T09:00", 3, "2026-02-25T09:00"),
    ("level 3 across the Spring Festival", "2026-02-10T09:00", 15, "2026-03-09T09:00"),
    # National Day 2026: Oct 1-7 off; Sunday Sep 20 and Saturday Oct 10 are make-up working days.
    ("across National Day", "2026-09-30T15:00", 1, "2026-10-08T15:00"),
    ("National Day make-up Saturday", "2026-10-09T15:00", 1, "2026-10-10T15:00"),
    ("level 2 across National Day", "2026-09-29T15:00", 7, "2026-10-14T15:00"),
    # The calendar remembers each day's walks: the same start day keeps its own time and length.
    ("same day as the level 2 case, earlier", "2026-09-29T08:30", 7, "2026-10-14T08:30"),
    ("same day as the level 2 case, shorter", "2026-09-29T15:00", 1, "2026-09-30T15:00"),
]


@pytest.mark.parametrize("case, issued, days, due", DEADLINES, ids=[d[0] for d in DEADLINES])
def test_working_day_deadlines(case, issued, days, due):
    assert CALENDAR.add_working_days(local(issued), days) == local(due)


def test_make_up_days_and_holidays():
    assert CALENDAR.is_working_day(date(2026, 2, 14))  # Saturday, make-up
    assert not CALENDAR.is_working_day(date(2026, 2, 17))  # Spring Festival
    assert not CALENDAR.is_working_day(date(2026, 10, 5))  # National Day
    assert CALENDAR.is_working_day(date(2026, 10, 10))  # Saturday, make-up


def test_utc_input_is_counted_in_china_time():
    # 2026-03-06 17:00 UTC is already Saturday 01:00 in Beijing.
    due = CALENDAR.add_working_days(datetime.fromisoformat("2026-03-06T17:00:00+00:00"), 1)
    assert due == local("2026-03-09T01:00")


def test_unknown_year_falls_back_to_weekends_and_says_so(caplog):
    calendar = WorkingCalendar()
    assert calendar.add_working_days(local("2031-01-03T10:00"), 1) == local("2031-01-06T10:00")  # Fri -> Mon
    assert "no statutory calendar for 2031" in caplog.text


def test_overrides_win_over_the_library_and_the_fallback(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text("holidays: [2031-01-06]\nworkdays: [2031-01-04]\n")
    calendar = WorkingCalendar(load_overrides(path))
    assert calendar.add_working_days(local("2031-01-03T10:00"), 1) == local("2031-01-04T10:00")
    assert calendar.add_working_days(local("2031-01-04T10:00"), 1) == local("2031-01-07T10:00")
    assert WorkingCalendar(CalendarOverrides(holidays=[date(2026, 3, 3)])).add_working_days(local("2026-03-02T10:00"), 1) == local("2026-03-04T10:00")
