"""Job states, the job record and what a new job asks for, and how a job looks on the wire;
the queues of Ocypod's API and their jobs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum

#: The IDs a client may choose; anything else never reaches a filesystem path.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: The largest integer SQLite stores; larger numbers name no job.
_MAX_INT_ID = 2**63 - 1
#: A service's name: letters, digits, - and _, up to 64 characters.
SERVICE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Jobs sent without a service (/api/upload, /submit) belong to this one.
DEFAULT_SERVICE = "default"
#: The user key of jobs sent without a user (/api/upload, /submit).
ANONYMOUS = -1


class JobStatus(str, Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"  # a schedule's run its concurrency policy did not start; no result

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SKIPPED})
UNFINISHED = frozenset(JobStatus) - TERMINAL


def is_terminal(wire_status: object) -> bool:
    """Whether a `Status` as sent on the wire is a final one."""
    return any(wire_status == status.value for status in TERMINAL)


def valid_job_id(job_id: str) -> bool:
    return JOB_ID_PATTERN.fullmatch(job_id) is not None


def int_id(ref: str | int) -> int | None:
    """The integer ID (IntID) `ref` spells: ASCII digits, within what SQLite stores."""
    if isinstance(ref, str):
        if not (ref.isascii() and ref.isdigit()) or len(ref) > 19:
            return None
        ref = int(ref)
    return ref if 0 <= ref <= _MAX_INT_ID else None


def rfc3339(ts: float | None, timespec: str = "milliseconds") -> str | None:
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z")


def span(seconds: float) -> str:
    """A length of time as a person reads it, on the status page and in the client:
    < 0.1 s, 4.2 s, 42 s, 3 min 07 s, 2 h 05 min, 1 d 4 h."""
    if seconds < 0.1:
        return "< 0.1 s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


@dataclass(frozen=True)
class RetryPolicy:
    """How a FAILED attempt runs again: Chronos's retry policy, and its defaults."""

    max_attempts: int = 3
    initial_interval: float = 1.0
    max_interval: float = 60.0
    multiplier: float = 2.0

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt `failed_attempt` (1-based) failed."""
        exponent = min(failed_attempt - 1, 64)  # past that, max_interval has long won
        return min(self.initial_interval * self.multiplier**exponent, self.max_interval)


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class JobLimits:
    """Resources a job may use: `memory` in bytes, `processes` at once; None: no limit set
    at this level (what a job asks for, or a service's or jobd's maximum)."""

    memory: int | None = None
    processes: int | None = None


NO_LIMITS = JobLimits()


@dataclass(frozen=True)
class JobSpec:
    """What a new job asks for, whichever wire shape it came in; every intake builds one."""

    id: str
    slurml: bool = False
    timeout: float | None = None
    callback_url: str | None = None
    slurm_options: tuple[str, ...] = ()
    user_id: int | None = None
    service: str = DEFAULT_SERVICE
    env: tuple[tuple[str, str], ...] = ()  # for run.sh, on top of jobd's
    retry: RetryPolicy = NO_RETRY
    callback_auth: str | None = None  # checked, as JSON
    schedule: str | None = None
    memory_limit: int | None = None  # bytes; the effective limit (jobs/limits.py)
    process_limit: int | None = None
    pulled: bool = False  # its service's runner is pull: a `jobd worker` runs it


@dataclass
class Job:
    """One row of the store, field for column; `seq` is the small integer ID and FIFO order."""

    id: str
    status: JobStatus
    seq: int = 0
    message: str = ""
    exit_code: int | None = None
    slurml: bool = False
    slurm_id: int = 0
    timeout: float | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0
    attempts: int = 0
    pgid: int | None = None
    pgid_start: int | None = None
    expired: bool = False
    callback_url: str | None = None
    user_id: int | None = None  # None: sent without one (/api/upload, /submit)
    service: str = DEFAULT_SERVICE
    env: str = "{}"  # the upload's `env`, as JSON: never sent back (values may be secrets)
    attempt: int = 1  # 1-based; a restart repeats an attempt (see `attempts`: runs of it)
    max_attempts: int = 1
    retry_initial: float = 1.0
    retry_max: float = 60.0
    retry_multiplier: float = 2.0
    due_at: float | None = None  # a queued retry starts no earlier
    callback_auth: str | None = None  # JSON: how the callback proves itself; never sent back
    schedule: str | None = None  # the schedule whose run it is
    # The limits the executor applies, the smallest of what the job asked for, its service's
    # and jobd's maximum (jobs/limits.py); None: no limit. Kept across retries and restarts.
    memory_limit: int | None = None  # bytes
    process_limit: int | None = None
    # A job of a runner=pull service runs on a `jobd worker`; `lease` is the queue job that
    # carries its current run (None: not offered to workers yet, e.g. a retry's backoff).
    pulled: bool = False
    lease: int | None = None

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(
            self.max_attempts, self.retry_initial, self.retry_max, self.retry_multiplier
        )

    @property
    def environment(self) -> dict[str, str]:
        """What run.sh sees on top of jobd's environment: the upload's `env`, then jobd's
        own JOBD_JOB_ID and JOBD_ATTEMPT (1-based)."""
        return {**json.loads(self.env), "JOBD_JOB_ID": self.id, "JOBD_ATTEMPT": str(self.attempt)}

    @property
    def invalid(self) -> bool:
        """Accepted, but its run.sh could not be started (job-orchestrator's "Invalid"):
        ended FAILED with no process ever recorded."""
        return self.status is JobStatus.FAILED and not self.slurml and self.pgid is None

    @property
    def user_key(self) -> int:
        """The user whose turn and quota the job counts towards (-1: anonymous)."""
        return ANONYMOUS if self.user_id is None else self.user_id

    def wire(self) -> dict[str, object]:
        """The job object as the Go jobd sends it, plus jobd's additions; never Input or Path."""
        return {
            "ID": self.id,
            "Status": self.status.value,
            "Message": self.message,
            "Output": "",
            "LastUpdated": rfc3339(self.updated_at),
            "SlurmID": self.slurm_id,
            "Slurml": self.slurml,
            "ExitCode": self.exit_code,
            "CreatedAt": rfc3339(self.created_at),
            "StartedAt": rfc3339(self.started_at),
            "FinishedAt": rfc3339(self.finished_at),
            "Timeout": self.timeout,
            "CallbackURL": self.callback_url,
            "IntID": self.seq,  # the ID of job-orchestrator's routes (/retrieve/<n>, /kill/<n>)
            "UserID": self.user_id,
            "Service": self.service,
            "Attempt": self.attempt,
            "MaxAttempts": self.max_attempts,
            "Schedule": self.schedule,
            "NextAttemptAt": rfc3339(self.due_at) if self.status is JobStatus.QUEUED else None,
            "Limits": {"Memory": self.memory_limit, "Processes": self.process_limit},
        }


class DeliveryState(str, Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class Delivery:
    """A callback owed for a finished job: one row of the store's outbox."""

    id: int
    job_id: str
    url: str
    created_at: float
    attempts: int


@dataclass(frozen=True)
class Schedule:
    """One row of the store's schedules; `body` is its settings as JSON (see schedules)."""

    name: str
    body: str
    enabled: bool
    last_fire: float
    created_at: float
    updated_at: float
    user_id: int | None = None  # whose it is, and whose jobs its runs are (None: no one's)

    @property
    def settings(self) -> dict[str, object]:
        found = json.loads(self.body)
        return found if isinstance(found, dict) else {}


class QueueStatus(str, Enum):
    """A queued job's states, named as Ocypod names them."""

    QUEUED = "queued"
    RUNNING = "running"
    FAILED = "failed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class QueueSettings:
    """One queue; durations in whole seconds (0: none), as its new jobs take them."""

    name: str
    timeout: int = 300
    heartbeat_timeout: int = 0
    expires_after: int = 300
    retries: int = 0
    retry_delays: tuple[int, ...] = ()


@dataclass(frozen=True)
class QueueJob:
    """One job of a queue: one row of the store's qjobs. `input` and `output` are JSON text;
    `due_at` is when the queue monitor must next look at it (time-out, retry, expiry)."""

    id: int
    queue: str
    status: QueueStatus
    tags: tuple[str, ...] | None
    input: str
    output: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    last_heartbeat: float | None
    timeout: int
    heartbeat_timeout: int
    expires_after: int
    retries: int
    retries_attempted: int
    retry_delays: tuple[int, ...] | None
    due_at: float | None

    @property
    def retry_left(self) -> bool:
        return self.retries_attempted < self.retries

    @property
    def ended(self) -> bool:
        """Ocypod's `ended`: nothing more will happen to it but expiry."""
        if self.status in (QueueStatus.COMPLETED, QueueStatus.CANCELLED):
            return True
        return self.status in (QueueStatus.FAILED, QueueStatus.TIMED_OUT) and not self.retry_left
