"""The exit codes of the client commands: one table, kept by every command that reports a
finished job (`submit --wait`, `wait`, `result`, `get`, `retry --wait`).

A finished job exits as a shell would report its run.sh: its own code when it ran and exited,
128+N when a signal N ended it. jobd's own endings take the codes `timeout(1)` and shells
give them: 124 for the time limit, 125 when jobd failed the job itself, 126 when run.sh could
not be executed, 130 when it was cancelled. The job object says how a run ended in its
`ExitCode` and `Message` (jobd's run/outcome.py and run/executors/ write them); the few
phrases read here are pinned by tests/test_console.py against a real daemon."""

from __future__ import annotations

import re
import signal
from typing import Any

EXIT_OK = 0
#: The command failed (unreachable daemon, an HTTP error, a bad folder): one line on stderr.
EXIT_ERROR = 1
EXIT_USAGE = 2
#: Not finished in the time given: neither a result nor an error.
EXIT_PENDING = 3
EXIT_TIMEOUT = 124
#: FAILED by jobd, not by run.sh: its result could not be stored, its run was lost.
EXIT_JOBD_FAILED = 125
#: run.sh never started: CRLF line endings, a missing interpreter, no confinement.
EXIT_NOT_STARTED = 126
EXIT_SIGNAL_BASE = 128
EXIT_CANCELLED = 130

#: `--exit-code-from`: `job` (the table above) or `cli` (only the command's own success).
FROM_JOB, FROM_CLI = "job", "cli"

_TIMED_OUT = re.compile(r"\btimed out after\b|\bSlurm (TIMEOUT|DEADLINE)\b")
_SIGNALLED = re.compile(r"\bended by (?:(SIG[A-Z0-9+-]+)|signal (\d+))")
_NOT_STARTED = re.compile(
    r"run\.sh (has Windows line endings|could not be started|could not be confined)"
    r"|run\.sh's interpreter .* is not installed|could not confine run\.sh"
)
_OUT_OF_MEMORY = re.compile(r"\bSlurm OUT_OF_MEMORY\b")


def exit_code(job: dict[str, Any]) -> int:
    """The code of a finished job, as a shell would report its run.sh (see the module)."""
    status, code = job.get("Status"), job.get("ExitCode")
    message = str(job.get("Message") or "")
    if status == "SUCCESS":
        return EXIT_OK
    if status == "CANCELLED":
        return EXIT_CANCELLED
    if status == "SKIPPED":  # a schedule's run that never ran
        return EXIT_NOT_STARTED
    if isinstance(code, int) and not isinstance(code, bool):
        return min(code, 255) if code > 0 else EXIT_JOBD_FAILED
    if _TIMED_OUT.search(message):
        return EXIT_TIMEOUT
    number = _signal_number(message)
    if number is not None:
        return EXIT_SIGNAL_BASE + number
    if _OUT_OF_MEMORY.search(message):
        return EXIT_SIGNAL_BASE + signal.SIGKILL
    if _NOT_STARTED.search(message):
        return EXIT_NOT_STARTED
    return EXIT_JOBD_FAILED


def _signal_number(message: str) -> int | None:
    match = _SIGNALLED.search(message)
    if match is None:
        return None
    if match.group(2):
        return int(match.group(2))
    try:
        return int(signal.Signals[match.group(1)])
    except KeyError:
        return None


def outcome(job: dict[str, Any]) -> str:
    """`demo-2 SUCCESS, exit code 0`, or with what went wrong."""
    status, code, message = job.get("Status"), job.get("ExitCode"), job.get("Message")
    text = f"{job.get('ID')} {status}"
    if code is not None:
        text += f", exit code {code}"
    elif status not in ("SUCCESS", "QUEUED", "RUNNING"):
        text += f", exit code {exit_code(job)}"
    if message and status != "SUCCESS" and not code:  # a non-zero code says it already
        text += f" ({message})"
    return text


def reported(job: dict[str, Any], exit_from: str) -> int:
    """The command's exit once it reported the finished `job`."""
    return EXIT_OK if exit_from == FROM_CLI else exit_code(job)
