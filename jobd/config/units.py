"""Sizes, durations and the disk reserve as people write them (`400MB`, `1h30m`, `1GB,5%`):
read the same way by every flag, variable, service declaration and upload field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    # one letter, as docker --memory, sbatch --mem and ulimit write sizes: powers of 2
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)", re.IGNORECASE)


#: The longest time limit a job may have: longer waits overflow the system's timers.
MAX_TIMEOUT = 366 * 86400.0
#: The largest memory or process limit: the largest integer the store keeps.
MAX_LIMIT = 2**63 - 1
#: The most characters of a number in a size: more than any size jobd takes could need,
#: and far below the 4300 digits past which Python refuses to convert a number.
_MAX_NUMBER = 64


def parse_whole(text: str, low: int, high: int) -> int | None:
    """`text` as a whole number from `low` to `high` (ASCII digits only), else None; a number
    with more digits than `high` is refused before it is converted, however long."""
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(high)):
        return None
    number = int(digits)
    return number if low <= number <= high else None


def parse_size(text: str) -> int:
    """`400MB`, `1.5GB`, `512MiB`, `512M` or plain bytes; MB/GB are powers of 10, MiB/GiB
    and M/G of 2. Exact, however long the number (no float rounding)."""
    match = _SIZE_RE.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(
            f"{shown(text)} is not a size (write e.g. 400MB, 1.5GB, 512MiB, 512M or bytes)"
        )
    if len(match.group(1)) > _MAX_NUMBER:
        raise ValueError(f"has a number of {len(match.group(1))} characters, too long for a size")
    return int(Fraction(match.group(1)) * _SIZE_UNITS[unit])


def format_size(size: int) -> str:
    """A size as a person reads it in a message: `512 MiB`, `1.5 GiB`, or `244.1 MiB
    (256000000 bytes)` when a binary unit does not say it exactly."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor:
            if size % factor == 0:
                return f"{size // factor} {unit}"
            if size * 10 % factor == 0:
                return f"{size / factor:.1f} {unit}"
            return f"{size / factor:.1f} {unit} ({size} bytes)"
    return f"{size} bytes"


def shown(value: object, most: int = 80) -> str:
    """A value as a message shows it: its repr, cut short (a client may send 60 KiB)."""
    text = repr(value)
    return text if len(text) <= most else f"{text[: most - 20]}...{text[-12:]} ({len(text)} chars)"


def parse_duration(text: str) -> float:
    """`48h`, `30m`, `90s`, `1h30m` or plain seconds."""
    stripped = text.strip()
    try:
        seconds = float(stripped)
    except ValueError:
        parts = _DURATION_PART_RE.findall(stripped)
        if not parts or "".join(n + u for n, u in parts).lower() != stripped.lower():
            raise ValueError(
                f"{shown(text)} is not a duration (write e.g. 48h, 30m, 90s or seconds)"
            ) from None
        seconds = sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in parts)
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"{shown(text)} is not a duration (write e.g. 48h, 30m, 90s or seconds)")
    return seconds


@dataclass(frozen=True)
class Reserve:
    """Free space kept for running jobs' results: a size, a share of the volume, or the
    smaller of both."""

    size: int | None = None
    share: float | None = None

    def of(self, total: int) -> int:
        limits = [self.size] if self.size is not None else []
        limits += [int(total * self.share)] if self.share is not None else []
        return min(limits, default=0)


def parse_reserve(text: str) -> Reserve:
    """`1GB`, `5%`, or both (`1GB,5%`: whichever is smaller); `0` keeps none."""
    size, share = None, None
    for part in (p.strip() for p in text.split(",")):
        if part.endswith("%"):
            try:
                share = float(part[:-1]) / 100
            except ValueError:
                share = -1.0
            if not 0 <= share <= 1:
                raise ValueError(f"{part!r} is not a share of the volume (write e.g. 5%)")
        else:
            size = parse_size(part)
    return Reserve(size, share)
