"""Schedule arithmetic on a made-up clock: cron in a named zone across both DST changes,
@names, @every, and clear errors for schedules and zones that cannot work."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from jobd.jobs.cron import parse, utc_stamp

pytestmark = pytest.mark.source_only

AMS = ZoneInfo("Europe/Amsterdam")


def at(*fields: int) -> float:
    """A wall-clock time in Amsterdam, as POSIX seconds."""
    return datetime(*fields, tzinfo=AMS).timestamp()


def local(moment: float) -> str:
    return datetime.fromtimestamp(moment, AMS).strftime("%Y-%m-%d %H:%M %Z")


def fires(schedule: str, start: float, count: int, zone: str = "Europe/Amsterdam") -> list[str]:
    when, found, moment = parse(schedule, zone), [], start
    for _ in range(count):
        moment = when.next_after(moment)
        found.append(local(moment))
    return found


def test_a_daily_time_keeps_to_the_wall_clock_across_dst():
    assert fires("0 2 * * *", at(2026, 3, 27, 12, 0), 3) == [
        "2026-03-28 02:00 CET",
        "2026-03-29 03:00 CEST",  # 02:00 does not exist that night: the first instant after
        "2026-03-30 02:00 CEST",
    ]
    assert fires("30 2 * * *", at(2026, 10, 24, 12, 0), 3) == [
        "2026-10-25 02:30 CEST",  # 02:30 happens twice that night: it fires once
        "2026-10-26 02:30 CET",
        "2026-10-27 02:30 CET",
    ]


def test_names_and_every():
    assert fires("@daily", at(2026, 1, 1, 10, 0), 2) == [
        "2026-01-02 00:00 CET",
        "2026-01-03 00:00 CET",
    ]
    assert fires("@hourly", at(2026, 1, 1, 10, 30), 2) == [
        "2026-01-01 11:00 CET",
        "2026-01-01 12:00 CET",
    ]
    every = parse("@every 15m")
    assert every.next_after(1000.0) == 1000.0 + 900
    assert parse("@every 2s").next_after(5.0) == 7.0


def test_the_zone_decides_which_instants_match():
    utc = parse("0 2 * * *", "UTC").next_after(at(2026, 6, 1, 0, 0))
    assert utc_stamp(utc) == "20260601T020000Z"
    ams = parse("0 2 * * *", "Europe/Amsterdam").next_after(at(2026, 6, 1, 0, 0))
    assert utc_stamp(ams) == "20260601T000000Z"  # 02:00 CEST


@pytest.mark.parametrize(
    ("schedule", "zone", "says"),
    [
        ("61 * * * *", "UTC", "not a valid cron"),
        ("* * * *", "UTC", "5 fields"),
        ("@fortnightly", "UTC", "@every"),
        ("@every soon", "UTC", "not a duration"),
        ("@every 0.5s", "UTC", "too often"),
        ("", "UTC", "cron text"),
        (5, "UTC", "cron text"),
        ("0 2 * * *", "Mars/Olympus", "not a known time zone"),
        ("0 2 * * *", "", "zone name"),
    ],
)
def test_schedules_that_cannot_work_say_why(schedule, zone, says):
    with pytest.raises(ValueError, match=says):
        parse(schedule, zone)
