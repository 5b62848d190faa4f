"""Job states and the job record, and how a job looks on the wire."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum

#: The IDs a client may choose; anything else never reaches a filesystem path.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class JobStatus(str, Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED})


#: job-orchestrator's payload states, spelled as its deserializer expects.
_PAYLOAD_STATUS = {
    JobStatus.QUEUED: "Prepared",
    JobStatus.RUNNING: "Running",
    JobStatus.SUCCESS: "Completed",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELLED: "Killed",
}


def valid_job_id(job_id: str) -> bool:
    return JOB_ID_PATTERN.fullmatch(job_id) is not None


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass
class Job:
    """One row of the store; `seq` is the small integer ID and the FIFO order."""

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
        }

    def payload(self, workdir: str) -> dict[str, object]:
        """The job as job-orchestrator's client protocol shows it; every key is required."""
        return {
            "id": self.seq,
            "input": {},
            "status": "Cleaned" if self.expired else _PAYLOAD_STATUS[self.status],
            "loc": workdir,
            "pid": self.pgid or 0,
            "killed": self.status is JobStatus.CANCELLED,
        }
