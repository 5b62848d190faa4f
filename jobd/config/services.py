"""Services: named queues with their own limits and job defaults, in the spirit of
job-orchestrator's SERVICE_<NAME>_* variables and Ocypod's per-queue settings.

A service nobody declared has the defaults (--runs-per-user, --max-runs), so any well-formed
name works on a fresh daemon. Declared by
`--service NAME:runs_per_user=3,max_runs=5,timeout=1h,memory=512M,processes=100`
(repeatable; `;` between services in JOBD_SERVICES) or SERVICE_<NAME>_RUNS_PER_USER,
SERVICE_<NAME>_MAX_RUNS, SERVICE_<NAME>_RUNNER and SERVICE_<NAME>_HEARTBEAT_TIMEOUT (the
name lowercased, as job-orchestrator reads them).

`runner=pull` keeps the service's jobs for `jobd worker`s to pull (jobs/pulled.py); a worker
that misses its heartbeats for `heartbeat_timeout` has lost its job to the next worker.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from jobd.models import SERVICE_PATTERN

_ENV = re.compile(r"SERVICE_(.+)_(RUNS_PER_USER|MAX_RUNS|RUNNER|HEARTBEAT_TIMEOUT)")
_SETTINGS = (
    "runs_per_user",
    "max_runs",
    "timeout",
    "retention",
    "retry",
    "memory",
    "processes",
    "runner",
    "heartbeat_timeout",
)
#: Where a service's jobs run: here (`--workers`), or on `jobd worker`s that pull them.
RUNNERS = ("local", "pull")


@dataclass(frozen=True)
class ServiceSettings:
    runs_per_user: int
    max_runs: int
    timeout: float | None = None  # for its jobs that name none; None: --timeout
    retention: float | None = None  # None: --retention
    retry: int | None = None  # attempts for its jobs that ask for none
    memory: int | None = None  # bytes, at most --job-memory; None: --job-memory
    processes: int | None = None  # at most --job-processes; None: --job-processes
    runner: str = "local"  # one of RUNNERS
    heartbeat_timeout: int = 30  # whole seconds without a worker's beat: its job is lost

    @property
    def pulled(self) -> bool:
        return self.runner == "pull"


@dataclass(frozen=True)
class Services:
    default: ServiceSettings
    declared: Mapping[str, ServiceSettings] = field(default_factory=dict)

    def of(self, name: str) -> ServiceSettings:
        return self.declared.get(name, self.default)

    def pulled(self) -> dict[str, ServiceSettings]:
        """The services whose jobs `jobd worker`s pull, by name."""
        return {name: s for name, s in self.declared.items() if s.pulled}


#: One declared service, as read: its name and its settings by name, values still text.
Declaration = tuple[str, dict[str, str]]


def parse_declarations(text: str) -> tuple[Declaration, ...]:
    """`NAME:key=value,key=value`, several separated by `;`."""
    found = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, _, settings = item.partition(":")
        if not SERVICE_PATTERN.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a service name (letters, digits, '-' and '_', up to 64)"
            )
        values: dict[str, str] = {}
        for pair in filter(None, settings.split(",")):
            key, equals, value = pair.partition("=")
            if not equals or key.strip() not in _SETTINGS:
                raise ValueError(
                    f"{pair!r} in service {name!r} is not one of"
                    f" {', '.join(k + '=...' for k in _SETTINGS)}"
                )
            values[key.strip()] = value.strip()
        found.append((name, values))
    return tuple(found)


def from_environ(environ: Mapping[str, str]) -> tuple[Declaration, ...]:
    """SERVICE_<NAME>_RUNS_PER_USER, _MAX_RUNS, _RUNNER and _HEARTBEAT_TIMEOUT."""
    found: dict[str, dict[str, str]] = {}
    for key, value in environ.items():
        match = _ENV.fullmatch(key)
        if match:
            found.setdefault(match.group(1).lower(), {})[match.group(2).lower()] = value
    return tuple(found.items())


def build(
    default: ServiceSettings,
    declarations: tuple[Declaration, ...],
    parsers: Mapping[str, Callable[[str], object]],
) -> Services:
    """The services; a later declaration of a name adds to (and wins over) an earlier one.
    `parsers` reads each setting's text (config's, so a value reads the same everywhere)."""
    declared: dict[str, ServiceSettings] = {}
    for name, values in declarations:
        settings = declared.get(name, default)
        for key, text in values.items():
            try:
                value = parsers[key](text)
            except ValueError as exc:
                raise ValueError(f"service {name!r}: {key}: {exc}") from None
            settings = replace(settings, **{key: cast(Any, value)})  # parsed for its field
        declared[name] = settings
    return Services(default, declared)
