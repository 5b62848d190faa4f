"""The daemon's settings: one frozen Config, every default in one table, flags <-> environment."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from jobd.config.services import (
    RUNNERS,
    Declaration,
    Services,
    ServiceSettings,
    from_environ,
    parse_declarations,
)
from jobd.config.services import build as build_services
from jobd.config.units import (
    MAX_LIMIT,
    MAX_TIMEOUT,
    Reserve,
    format_size,
    parse_duration,
    parse_reserve,
    parse_size,
)
from jobd.config.user_tokens import UserTokens, read_user_tokens
from jobd.errors import ConfigError
from jobd.models import SERVICE_PATTERN


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"{text!r} must be at least 1")
    return value


def _threads(text: str) -> int:
    """Four threads are kept for requests that answer at once (/health first); long-polls,
    follows and large downloads need at least one more."""
    value = _positive_int(text)
    if value < 5:
        raise ValueError(
            f"{text!r} leaves no thread for long-polls, log follows and large downloads:"
            " 4 are kept for requests that answer at once; use at least 5"
        )
    return value


def _schedule_interval(text: str) -> float:
    """The shortest time between a schedule's fires (--min-schedule-interval)."""
    value = parse_duration(text)
    if not 1 <= value <= 365 * 86400:
        raise ValueError(f"{text!r} must be from 1s to 365d")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise ValueError(f"{text!r} is not a port number (0-65535)")
    return value


def _job_timeout(text: str) -> float | None:
    if text.strip().lower() in ("", "none", "0", "off"):
        return None
    value = parse_duration(text)
    if value > MAX_TIMEOUT:
        raise ValueError(f"{text!r} is longer than a year, the longest time limit of a job")
    return value or None


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _heartbeat_timeout(text: str) -> int:
    """Whole seconds, 1 s to a day: a worker beats several times within it."""
    seconds = parse_duration(text)
    if seconds != int(seconds) or not 1 <= seconds <= 86400:
        raise ValueError(f"{text!r} must be whole seconds from 1s to 24h, e.g. 30s or 5m")
    return int(seconds)


def _url(text: str) -> str:
    """The central jobd's base URL, without a trailing slash."""
    if not text.startswith(("http://", "https://")) or len(text) > 2000:
        raise ValueError(f"{text[:80]!r} is not an http:// or https:// URL")
    return text.rstrip("/")


def _service_name(text: str) -> str:
    if not SERVICE_PATTERN.fullmatch(text):
        raise ValueError(f"{text[:80]!r} is not a service name (letters, digits, '-', '_')")
    return text


def _one_line(text: str) -> str:
    if "\n" in text or "\r" in text:
        raise ValueError(f"{text!r} must be on one line")
    return text


def _sbatch_args(text: str) -> tuple[str, ...]:
    """sbatch options as a shell would split them; each becomes an #SBATCH line."""
    try:
        return tuple(_one_line(token) for token in shlex.split(text))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a list of sbatch options: {exc}") from None


def _positive_size(text: str) -> int:
    value = parse_size(text)
    if value < 1:
        raise ValueError(f"{text!r} must be more than 0 bytes")
    return value


def _uid_range(text: str) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    try:
        low, high = int(first), int(last if dash else first)
    except ValueError:
        raise ValueError(f"{text!r} is not a range of uids such as 60000-60999") from None
    if not 1 <= low <= high < 2**31 - 1:
        raise ValueError(f"{text!r} must be uids from 1 upwards, the first no larger than the last")
    return low, high


def _paths(text: str) -> tuple[Path, ...]:
    """Folders given with the repeatable flag (';' between them in the variable)."""
    found = []
    for part in filter(None, (each.strip() for each in text.split(";"))):
        path = Path(part)
        if not path.is_absolute():
            raise ValueError(f"{part!r} must be an absolute path")
        if not path.exists():
            raise ValueError(f"{part!r} does not exist")
        found.append(path)
    return tuple(found)


def job_memory(text: str) -> int:
    """A job's memory limit (`--job-memory`, a service's `memory`): a size above 0."""
    value = _positive_size(text)
    if value > MAX_LIMIT:
        raise ValueError(f"{text!r} is more than the largest limit, {MAX_LIMIT} bytes")
    return value


def job_processes(text: str) -> int:
    """A job's process limit (`--job-processes`, a service's `processes`): 1 or more."""
    value = _positive_int(text)
    if value > MAX_LIMIT:
        raise ValueError(f"{text!r} is more than the largest limit, {MAX_LIMIT}")
    return value


@dataclass(frozen=True)
class Option:
    """A setting: its flag, the environment variables that may set it, its default and parser."""

    name: str
    envs: tuple[str, ...]
    default: str | None
    parse: Callable[[str], object]
    help: str
    metavar: str = ""
    shown_default: str | None = None  # for --help, where `default` does not say it
    repeat: bool = False  # a flag given again adds to it; ';' joins them in the variable

    @property
    def help_text(self) -> str:
        default = self.shown_default or self.default or "none"
        return f"{self.help} [env: {', '.join(self.envs)}; default: {default}]"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("host", ("JOBD_HOST",), "0.0.0.0", str, "address to listen on", "ADDR"),
    Option("port", ("JOBD_PORT", "PORT"), "8080", _port, "port to listen on (0 picks one)", "N"),
    Option(
        "data_dir",
        ("JOBD_DATA_DIR", "DATAPATH"),
        "./data",
        Path,
        "where job records and files live; one daemon per data dir",
        "DIR",
    ),
    Option(
        "workers",
        ("JOBD_WORKERS",),
        str(os.cpu_count() or 1),
        _positive_int,
        "most local jobs that run at once",
        "N",
        "the CPU count",
    ),
    Option(
        "max_upload", ("JOBD_MAX_UPLOAD",), "400MB", _positive_size, "largest HTTP body", "SIZE"
    ),
    Option(
        "max_unpacked",
        ("JOBD_MAX_UNPACKED",),
        "4GB",
        _positive_size,
        "largest total uncompressed size of a job's zip",
        "SIZE",
    ),
    Option(
        "max_files",
        ("JOBD_MAX_FILES",),
        "100000",
        _positive_int,
        "most entries in a job's zip",
        "N",
    ),
    Option(
        "retention",
        ("JOBD_RETENTION",),
        "48h",
        parse_duration,
        "how long finished jobs are kept before their files are removed",
        "DUR",
    ),
    Option(
        "min_free",
        ("JOBD_MIN_FREE",),
        "1GB,5%",
        parse_reserve,
        "free space kept on the data dir's disk for running jobs' results; below it new jobs"
        " get 507 (a size, a share like 5%, or both: the smaller counts; 0 keeps none)",
        "SIZE",
        "1GB or 5% of the volume, whichever is smaller",
    ),
    Option(
        "token",
        ("JOBD_TOKEN",),
        None,
        str,
        "require 'Authorization: Bearer TOKEN' on every route but /health (prefer the env var)",
        "TOKEN",
    ),
    Option(
        "user_tokens",
        ("JOBD_USER_TOKENS",),
        None,
        read_user_tokens,
        "a file of users' tokens, one 'USER_ID TOKEN' a line ('#' comments): a request with"
        " one reaches only that user's jobs; --token stays the operator's, who sees all",
        "FILE",
    ),
    Option(
        "timeout",
        ("JOBD_TIMEOUT",),
        None,
        _job_timeout,
        "default time limit of a job; a job's own 'timeout' wins",
        "DUR",
    ),
    Option(
        "pending_status",
        ("JOBD_PENDING_STATUS",),
        "206",
        lambda text: int(_choice("202", "206")(text)),
        "status of GET /api/get for an unfinished job (202 for clients of the Go jobd)",
        "206|202",
    ),
    Option(
        "on_restart",
        ("JOBD_ON_RESTART",),
        "rerun",
        _choice("rerun", "fail"),
        "what happens to jobs that were running when the daemon stopped",
        "rerun|fail",
    ),
    Option(
        "kill_grace",
        ("JOBD_KILL_GRACE",),
        "5s",
        parse_duration,
        "time between SIGTERM and SIGKILL when a job is cancelled or times out",
        "DUR",
    ),
    Option(
        "slurm_partition",
        ("JOBD_SLURM_PARTITION",),
        None,
        _one_line,
        "default partition of Slurm jobs; a job's own #SBATCH lines win",
        "NAME",
    ),
    Option(
        "slurm_account",
        ("JOBD_SLURM_ACCOUNT",),
        None,
        _one_line,
        "default account of Slurm jobs; a job's own #SBATCH lines win",
        "NAME",
    ),
    Option(
        "slurm_args",
        ("JOBD_SLURM_ARGS",),
        "",
        _sbatch_args,
        "more default sbatch options, e.g. '--time=1:00:00 --mem=4G'; a job's own win",
        "ARGS",
    ),
    Option(
        "callback_allow",
        ("JOBD_CALLBACK_ALLOW",),
        "",
        lambda text: tuple(h.strip().lower() for h in text.split(",") if h.strip()),
        "hosts a job's callback_url may name, comma-separated, * wildcards",
        "HOSTS",
        "any",
    ),
    Option(
        "callback_retry_for",
        ("JOBD_CALLBACK_RETRY_FOR",),
        "5m",
        parse_duration,
        "how long a failing callback is retried, with growing gaps",
        "DUR",
    ),
    Option(
        "runs_per_user",
        ("JOBD_RUNS_PER_USER",),
        "5",
        _positive_int,
        "jobs of one user that run at once in a service, for every service that sets none",
        "N",
    ),
    Option(
        "max_runs",
        ("JOBD_MAX_RUNS",),
        None,
        _positive_int,
        "jobs of one service that run at once, for every service that sets none",
        "N",
        shown_default="--workers",
    ),
    Option(
        "service",
        ("JOBD_SERVICES",),
        None,
        parse_declarations,
        "declare a service: NAME:runs_per_user=N,max_runs=N,timeout=DUR,retention=DUR,retry=N,"
        "memory=SIZE,processes=N,runner=local|pull,heartbeat_timeout=DUR"
        " (repeat the flag; ';' between services in the variable; also"
        " SERVICE_<NAME>_RUNS_PER_USER, _MAX_RUNS, _RUNNER and _HEARTBEAT_TIMEOUT;"
        " runner=pull: `jobd worker`s run its jobs)",
        "SPEC",
        repeat=True,
    ),
    Option(
        "isolation",
        ("JOBD_ISOLATION",),
        "auto",
        _choice("auto", "strict", "off"),
        "what keeps jobs apart: auto uses what this machine allows (a user per job as root,"
        " Landlock), strict refuses to start without it, off lets jobs reach what jobd reaches",
        "auto|strict|off",
    ),
    Option(
        "job_uids",
        ("JOBD_JOB_UIDS",),
        "60000-60999",
        _uid_range,
        "as root, the uids jobs run as, one per running job (at least --workers of them)",
        "FIRST-LAST",
    ),
    Option(
        "job_readable",
        ("JOBD_JOB_READABLE",),
        None,
        _paths,
        "a folder jobs may read, e.g. reference data, where isolation would hide it (repeat"
        " the flag; ';' between folders in the variable)",
        "PATH",
        repeat=True,
    ),
    Option(
        "job_writable",
        ("JOBD_JOB_WRITABLE",),
        None,
        _paths,
        "a folder jobs may read and write, e.g. a shared cache (repeat the flag; ';' between"
        " folders in the variable)",
        "PATH",
        repeat=True,
    ),
    Option(
        "threads",
        ("JOBD_THREADS",),
        "64",
        _threads,
        "HTTP threads, at least 5 (4 are kept for quick requests; each long-poll, log"
        " follow or large download holds one of the others)",
        "N",
    ),
    Option(
        "job_memory",
        ("JOBD_JOB_MEMORY",),
        None,
        job_memory,
        "most memory a local job may use, its processes together; a service or a job's own"
        " 'limits' may ask for less, never more",
        "SIZE",
    ),
    Option(
        "max_schedules",
        ("JOBD_MAX_SCHEDULES",),
        "1000",
        _positive_int,
        "most schedules (recurring jobs) this jobd keeps; a create past it is a 409",
        "N",
    ),
    Option(
        "min_schedule_interval",
        ("JOBD_MIN_SCHEDULE_INTERVAL",),
        "1s",
        _schedule_interval,
        "shortest time between two fires of a schedule a client may create or change (1s to 365d)",
        "DURATION",
    ),
    Option(
        "job_processes",
        ("JOBD_JOB_PROCESSES",),
        "4096",
        job_processes,
        "most processes (threads count) a local job may have at once; a service or a job's"
        " own 'limits' may ask for fewer, never more",
        "N",
    ),
)


#: The client commands' settings: which daemon to talk to, and how.
CLIENT_OPTIONS: tuple[Option, ...] = (
    Option(
        "url",
        ("JOBD_URL",),
        None,
        str,
        "the daemon",
        "URL",
        "the profile's url, else http://127.0.0.1:$JOBD_PORT, or port 8080",
    ),
    Option(
        "token", ("JOBD_TOKEN",), None, str, "bearer token", "TOKEN", "the profile's token, or none"
    ),
)


def _resolve(
    options: tuple[Option, ...], flags: Mapping[str, object], environ: Mapping[str, str]
) -> dict[str, object]:
    """Flag, then the environment variables in their order, then the default."""
    values: dict[str, object] = {}
    for option in options:
        raw, source = flags.get(option.name), option.flag
        if option.repeat and isinstance(raw, list):
            raw = ";".join(raw)
        for env in option.envs:
            if raw is None and environ.get(env):
                raw, source = environ[env], env
        if raw is None:
            raw, source = option.default, "default"
        try:
            values[option.name] = None if raw is None else option.parse(str(raw))
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return values


@dataclass(frozen=True)
class Config:
    """The daemon's settings; `resolve` fills every field from OPTIONS."""

    host: str
    port: int
    data_dir: Path
    workers: int
    max_upload: int
    max_unpacked: int
    max_files: int
    retention: float
    min_free: Reserve
    token: str | None
    user_tokens: UserTokens | None
    timeout: float | None
    pending_status: int
    on_restart: str
    kill_grace: float
    slurm_partition: str | None
    slurm_account: str | None
    slurm_args: tuple[str, ...]
    callback_allow: tuple[str, ...]
    callback_retry_for: float
    runs_per_user: int
    max_runs: int | None
    service: tuple[Declaration, ...] | None
    isolation: str
    job_uids: tuple[int, int]
    job_readable: tuple[Path, ...] | None
    job_writable: tuple[Path, ...] | None
    threads: int
    job_memory: int | None
    job_processes: int
    max_schedules: int
    min_schedule_interval: float
    services: Services  # from runs_per_user, max_runs, service and SERVICE_<NAME>_*

    @classmethod
    def resolve(cls, flags: Mapping[str, object], environ: Mapping[str, str]) -> Config:
        """Flag, then JOBD_*, then the Go jobd's variable, then the default."""
        values = _resolve(OPTIONS, flags, environ)
        if values["token"] == "":
            values["token"] = None
        _operator_token_apart(values)
        values["services"] = _services(values, environ)
        first, last = cast("tuple[int, int]", values["job_uids"])
        if last - first + 1 < cast(int, values["workers"]):
            raise ConfigError(
                f"--job-uids: {first}-{last} holds fewer uids than --workers"
                f" ({values['workers']}): each running job needs one"
            )
        return cls(**values)  # type: ignore[arg-type]  # one value per field, from OPTIONS


def _operator_token_apart(values: Mapping[str, object]) -> None:
    """The operator's token is no user's: a user holding it would see every job."""
    users = cast("UserTokens | None", values["user_tokens"])
    token = values["token"]
    if users is not None and token is not None:
        for line, (_, known) in zip(users.lines, users.entries, strict=True):
            if known == token:
                raise ConfigError(
                    f"--user-tokens: {str(users.path)!r} line {line}: the token is the operator's"
                    " (--token); give users tokens of their own"
                )


_SERVICE_PARSERS: dict[str, Callable[[str], object]] = {
    "runs_per_user": _positive_int,
    "max_runs": _positive_int,
    "timeout": _job_timeout,
    "retention": parse_duration,
    "retry": _positive_int,
    "memory": job_memory,
    "processes": job_processes,
    "runner": _choice(*RUNNERS),
    "heartbeat_timeout": _heartbeat_timeout,
}


def _services(values: Mapping[str, object], environ: Mapping[str, str]) -> Services:
    """Every service's settings; a bad one is a start-up error naming where it came from."""
    max_runs = cast("int | None", values["max_runs"]) or cast(int, values["workers"])
    default = ServiceSettings(cast(int, values["runs_per_user"]), max_runs)
    from_env = from_environ(environ)
    for name, settings in from_env:
        try:
            build_services(default, ((name, settings),), _SERVICE_PARSERS)
        except ValueError as exc:
            variables = ", ".join(f"SERVICE_{name.upper()}_{key.upper()}" for key in settings)
            raise ConfigError(f"{variables}: {exc}") from None
    declared = cast("tuple[Declaration, ...] | None", values["service"]) or ()
    try:
        services = build_services(default, from_env + declared, _SERVICE_PARSERS)
    except ValueError as exc:
        raise ConfigError(f"--service: {exc}") from None
    _check_limits(services, values)
    return services


def _check_limits(services: Services, values: Mapping[str, object]) -> None:
    """A service may lower jobd's limits of a job, never raise them."""
    memory = cast("int | None", values["job_memory"])
    processes = cast(int, values["job_processes"])
    for name, settings in services.declared.items():
        if memory is not None and settings.memory is not None and settings.memory > memory:
            raise ConfigError(
                f"--service: service {name!r}: memory {format_size(settings.memory)} is above"
                f" this jobd's maximum of {format_size(memory)} (--job-memory)"
            )
        if settings.processes is not None and settings.processes > processes:
            raise ConfigError(
                f"--service: service {name!r}: processes {settings.processes} is above this"
                f" jobd's maximum of {processes} (--job-processes)"
            )


#: What `jobd worker` takes of serve's options: where it keeps jobs, how many it runs at once,
#: and how it runs them (the same sandbox and limits as serve's local runner).
WORKER_SHARED = (
    "data_dir",
    "workers",
    "max_unpacked",
    "max_files",
    "kill_grace",
    "isolation",
    "job_uids",
    "job_readable",
    "job_writable",
    "job_memory",
    "job_processes",
)
WORKER_OPTIONS = (
    Option(
        "url",
        (),
        None,
        _url,
        "the central jobd, which declares the service with --service NAME:runner=pull",
        "URL",
    ),
    Option(
        "service",
        ("JOBD_WORKER_SERVICE",),
        None,
        _service_name,
        "the pull service whose jobs to run",
        "NAME",
    ),
    *(option for option in OPTIONS if option.name in WORKER_SHARED),
)


@dataclass(frozen=True)
class WorkerConfig:
    """`jobd worker`'s settings; the token comes from JOBD_TOKEN only (a flag shows in ps)."""

    url: str
    service: str
    token: str | None
    data_dir: Path
    workers: int
    max_unpacked: int
    max_files: int
    kill_grace: float
    isolation: str
    job_uids: tuple[int, int]
    job_readable: tuple[Path, ...] | None
    job_writable: tuple[Path, ...] | None
    job_memory: int | None
    job_processes: int

    @classmethod
    def resolve(cls, flags: Mapping[str, object], environ: Mapping[str, str]) -> WorkerConfig:
        values = _resolve(WORKER_OPTIONS, flags, environ)
        for name in ("url", "service"):
            if values[name] is None:
                raise ConfigError(f"jobd worker needs --{name}")
        values["token"] = environ.get("JOBD_TOKEN") or None
        return cls(**values)  # type: ignore[arg-type]  # one value per field


@dataclass(frozen=True)
class ClientConfig:
    url: str
    token: str | None

    @classmethod
    def resolve(
        cls,
        flags: Mapping[str, object],
        environ: Mapping[str, str],
        profile: Mapping[str, str] | None = None,
    ) -> ClientConfig:
        """A flag, then the environment, then the profile file's `profile`, then the default."""
        values = _resolve(CLIENT_OPTIONS, flags, environ)
        for name, value in (profile or {}).items():
            if values.get(name) is None:
                values[name] = value
        if values["url"] is None:
            port = _resolve(tuple(o for o in OPTIONS if o.name == "port"), {}, environ)["port"]
            values["url"] = f"http://127.0.0.1:{port}"
        token = values["token"]
        return cls(str(values["url"]), str(token) if token else None)
