"""The upload body: `{"id": ..., "input": "<base64 zip>", ...}`, read as a stream."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from jobd.config.units import MAX_LIMIT, MAX_TIMEOUT, parse_duration, parse_size, shown
from jobd.errors import BadRequest
from jobd.formats.jsonstream import scan_object
from jobd.jobs.callbacks import check_callback_auth
from jobd.models import (
    JOB_ID_PATTERN,
    NO_LIMITS,
    SERVICE_PATTERN,
    JobLimits,
    RetryPolicy,
    valid_job_id,
)


@dataclass(frozen=True)
class Upload:
    """The fields of an upload other than its input."""

    job_id: str | None
    slurml: bool
    timeout: float | None
    slurm_options: tuple[str, ...]
    callback_url: object  # as sent: intake checks it against --callback-allow
    env: tuple[tuple[str, str], ...] = ()
    retry: RetryPolicy | None = None  # None: the service's, else none
    callback_auth: str | None = None  # checked, as JSON
    limits: JobLimits = NO_LIMITS  # as asked: intake checks them against the maxima
    service: str | None = None  # None: the default service; intake checks it is declared


#: The fields `_validate` reads, lower case: names match in any case, as in Go's encoding/json.
UPLOAD_FIELDS = (
    "id",
    "input",
    "timeout",
    "retry",
    "env",
    "callback_url",
    "callback",
    "slurml",
    "slurm",
    "slurm_options",
    "limits",
    "service",
)
#: The Go jobd's Job fields: its clients may send a whole job object, so these are taken too
#: (those jobd does not read are ignored).
GO_JOB_FIELDS = ("id", "status", "message", "output", "input", "lastupdated", "slurmid", "slurml")


def read_upload(stream: BinaryIO, limit: int, sink: Callable[[bytes], None]) -> Upload:
    """Send the base64 of `input` to `sink` in pieces; check and return the other fields."""
    fields = scan_object(stream, limit, "input", sink, '{"input": "<base64 zip>"}')
    refuse_unknown(fields, UPLOAD_FIELDS, "the upload", GO_JOB_FIELDS)
    return _validate({name.lower(): value for name, value in fields.items()})


def refuse_unknown(
    names: Iterable[str], known: tuple[str, ...], where: str, ignored: Iterable[str] = ()
) -> None:
    """A 400 for the first name (in any case) that is neither `known` nor `ignored`: a
    misspelt field would otherwise be dropped without a word. `known` is what jobd takes."""
    taken = {*known, *ignored}
    for name in names:
        if name.lower() not in taken:
            raise BadRequest(unknown_field(name, known, where))


def unknown_field(name: str, known: tuple[str, ...], where: str) -> str:
    """`unknown field 'timout' in the upload: did you mean 'timeout'? jobd takes ...`."""
    close = difflib.get_close_matches(name.lower(), known, n=1)
    guess = f": did you mean {close[0]!r}?" if close else ";"
    return f"unknown field {name!r} in {where}{guess} jobd takes {', '.join(known)}"


def _validate(fields: dict[str, object]) -> Upload:
    if fields.get("input") is not True:
        raise BadRequest(
            "'input' is missing or not a string; it must hold the job's zip, base64-encoded"
        )
    job_id = fields.get("id")
    if job_id in ("", None):
        job_id = None
    elif not isinstance(job_id, str) or not valid_job_id(job_id):
        raise BadRequest(
            f"'id' {shown(job_id)} is not a valid job ID: use 1-128 letters, digits, '.', '_'"
            f" or '-', starting with a letter or digit ({JOB_ID_PATTERN.pattern})"
        )
    slurml = False
    for key in ("slurml", "slurm"):
        value = fields.get(key, False)
        if not isinstance(value, bool) and value is not None:
            raise BadRequest(f"'{key}' must be true or false, not {value!r}")
        slurml = slurml or bool(value)
    options = _slurm_options(fields.get("slurm_options"))
    if options and not slurml:
        raise BadRequest("'slurm_options' apply only to Slurm jobs: add \"slurml\": true")
    callback_url, callback_auth = _callback(fields.get("callback"), fields.get("callback_url"))
    return Upload(
        job_id,
        slurml,
        parse_timeout(fields.get("timeout")),
        options,
        callback_url,
        parse_env(fields.get("env")),
        parse_retry(fields.get("retry")),
        callback_auth,
        parse_limits(fields.get("limits")),
        _service(fields.get("service")),
    )


def _service(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not SERVICE_PATTERN.fullmatch(value):
        raise BadRequest(
            f"'service' {shown(value)} is not a service name: 1-64 letters, digits, '-' or '_'"
        )
    return value


def _callback(callback: object, url: object) -> tuple[object, str | None]:
    """`"callback": {"url": ..., "auth": {...}}`, or the plain `callback_url`."""
    if callback is None:
        return url, None
    if url is not None:
        raise BadRequest("send 'callback' or 'callback_url', not both")
    if not isinstance(callback, dict) or "url" not in callback or set(callback) - {"url", "auth"}:
        raise BadRequest(
            "'callback' must be an object with 'url' and, optionally, 'auth'"
            ' (e.g. {"type": "bearer", "token": "..."})'
        )
    if callback["url"] is None:  # a callback with no URL: refused, not dropped
        raise BadRequest("'callback.url' must be an http(s) URL, not null")
    auth = callback.get("auth")
    return callback["url"], None if auth is None else check_callback_auth(auth)


#: A duration as an upload writes it: seconds, or parts like 1h30m (as the description says;
#: parse_duration, shared with the flags, also takes what float() does, such as 1e3 or 1_0).
_DURATION = re.compile(
    r"([0-9]+(\.[0-9]*)?|\.[0-9]+)|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ms|[smhd]))+", re.I
)


def _duration(text: str, name: str) -> float:
    try:
        if not _DURATION.fullmatch(text):
            raise ValueError(
                f"{shown(text)} is not a duration (write e.g. 48h, 30m, 90s or seconds)"
            )
        return parse_duration(text)
    except ValueError as exc:
        raise BadRequest(f"{name!r} {exc}") from None


#: The most attempts a job may ask for.
MAX_ATTEMPTS = 100


def parse_retry(value: object) -> RetryPolicy | None:
    """`"retry": 3` (attempts, Chronos's intervals) or `{"max_attempts": 3,
    "initial_interval": "10s", "max_interval": "5m", "multiplier": 2.0}`."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"max_attempts": value}
    if not isinstance(value, dict):
        raise BadRequest(
            f"'retry' must be a number of attempts or an object with max_attempts,"
            f" initial_interval, max_interval and multiplier, not {value!r}"
        )
    unknown = set(value) - {"max_attempts", "initial_interval", "max_interval", "multiplier"}
    if unknown:
        raise BadRequest(f"'retry' has no field {sorted(unknown)[0]!r}")
    default = RetryPolicy()
    attempts = value.get("max_attempts", default.max_attempts)
    if (
        isinstance(attempts, bool)
        or not isinstance(attempts, int)
        or not 1 <= attempts <= MAX_ATTEMPTS
    ):
        raise BadRequest(
            f"'retry.max_attempts' must be a whole number from 1 to {MAX_ATTEMPTS},"
            f" not {attempts!r}"
        )
    multiplier = value.get("multiplier", default.multiplier)
    if (
        isinstance(multiplier, bool)
        or not isinstance(multiplier, (int, float))
        or not 1 <= multiplier <= 100
    ):
        raise BadRequest(f"'retry.multiplier' must be a number from 1 to 100, not {multiplier!r}")
    initial = _interval(value.get("initial_interval", default.initial_interval), "initial_interval")
    longest = _interval(value.get("max_interval", default.max_interval), "max_interval")
    if longest < initial:
        raise BadRequest("'retry.max_interval' is shorter than 'retry.initial_interval'")
    return RetryPolicy(attempts, initial, longest, float(multiplier))


def _interval(value: object, name: str) -> float:
    if isinstance(value, str):
        value = _duration(value, f"retry.{name}")
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value <= MAX_TIMEOUT
    ):
        raise BadRequest(
            f"'retry.{name}' must be a duration (e.g. 10s, 5m) or seconds up to a year,"
            f" not {value!r}"
        )
    return float(value)


#: The keys `limits` may hold.
LIMIT_KEYS = ("memory", "processes")
LIMITS_SHAPE = '{"memory": "256M", "processes": 64}'


def parse_limits(value: object) -> JobLimits:
    """The `limits` of an upload or a schedule, as sent (None: none asked for)."""
    if value is None:
        return NO_LIMITS
    if not isinstance(value, dict):
        raise BadRequest(f"'limits' must be an object like {LIMITS_SHAPE}, not {value!r}")
    for name in value:
        if name not in LIMIT_KEYS:
            raise BadRequest(unknown_field(name, LIMIT_KEYS, "'limits'"))
    return JobLimits(_memory(value.get("memory")), _processes(value.get("processes")))


def _memory(value: object) -> int | None:
    """A size as jobd's flags take it ("256M", "1G", "512MiB") or whole bytes."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = parse_size(value)
        except ValueError as exc:
            raise BadRequest(f"'limits.memory' {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_LIMIT:
        raise BadRequest(
            '\'limits.memory\' must be a size like "256M" or "1G", or a whole number of'
            f" bytes above 0, not {value!r}"
        )
    return value


def _processes(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise BadRequest(f"'limits.processes' must be a whole number from 1 up, not {value!r}")
    return value


#: A variable's name for run.sh, as POSIX shells take it.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Most variables, and longest value, an upload's `env` may hold.
MAX_ENV_VARS, MAX_ENV_VALUE = 64, 4096


def parse_env(value: object) -> tuple[tuple[str, str], ...]:
    """`{"NAME": "value"}` for run.sh; names starting JOBD_ are jobd's own."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise BadRequest(f"'env' must be an object of names and strings, not {value!r}")
    if len(value) > MAX_ENV_VARS:
        raise BadRequest(f"'env' holds {len(value)} variables; at most {MAX_ENV_VARS} are taken")
    found = []
    for name, text in value.items():
        if not ENV_NAME.fullmatch(name) or len(name) > 128:
            raise BadRequest(
                f"'env' name {name!r} is not a variable name (letters, digits and '_',"
                " not starting with a digit, up to 128)"
            )
        if name.startswith("JOBD_"):
            raise BadRequest(
                f"'env' name {name!r} starts with JOBD_: those are jobd's own"
                " (it sets JOBD_JOB_ID and JOBD_ATTEMPT itself)"
            )
        if not isinstance(text, str) or "\0" in text or len(text) > MAX_ENV_VALUE:
            raise BadRequest(
                f"'env' value of {name} must be a string of at most {MAX_ENV_VALUE} characters,"
                " without NUL"
            )
        if not _utf8(text):  # an escaped half of a surrogate pair: no process can be given it
            raise BadRequest(f"'env' value of {name} holds half a surrogate pair, not UTF-8 text")
        found.append((name, text))
    return tuple(found)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = _duration(value, "timeout")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise BadRequest(
            f"'timeout' must be a positive number of seconds (or like '30m'), not {value!r}"
        )
    if value > MAX_TIMEOUT:  # also infinity (1e999 in JSON)
        raise BadRequest(
            f"'timeout' is over {MAX_TIMEOUT:.0f} seconds (a year), the longest time limit jobd"
            " takes; leave it out for no limit"
        )
    return float(value)


#: The sbatch options a job may set in its upload: name -> (sbatch flag, allowed values).
SLURM_OPTIONS = {
    "cpus": ("--cpus-per-task", re.compile(r"[1-9][0-9]{0,4}"), "a whole number, e.g. 4"),
    "memory": ("--mem", re.compile(r"[1-9][0-9]{0,9}[KMGT]?"), "like 512M or 4G"),
    "time": (
        "--time",
        re.compile(r"(\d{1,3}-)?\d{1,4}(:\d{1,2}){0,2}"),
        "minutes, or like 1:30:00 or 2-00:00:00",
    ),
    "partition": ("--partition", re.compile(r"[A-Za-z0-9_.-]{1,64}"), "a partition name"),
    "gres": ("--gres", re.compile(r"[A-Za-z0-9_.:,-]{1,128}"), "like gpu:1"),
}


def _slurm_options(value: object) -> tuple[str, ...]:
    """sbatch options from the upload's `slurm_options`, each checked against the allow-list."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise BadRequest('\'slurm_options\' must be an object like {"cpus": 4, "time": "1:00:00"}')
    options = []
    for name, raw in value.items():
        if name not in SLURM_OPTIONS:
            raise BadRequest(
                f"'slurm_options' has {name!r}; allowed are {', '.join(SLURM_OPTIONS)}"
            )
        flag, pattern, shape = SLURM_OPTIONS[name]
        text = str(raw) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
        if not pattern.fullmatch(text):
            raise BadRequest(f"'slurm_options.{name}' is {raw!r}; it must be {shape}")
        options.append(f"{flag}={text}")
    return tuple(options)
