"""How a run's end reads as the job's state, the same for a run here and one on a `jobd worker`:
run.sh's return code, why jobd ended it (if it did) and the kernel's memory limit (if it ended
a process of it) make the Message; a failed attempt with attempts left runs again."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from jobd.config.units import format_size
from jobd.models import Job, JobStatus
from jobd.run.executors.runsh import ending
from jobd.run.lifecycle import Lifecycle

_RUNNING = frozenset({JobStatus.RUNNING})


class Stop(enum.Enum):
    """Why jobd itself ended a run; decides the final state."""

    CANCEL = "cancelled"
    TIMEOUT = "timed out"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class Ending:
    """A run's end: run.sh's return code (negative: the signal that ended it), why jobd ended
    it, and the memory limit at which the kernel ended a process of it."""

    code: int
    stop: Stop | None = None
    out_of_memory_at: int | None = None  # bytes


def outcome(job: Job, end: Ending) -> tuple[JobStatus, str, int | None]:
    """The final state, its Message and the exit code (null once jobd or a signal ended it)."""
    how = ending(end.code)
    if end.out_of_memory_at is not None:
        how += (
            "; the kernel ended a process of it at its memory limit of"
            f" {format_size(end.out_of_memory_at)}"
        )
    if end.stop is Stop.CANCEL:
        status, message = JobStatus.CANCELLED, f"cancelled while running; {how}"
    elif end.stop is Stop.TIMEOUT:
        status, message = JobStatus.FAILED, f"timed out after {job.timeout:g}s; {how}"
    else:
        status, message = (JobStatus.SUCCESS if end.code == 0 else JobStatus.FAILED), how
    exit_code = end.code if end.stop is None and end.code >= 0 else None
    return status, message, exit_code


def settle(lifecycle: Lifecycle, job: Job, end: Ending) -> Job | None:
    """End a RUNNING job's run: its final state, or its next attempt queued (returned)."""
    status, message, exit_code = outcome(job, end)
    if status is JobStatus.FAILED and job.attempt < job.max_attempts:
        again = lifecycle.retry(job, message)
        if again is not None:
            return again
    if job.max_attempts > 1:
        message = f"attempt {job.attempt} of {job.max_attempts}: {message}"
    lifecycle.finish(job.id, status, message, expect=_RUNNING, exit_code=exit_code)
    return None
