"""When a schedule fires: standard 5-field cron, the usual `@hourly`-style names and
`@every <duration>`, in a named time zone (croniter for cron, zoneinfo for zones).

Times are POSIX seconds in and out; the zone only decides which instants match. Across a
DST change a cron schedule keeps to wall-clock times: a time that does not exist that day
(spring forward) fires at the first instant after it, and a time that happens twice (fall
back) fires once, the first time.

Nothing stored here can stall a loop later: `@every` is bounded both ways, a cron schedule must
fire within HORIZON_YEARS of any moment it is asked about, and a zone must be a zone file.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from jobd.config.units import parse_duration

#: The shortest `@every`: below it a schedule would be a busy loop.
MIN_EVERY = 1.0
#: The longest `@every`: a year. Longer is a typo, and far enough out breaks a loop's wait.
MAX_EVERY = 365 * 86400.0
#: A cron schedule whose next fire is further away than this is refused (or, stored by other
#: means, disabled): 30 February never comes. Ten years keeps 29 February across 2100.
HORIZON_YEARS = 10
#: The last second datetime can show (9999-12-31T23:59:59Z): fires stay below it.
_LAST_MOMENT = 253402300799.0
#: Zone names are short paths of letters, digits and `_+-` (the longest real one is 32).
_ZONE = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_ZONE_LONGEST = 64
_TEXT_LONGEST = 200
_NAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


@dataclass(frozen=True)
class When:
    """A parsed schedule and its zone."""

    text: str
    zone: str
    every: float | None  # seconds, for `@every`; None for cron

    def next_after(self, moment: float) -> float:
        """The first fire strictly after `moment`; ValueError if there is none within the
        horizon (or from 1970 to 9999)."""
        fire = moment + self.every if self.every is not None else self._next_cron(moment)
        if not 0 <= fire <= _LAST_MOMENT:  # NaN too
            raise ValueError(
                f"'schedule' {self.text!r} would next fire outside the years 1970 to 9999"
            )
        return fire

    def _next_cron(self, moment: float) -> float:
        try:
            start = datetime.fromtimestamp(moment, ZoneInfo(self.zone))
            fires = croniter(self.text, start, max_years_between_matches=HORIZON_YEARS)
            fire = fires.get_next(datetime)
            # the same wall-clock time again (the second pass of a fall-back hour): once is
            # enough
            while fire.replace(tzinfo=None) == start.replace(tzinfo=None):
                fire = fires.get_next(datetime)
        except (CroniterError, OverflowError, OSError):
            raise ValueError(
                f"'schedule' {self.text!r} does not fire within {HORIZON_YEARS} years (a date"
                " that never comes, such as 30 February?)"
            ) from None
        return float(fire.timestamp())

    def latest_by(self, moment: float) -> float:
        """The latest cron fire at or before `moment`, found backwards (not by stepping)."""
        try:
            start = datetime.fromtimestamp(math.floor(moment) + 1, ZoneInfo(self.zone))
            fires = croniter(self.text, start, max_years_between_matches=HORIZON_YEARS)
            fire = float(fires.get_prev(datetime).timestamp())
        except (CroniterError, OverflowError, OSError):
            raise ValueError(
                f"'schedule' {self.text!r} did not fire within {HORIZON_YEARS} years"
            ) from None
        return fire if fire <= moment else moment

    def smallest_gap(self, moment: float, fires: int = 100) -> float:
        """The shortest time between two of the next `fires` fires after `moment`."""
        if self.every is not None:
            return self.every
        gaps, fire = [], self.next_after(moment)
        for _ in range(fires - 1):
            following = self.next_after(fire)
            gaps.append(following - fire)
            fire = following
        return min(gaps)


def parse(text: object, zone: object = "UTC", now: float | None = None) -> When:
    """A schedule as an API or file gives it, with a fire within the horizon of `now`
    (default: the clock); ValueError with a message for a person."""
    check_zone(zone)
    when = _parse_text(text, str(zone))
    when.next_after(time.time() if now is None else now)
    return when


def check_zone(zone: object) -> None:
    if not isinstance(zone, str) or not zone:
        raise ValueError(f"'timezone' must be a zone name like Europe/Amsterdam, not {zone!r}")
    shown = zone if len(zone) <= _ZONE_LONGEST else zone[:_ZONE_LONGEST] + "..."
    unknown = f"'timezone' {shown!r} is not a known time zone (e.g. Europe/Amsterdam, UTC)"
    if len(zone) > _ZONE_LONGEST or not _ZONE.fullmatch(zone):
        raise ValueError(unknown)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder such as Europe
        raise ValueError(unknown) from None


def _parse_text(text: object, zone: str) -> When:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"'schedule' must be cron text like '0 2 * * *', not {text!r}")
    if len(text) > _TEXT_LONGEST:
        raise ValueError(f"'schedule' is longer than {_TEXT_LONGEST} characters")
    text = " ".join(text.split())
    if text.lower().startswith("@every "):
        try:
            every = parse_duration(text[len("@every ") :])
        except ValueError as exc:
            raise ValueError(f"'schedule' {text!r}: {exc}") from None
        if every < MIN_EVERY:
            raise ValueError(f"'schedule' {text!r} is too often: @every takes 1s at least")
        if every > MAX_EVERY:
            raise ValueError(f"'schedule' {text!r} is too long: @every takes 365d at most")
        return When(text, zone, every)
    if text.startswith("@") and text.lower() not in _NAMES:
        raise ValueError(
            f"'schedule' {text!r} is not one of {', '.join(_NAMES)} or '@every <duration>'"
        )
    if not text.startswith("@") and len(text.split()) != 5:
        raise ValueError(f"'schedule' {text!r} must have 5 fields (minute hour day month weekday)")
    if not croniter.is_valid(text):
        raise ValueError(f"'schedule' {text!r} is not a valid cron expression{_which(text)}")
    return When(text.lower() if text.startswith("@") else text, zone, None)


#: The five cron fields, in order, and what each takes.
_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day of week", "0-6 or sun-sat"),
)


def _which(text: str) -> str:
    """The fields that are wrong, each tried alone among `*`s, as words; empty if no one
    field is wrong by itself."""
    parts = text.split()
    wrong = [
        f"its {name} field {parts[i]!r} is not {takes} (or *, a list, a range, a step)"
        for i, (name, takes) in enumerate(_FIELDS)
        if not croniter.is_valid(" ".join(parts[i] if j == i else "*" for j in range(5)))
    ]
    return ": " + "; ".join(wrong) if wrong else ""


def utc_stamp(moment: float) -> str:
    """A fire time as it appears in a run's job ID: 20261129T020000Z."""
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
