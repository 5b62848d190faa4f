"""Durations as Ocypod writes them (the Rust `humantime` forms): `"30s"`, `"1h 15m 5s"`,
`"1w2d7h"`, `"0s"`. Read into whole seconds, shown the way Ocypod shows them back."""

from __future__ import annotations

import re

from jobd.errors import BadRequest

_MINUTE, _HOUR, _DAY = 60, 3600, 86400
#: humantime's month and year: 30.44 and 365.25 days.
_MONTH, _YEAR = 2_630_016, 31_557_600
#: Unit names and their length in nanoseconds, as humantime reads them.
_UNITS: dict[str, int] = {}
for _names, _ns in (
    (("nanos", "nsec", "ns"), 1),
    (("usec", "us", "µs"), 1_000),
    (("millis", "msec", "ms"), 1_000_000),
    (("seconds", "second", "secs", "sec", "s"), 10**9),
    (("minutes", "minute", "mins", "min", "m"), _MINUTE * 10**9),
    (("hours", "hour", "hrs", "hr", "h"), _HOUR * 10**9),
    (("days", "day", "d"), _DAY * 10**9),
    (("weeks", "week", "w"), 7 * _DAY * 10**9),
    (("months", "month", "M"), _MONTH * 10**9),
    (("years", "year", "y"), _YEAR * 10**9),
):
    _UNITS.update(dict.fromkeys(_names, _ns))
_ITEM = re.compile(r" *([0-9]{1,20}) *([A-Za-zµ]+)")
#: The longest duration jobd keeps: a deadline past it could not be waited for.
LONGEST = 100 * _YEAR
EXAMPLE = '"30s", "10m", "1h 15m 5s" or "0s" (none)'


def parse(text: object, field: str) -> int:
    """Whole seconds; a 400 naming `field` for anything else."""
    if not isinstance(text, str):
        raise BadRequest(f"{field!r} must be a duration string such as {EXAMPLE}")
    total, at = 0, 0
    while at < len(text):
        item = _ITEM.match(text, at)
        if item is None or item.group(2) not in _UNITS:
            if at and text[at:].strip(" ") == "":
                break
            raise BadRequest(
                f"{field!r} is {text[:40]!r}, not a duration: write a whole number and a unit"
                f" (s, m, h, d, w), such as {EXAMPLE}"
            )
        total += int(item.group(1)) * _UNITS[item.group(2)]
        at = item.end()
    if at == 0:
        raise BadRequest(f"{field!r} is empty: give a duration such as {EXAMPLE}")
    seconds, rest = divmod(total, 10**9)
    if rest:
        raise BadRequest(f"{field!r} is {text[:40]!r}: jobd keeps durations in whole seconds")
    if seconds > LONGEST:
        raise BadRequest(f"{field!r} is {text[:40]!r}: at most 100 years")
    return seconds


def show(seconds: int) -> str:
    """`"1h 15m 5s"`; `"0s"` for none (humantime's format: years, months, days, h, m, s)."""
    if seconds <= 0:
        return "0s"
    years, rest = divmod(seconds, _YEAR)
    months, rest = divmod(rest, _MONTH)
    days, rest = divmod(rest, _DAY)
    hours, rest = divmod(rest, _HOUR)
    minutes, secs = divmod(rest, _MINUTE)
    parts = [
        f"{count}{unit}{'s' if plural and count > 1 else ''}"
        for count, unit, plural in (
            (years, "year", True),
            (months, "month", True),
            (days, "day", True),
            (hours, "h", False),
            (minutes, "m", False),
            (secs, "s", False),
        )
        if count
    ]
    return " ".join(parts)
