"""When a schedule fires: standard 5-field cron, the usual `@hourly`-style names and
`@every <duration>`, in a named time zone (croniter for cron, zoneinfo for zones).

Times are POSIX seconds in and out; the zone only decides which instants match. Across a
DST change a cron schedule keeps to wall-clock times: a time that does not exist that day
(spring forward) fires at the first instant after it, and a time that happens twice (fall
back) fires once, the first time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from jobd.config.units import parse_duration

#: The shortest `@every`: below it a schedule would be a busy loop.
MIN_EVERY = 1.0
_NAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


@dataclass(frozen=True)
class When:
    """A parsed schedule and its zone."""

    text: str
    zone: str
    every: float | None  # seconds, for `@every`; None for cron

    def next_after(self, moment: float) -> float:
        """The first fire strictly after `moment`."""
        if self.every is not None:
            return moment + self.every
        tz = ZoneInfo(self.zone)
        start = datetime.fromtimestamp(moment, tz)
        fires = croniter(self.text, start)
        fire = fires.get_next(datetime)
        # the same wall-clock time again (the second pass of a fall-back hour): once is enough
        while fire.replace(tzinfo=None) == start.replace(tzinfo=None):
            fire = fires.get_next(datetime)
        return float(fire.timestamp())


def parse(text: object, zone: object = "UTC") -> When:
    """A schedule as an API or file gives it; ValueError with a message for a person."""
    if not isinstance(zone, str) or not zone:
        raise ValueError(f"'timezone' must be a zone name like Europe/Amsterdam, not {zone!r}")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"'timezone' {zone!r} is not a known time zone (e.g. Europe/Amsterdam, UTC)"
        ) from None
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"'schedule' must be cron text like '0 2 * * *', not {text!r}")
    text = " ".join(text.split())
    if text.lower().startswith("@every "):
        try:
            every = parse_duration(text[len("@every ") :])
        except ValueError as exc:
            raise ValueError(f"'schedule' {text!r}: {exc}") from None
        if every < MIN_EVERY:
            raise ValueError(f"'schedule' {text!r} is too often: @every takes 1s at least")
        return When(text, zone, every)
    if text.startswith("@") and text.lower() not in _NAMES:
        raise ValueError(
            f"'schedule' {text!r} is not one of {', '.join(_NAMES)} or '@every <duration>'"
        )
    if not text.startswith("@") and len(text.split()) != 5:
        raise ValueError(f"'schedule' {text!r} must have 5 fields (minute hour day month weekday)")
    if not croniter.is_valid(text):
        raise ValueError(f"'schedule' {text!r} is not a valid cron expression")
    return When(text.lower() if text.startswith("@") else text, zone, None)


def utc_stamp(moment: float) -> str:
    """A fire time as it appears in a run's job ID: 20261129T020000Z."""
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
