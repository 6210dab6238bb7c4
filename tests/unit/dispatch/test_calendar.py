"""Deadlines across the Spring Festival and National Day holidays, with their make-up working days (调休);
the holidays file for the years the library lacks, its validation, and how far ahead the calendar is known."""

import logging
from datetime import date, datetime, timedelta
from pathlib import Path

import chinese_calendar
import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.dispatch.app import create_app, holidays_holder
from services.dispatch.calendar import (
    CHINA,
    SHIPPED_HOLIDAYS,
    CoverageWatch,
    HolidaysError,
    WorkingCalendar,
    covered_days,
    covered_until,
    load_holidays,
    holidays_id,
    parse_holidays,
)
from services.dispatch.calendar import holidays_text as written_back
from services.dispatch.metrics import DispatchMetrics
from services.dispatch.settings import DispatchSettings
from services.runtime.settings import KafkaSettings

CALENDAR = WorkingCalendar()
# Invented test data in the file's format, not the State Council's 2027 notice.
TEST_2027 = Path(__file__).parents[2] / "data" / "holidays-2027.yaml"
WITH_2027 = WorkingCalendar(load_holidays(TEST_2027))
# chinese_calendar 1.11's years, written out so these cases do not move with the library.
LIBRARY = range(2004, 2027)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CHINA)


# (calendar, case, issued, working days, due): the library alone, then the library with the 2027 test file.
DEADLINES = [
    (CALENDAR, "plain week", "2026-03-02T10:00", 3, "2026-03-05T10:00"),
    (CALENDAR, "over a weekend", "2026-03-06T10:00", 3, "2026-03-11T10:00"),
    # Spring Festival 2026: Feb 15-23 off; Saturdays Feb 14 and Feb 28 are make-up working days.
    (CALENDAR, "into the Spring Festival make-up Saturday", "2026-02-12T09:00", 2, "2026-02-14T09:00"),
    (CALENDAR, "across the Spring Festival", "2026-02-13T09:00", 3, "2026-02-25T09:00"),
    (CALENDAR, "level 3 across the Spring Festival", "2026-02-10T09:00", 15, "2026-03-09T09:00"),
    # National Day 2026: Oct 1-7 off; Sunday Sep 20 and Saturday Oct 10 are make-up working days.
    (CALENDAR, "across National Day", "2026-09-30T15:00", 1, "2026-10-08T15:00"),
    (CALENDAR, "National Day make-up Saturday", "2026-10-09T15:00", 1, "2026-10-10T15:00"),
    (CALENDAR, "level 2 across National Day", "2026-09-29T15:00", 7, "2026-10-14T15:00"),
    # The calendar remembers each day's walks: the same start day keeps its own time and length.
    (CALENDAR, "same day as the level 2 case, earlier", "2026-09-29T08:30", 7, "2026-10-14T08:30"),
    (CALENDAR, "same day as the level 2 case, shorter", "2026-09-29T15:00", 1, "2026-09-30T15:00"),
    # With the 2027 test file: Spring Festival Feb 5-11 off,
    # Sunday Jan 31 and Saturday Feb 20 worked; New Year Jan 1-3 off; Saturday Oct 9 worked.
    (WITH_2027, "into the Spring Festival", "2027-02-04T09:00", 1, "2027-02-12T09:00"),
    (WITH_2027, "across the Spring Festival and a weekend", "2027-02-04T09:00", 3, "2027-02-16T09:00"),
    (WITH_2027, "level 3 across the Spring Festival", "2027-02-01T09:00", 15, "2027-02-26T09:00"),
    (WITH_2027, "make-up Saturday after the festival", "2027-02-19T16:00", 1, "2027-02-20T16:00"),
    (WITH_2027, "make-up Sunday before the festival", "2027-01-29T16:00", 1, "2027-01-31T16:00"),
    (WITH_2027, "library's 2026 into the file's New Year", "2026-12-31T11:00", 1, "2027-01-04T11:00"),
    (WITH_2027, "National Day make-up Saturday of 2027", "2027-10-08T11:00", 1, "2027-10-09T11:00"),
    (WITH_2027, "a day the file does not list works Monday to Friday", "2027-10-29T11:00", 1, "2027-11-01T11:00"),
]


@pytest.mark.parametrize("calendar, case, issued, days, due", DEADLINES, ids=[d[1] for d in DEADLINES])
def test_working_day_deadlines(calendar, case, issued, days, due):
    assert calendar.add_working_days(local(issued), days) == local(due)


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


def test_without_the_file_2027_counts_weekends_only(caplog):
    assert WorkingCalendar().add_working_days(local("2027-02-04T09:00"), 1) == local("2027-02-05T09:00")
    assert "no statutory calendar for 2027" in caplog.text


def test_a_year_in_the_file_replaces_the_librarys_whole_year(tmp_path):
    path = tmp_path / "holidays.yaml"
    path.write_text(
        "version: '1'\nyears:\n"
        "  - {year: 2031, notice: test, days_off: {测试: [2031-01-06]}, make_up_workdays: [2031-01-04]}\n"
        "  - {year: 2026, notice: test, days_off: {测试: [2026-03-03]}}\n",
        encoding="utf-8",
    )
    calendar = WorkingCalendar(load_holidays(path))
    assert calendar.add_working_days(local("2031-01-03T10:00"), 1) == local("2031-01-04T10:00")
    assert calendar.add_working_days(local("2031-01-04T10:00"), 1) == local("2031-01-07T10:00")
    assert calendar.add_working_days(local("2026-03-02T10:00"), 1) == local("2026-03-04T10:00")
    # The library's Spring Festival no longer applies to 2026: the file lists none.
    assert calendar.is_working_day(date(2026, 2, 17)) and not calendar.is_working_day(date(2026, 2, 14))


def test_the_shipped_file_is_the_librarys_2026_day_by_day():
    shipped = WorkingCalendar(load_holidays(SHIPPED_HOLIDAYS))
    assert shipped.file_years == {2026}
    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
    assert [d for d in days if shipped.is_working_day(d) != chinese_calendar.is_workday(d)] == []


def year_2027(**changes) -> dict:
    notice = {
        "year": 2027, "notice": "TEST DATA",
        "days_off": {"元旦": {"first": date(2027, 1, 1), "last": date(2027, 1, 3)}, "春节": {"first": date(2027, 2, 5), "last": date(2027, 2, 11)}},
        "make_up_workdays": [date(2027, 1, 31), date(2027, 2, 20)],
    }
    return notice | changes


def holidays_text(*years: dict, **top) -> str:
    return yaml.safe_dump({"version": "t1", "years": list(years)} | top, allow_unicode=True)


# (case, file text, what the error must say)
INVALID = [
    ("not a mapping", "- 2027\n", "top level must be a mapping"),
    ("no version", yaml.safe_dump({"years": []}), "version: Field required"),
    ("unknown top-level key", holidays_text(year_2027(), overrides=[]), "overrides: Extra inputs are not permitted"),
    ("unknown key in a year", holidays_text(year_2027(workdays=[])), "years[2027].workdays: Extra inputs are not permitted"),
    ("no notice reference", holidays_text({k: v for k, v in year_2027().items() if k != "notice"}), "years[2027].notice: Field required"),
    ("no days off", holidays_text(year_2027(days_off={})), "years[2027].days_off: Dictionary should have at least 1 item"),
    ("year not a number", holidays_text(year_2027(year="2027年")), "years[#1].year: Input should be a valid integer"),
    ("same year twice", holidays_text(year_2027(), year_2027()), "years: 2027 listed twice"),
    ("day off in another year", holidays_text(year_2027(days_off={"元旦": [date(2026, 12, 31), date(2027, 1, 1)]})),
     "years[2027]: days_off.元旦: 2026-12-31 is not in 2027"),
    ("make-up day in another year", holidays_text(year_2027(make_up_workdays=[date(2028, 1, 1)])),
     "years[2027]: make_up_workdays: 2028-01-01 is not in 2027"),
    ("make-up day on a weekday", holidays_text(year_2027(make_up_workdays=[date(2027, 2, 15)])),
     "years[2027]: make_up_workdays: 2027-02-15 is a Monday, not a Saturday or Sunday"),
    ("make-up day also a day off", holidays_text(year_2027(make_up_workdays=[date(2027, 2, 6)])),
     "years[2027]: make_up_workdays: 2027-02-06 is also a day off"),
    ("day off listed under two holidays", holidays_text(year_2027(days_off={"元旦": [date(2027, 1, 1)], "春节": [date(2027, 1, 1)]})),
     "years[2027]: days_off: 2027-01-01 is listed twice"),
    ("day off listed twice in one holiday", holidays_text(year_2027(days_off={"春节": [date(2027, 2, 5), date(2027, 2, 5)]})),
     "years[2027]: days_off: 2027-02-05 is listed twice"),
    ("make-up day listed twice", holidays_text(year_2027(make_up_workdays=[date(2027, 2, 20), date(2027, 2, 20)])),
     "years[2027]: make_up_workdays: 2027-02-20 is listed twice"),
    ("range ending before it starts", holidays_text(year_2027(days_off={"春节": {"first": date(2027, 2, 11), "last": date(2027, 2, 5)}})),
     "years[2027].days_off.春节.range: last must be from first to 31 days after it"),
    ("range with an unknown key", holidays_text(year_2027(days_off={"春节": {"from": date(2027, 2, 5), "last": date(2027, 2, 11)}})),
     "years[2027].days_off.春节.range.from: Extra inputs are not permitted"),
    ("a date that is not one", holidays_text(year_2027(days_off={"清明节": ["April 5"]})),
     "years[2027].days_off.清明节.dates.0: Input should be a valid date"),
]


@pytest.mark.parametrize("case, text, message", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_holiday_files_are_refused_naming_the_year_and_key(case, text, message):
    with pytest.raises(HolidaysError) as refused:
        parse_holidays(text)
    assert message in str(refused.value)


# (case, today, years in the file, covered until, days covered)
COVERAGE = [
    ("end of November, no file", date(2026, 11, 30), set(), date(2026, 12, 31), 31),
    ("end of November, next year's file", date(2026, 11, 30), {2027}, date(2027, 12, 31), 396),
    ("last covered day", date(2026, 12, 31), set(), date(2026, 12, 31), 0),
    ("a year nobody knows", date(2027, 1, 1), set(), None, 0),
    ("a year only the file knows", date(2027, 1, 1), {2027}, date(2027, 12, 31), 364),
    ("a gap stops the coverage", date(2026, 11, 30), {2028}, date(2026, 12, 31), 31),
    ("two years ahead", date(2026, 11, 30), {2027, 2028}, date(2028, 12, 31), 762),
    ("a file year the library also has", date(2026, 6, 1), {2026}, date(2026, 12, 31), 213),
    ("before the library", date(2003, 6, 1), set(), None, 0),
    ("replaying an old year", date(2025, 12, 1), set(), date(2026, 12, 31), 395),
]


@pytest.mark.parametrize("case, today, file_years, until, days", COVERAGE, ids=[c[0] for c in COVERAGE])
def test_coverage(case, today, file_years, until, days):
    assert covered_until(today, LIBRARY, file_years) == until
    assert covered_days(today, LIBRARY, file_years) == days


def coverage_watch(calendar: WorkingCalendar) -> tuple[CoverageWatch, CollectorRegistry]:
    registry = CollectorRegistry()
    return CoverageWatch(calendar, DispatchMetrics(registry).calendar_covered_days), registry


# (moment, days covered, warned): one watch, in this order; a warning at most once per day in China.
REFRESHES = [
    ("2026-11-30T10:00:00+08:00", 31, True),
    ("2026-11-30T18:00:00+08:00", 31, False),
    ("2026-11-30T17:00:00+00:00", 30, True),  # already December 1st in Beijing
    ("2026-12-01T09:00:00+08:00", 30, False),
    ("2026-12-31T09:00:00+08:00", 0, True),
]


def test_short_coverage_is_exported_and_warned_once_a_day(caplog):
    watch, registry = coverage_watch(WorkingCalendar())
    for moment, days, warned in REFRESHES:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="services.dispatch.calendar"):
            assert watch.refresh(datetime.fromisoformat(moment)) == days
        assert registry.get_sample_value("fengqiao_dispatch_calendar_covered_days") == days
        assert ("covered only" in caplog.text) == warned, moment


def test_next_years_file_silences_the_warning(caplog):
    watch, registry = coverage_watch(WorkingCalendar(load_holidays(TEST_2027)))
    with caplog.at_level(logging.WARNING, logger="services.dispatch.calendar"):
        assert watch.refresh(local("2026-11-30T10:00")) == 396
    assert registry.get_sample_value("fengqiao_dispatch_calendar_covered_days") == 396
    assert "covered only" not in caplog.text


def test_the_calendar_follows_a_reloaded_file():
    registry = CollectorRegistry()
    holder = holidays_holder(SHIPPED_HOLIDAYS.read_text(encoding="utf-8"), DispatchMetrics(registry))
    calendar = WorkingCalendar(holder)
    assert calendar.add_working_days(local("2027-02-04T09:00"), 1) == local("2027-02-05T09:00")
    assert calendar.covered_days(date(2026, 11, 30)) == 31
    assert holder.offer(TEST_2027.read_text(encoding="utf-8"), "file")
    assert calendar.add_working_days(local("2027-02-04T09:00"), 1) == local("2027-02-12T09:00")
    assert calendar.covered_days(date(2026, 11, 30)) == 396
    assert registry.get_sample_value("fengqiao_dispatch_holidays_active", {"version": "test-2027.1"}) == 1
    assert not holder.offer("version: broken\nyears: [{year: 2027}]\n", "file")
    assert calendar.add_working_days(local("2027-02-04T09:00"), 1) == local("2027-02-12T09:00")


def test_the_app_reads_the_holidays_file_at_start(tmp_path):
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    registry = CollectorRegistry()
    create_app(DispatchSettings(data_dir=tmp_path, holidays_file=TEST_2027), kafka, registry=registry)
    assert registry.get_sample_value("fengqiao_dispatch_holidays_active", {"version": "test-2027.1"}) == 1
    shipped = CollectorRegistry()
    create_app(DispatchSettings(data_dir=tmp_path), kafka, registry=shipped)
    assert shipped.get_sample_value("fengqiao_dispatch_holidays_active", {"version": parse_holidays(SHIPPED_HOLIDAYS.read_text()).version}) == 1
    broken = tmp_path / "holidays.yaml"
    broken.write_text(holidays_text(year_2027(make_up_workdays=[date(2027, 2, 15)])), encoding="utf-8")
    with pytest.raises(HolidaysError, match=r"years\[2027\]: make_up_workdays"):
        create_app(DispatchSettings(data_dir=tmp_path, holidays_file=broken), kafka, registry=CollectorRegistry())


@pytest.mark.parametrize("path", [SHIPPED_HOLIDAYS, TEST_2027], ids=["shipped", "test_2027"])
def test_a_holidays_file_written_back_reads_into_an_equal_file_under_the_same_id(path):
    holidays = load_holidays(path)
    text = written_back(holidays)
    assert parse_holidays(text) == holidays
    assert holidays_id(parse_holidays(text)) == holidays_id(holidays, text) and holidays_id(holidays).startswith(f"{holidays.version}@")
