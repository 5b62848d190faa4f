"""schemathesis hooks for tests/test_fuzz.py: what no schema can say, supplied to the cases
that must be accepted (positive ones), so `positive_data_acceptance` checks the rest of them.

A JSON upload's `input` must be a zip with run.sh at its root; a callback may go only where
--callback-allow lets it (the fuzzed daemon allows 127.0.0.1, and nothing else may ever be
called); limits must be under the daemon's maxima; whole numbers are written without a
fraction (JSON Schema's integer counts 2.0 in, jobd takes only 2, as
tests/test_limits_door.py holds it to); durations written as text must be within bounds no
pattern can state (a timeout above 0 and at most a year; retry's max_interval no shorter
than its initial_interval; a queue's durations in whole seconds, at most 100 years); a
dequeue's `wait` short, in every case (on an empty queue it is waited out whole).
The status page's forms come from the daemon's own page (Origin) and, positive, carry its
token. Negative cases are left as generated: they must be refused whatever they hold.
"""

from __future__ import annotations

import base64
import io
import itertools
import os
import re
import zipfile
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import schemathesis


def _zip() -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("run.sh", "#!/bin/sh\ntrue\n")
    return base64.b64encode(buffer.getvalue()).decode()


RUN_SH_ZIP = _zip()
#: Nothing listens on the discard port: a delivery fails and is retried, harmlessly.
LOOPBACK = "127.0.0.1:9"


def _loopback(url: object) -> object:
    """The URL sent to loopback instead of the host schemathesis made up; its path kept. A
    host or port the description's pattern lets through but no URL parser takes (a bracketed
    host that is no IPv6 address, a port above 65535) goes too: no pattern can state those."""
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError:
        return f"http://{LOOPBACK}/"
    return urlunsplit(parts._replace(netloc=LOOPBACK))


YEAR = 366 * 86400.0
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|[smhd])?", re.I)
_UNIT = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _seconds(value: object) -> float | None:
    """What a duration the description allows stands for, in seconds (None: not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if not isinstance(value, str):
        return float(value)
    return sum(float(n) * _UNIT[u.lower()] for n, u in _PART.findall(value))


def _bounded(body: dict[str, Any]) -> None:
    timeout = _seconds(body.get("timeout"))
    if timeout is not None and not 0 < timeout <= YEAR:
        body["timeout"] = "30m"
    retry = body.get("retry")
    if not isinstance(retry, dict):
        return
    retry = body["retry"] = dict(retry)
    for name in ("initial_interval", "max_interval"):
        seconds = _seconds(retry.get(name))
        if seconds is not None and seconds > YEAR:
            retry[name] = "1h"
    first = _seconds(retry.get("initial_interval", 1.0))
    longest = _seconds(retry.get("max_interval", 60.0))
    if first is not None and longest is not None and longest < first:
        retry["max_interval"] = retry.get("initial_interval", 1.0)


def _whole(value: Any) -> Any:
    """The value with each whole number written with a fraction (2.0) as an int."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    return value


def _within_maxima(limits: dict[str, Any]) -> dict[str, Any]:
    """Limits under the daemon's maxima (--job-memory, --job-processes: its configuration,
    not the description's); their shapes are kept as generated."""
    limits = dict(limits)
    processes = limits.get("processes")
    if isinstance(processes, (int, float)) and not isinstance(processes, bool):
        limits["processes"] = min(processes, 64)
    if limits.get("memory") is not None:
        limits["memory"] = "256M" if isinstance(limits["memory"], str) else 2**28
    return limits


#: Schedules and zones as no pattern can state them (cron's calendar, the zone database):
#: a generated one is kept when it is among these, else one of them stands in. None fires
#: often, so schedules the fuzzer creates start no runs of their own while it works.
SCHEDULES = ("@daily", "@weekly", "0 2 * * *", "30 4 1 * 1-5", "@every 1h", "@every 90m")
ZONES = ("UTC", "Europe/Amsterdam", "America/New_York", "Asia/Tokyo")
_names = itertools.count()


def _schedule(body: dict[str, Any]) -> dict[str, Any]:
    """A schedule's body as positive cases need it: a known schedule and zone, a name not
    taken yet (a taken one is a 409 by design), the zip, bounded durations and limits."""
    if "name" in body:
        body["name"] = f"fuzz-{next(_names)}"
    if "input" in body:
        body["input"] = RUN_SH_ZIP
    if "schedule" in body and body["schedule"] not in SCHEDULES:
        body["schedule"] = SCHEDULES[len(str(body["schedule"])) % len(SCHEDULES)]
    if "timezone" in body and body["timezone"] not in ZONES:
        body["timezone"] = ZONES[len(str(body["timezone"])) % len(ZONES)]
    if isinstance(body.get("limits"), dict):
        body["limits"] = _within_maxima(body["limits"])
    _bounded(body)
    return body


#: Ocypod's duration units in nanoseconds (jobd/formats/humantime.py reads the same).
_QUEUE_UNITS = {
    **dict.fromkeys(("nanos", "nsec", "ns"), 1),
    **dict.fromkeys(("usec", "us", "µs"), 10**3),
    **dict.fromkeys(("millis", "msec", "ms"), 10**6),
    **dict.fromkeys(("seconds", "second", "secs", "sec", "s"), 10**9),
    **dict.fromkeys(("minutes", "minute", "mins", "min", "m"), 60 * 10**9),
    **dict.fromkeys(("hours", "hour", "hrs", "hr", "h"), 3600 * 10**9),
    **dict.fromkeys(("days", "day", "d"), 86400 * 10**9),
    **dict.fromkeys(("weeks", "week", "w"), 7 * 86400 * 10**9),
    **dict.fromkeys(("months", "month", "M"), 2_630_016 * 10**9),
    **dict.fromkeys(("years", "year", "y"), 31_557_600 * 10**9),
}
_QUEUE_ITEM = re.compile(r" *([0-9]+) *([A-Za-zµ]+)")
_CENTURY_NS = 100 * 31_557_600 * 10**9


def _queue_duration(value: Any) -> Any:
    """A duration as jobd keeps it: whole seconds, at most 100 years (no pattern says so)."""
    if not isinstance(value, str):
        return value
    total = sum(int(n) * _QUEUE_UNITS.get(u, 0) for n, u in _QUEUE_ITEM.findall(value))
    return value if total % 10**9 == 0 and total <= _CENTURY_NS else "30s"


def _queue_settings(body: dict[str, Any]) -> dict[str, Any]:
    for name in ("timeout", "heartbeat_timeout", "expires_after"):
        if name in body:
            body[name] = _queue_duration(body[name])
    if isinstance(body.get("retry_delays"), list):
        body["retry_delays"] = [_queue_duration(item) for item in body["retry_delays"]]
    return body


#: The longest wait a fuzzed dequeue may ask for: on an empty queue, it waits all of it.
SHORT_WAIT = 0.05


def _short_wait(query: Any) -> Any:
    """A `wait` that jobd would take, made short; any other value left to be refused."""
    if not isinstance(query, dict) or isinstance(query.get("wait"), bool):
        return query
    try:
        wait = float(query.get("wait"))  # type: ignore[arg-type]  # None, a list: not one
    except (TypeError, ValueError):
        return query
    return {**query, "wait": SHORT_WAIT} if wait > SHORT_WAIT else query


#: The status page's forms that act: taken only from the daemon's own page, with its token.
PAGE_FORMS = ("POST /jobs/{id}/cancel", "POST /jobs/{id}/retry")


def _page_form(case: Any) -> None:
    """Every case comes from the daemon's own page (its Origin), as a browser's form would;
    a positive one carries the token as the form's field (a negative one is refused anyway).
    The fuzzer's bearer header does not reach these routes: a form has no header."""
    case.headers = {**(case.headers or {}), "Origin": os.environ["FUZZ_ORIGIN"]}
    token = os.environ.get("FUZZ_FORM_TOKEN")
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if token and positive and isinstance(case.body, dict):
        case.body = {**case.body, "token": token}


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    operation = context.operation
    if operation is not None and operation.label == "GET /queue/{name}/job":
        case.query = _short_wait(case.query)  # negative cases too: they may hold a valid wait
    if operation is not None and operation.label in PAGE_FORMS:
        _page_form(case)
    if operation is None or case.meta is None or not case.meta.generation.mode.is_positive:
        return case
    if not isinstance(case.body, dict):
        return case
    if operation.label in ("POST /api/schedules", "PATCH /api/schedules/{name}"):
        case.body = _schedule(_whole(case.body))
        return case
    if operation.label in ("PUT /queue/{name}", "POST /queue/{name}/job"):
        case.body = _queue_settings(_whole(case.body))
        return case
    if operation.label != "POST /api/upload":
        return case
    body = _whole(case.body)
    body["input"] = RUN_SH_ZIP
    if "callback_url" in body:
        body["callback_url"] = _loopback(body["callback_url"])
    if isinstance(body.get("callback"), dict):
        body["callback"] = {**body["callback"], "url": _loopback(body["callback"].get("url"))}
    if isinstance(body.get("limits"), dict):
        body["limits"] = _within_maxima(body["limits"])
    _bounded(body)
    case.body = body
    return case


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    """Leave out the one refusal the description cannot ask for: jobd takes `"id": ""` as no
    ID (a Go client's whole job object has one), while tests/test_openapi.py pins the id's
    pattern to models.JOB_ID_PATTERN, which an empty string does not match."""
    operation = context.operation
    if operation is None or operation.label != "POST /api/upload":
        return True
    body = case.body
    if case.meta is None or case.meta.generation.mode.is_positive:
        return True
    return not (isinstance(body, dict) and body.get("id") == "")
