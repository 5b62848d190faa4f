"""Runs run.sh through Slurm: sbatch to submit, one squeue for every tracked job, scancel.

run.sh is submitted inside a small wrapper, because sbatch reads #SBATCH lines only from the
script it is given: the wrapper carries the daemon's defaults first and run.sh's own #SBATCH
lines after them (a later directive wins). Nothing is ever passed through a shell.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from jobd.run.executors import runsh

WRAPPER = "slurm-job.sh"
EXIT_FILE = "slurm-exitcode"
#: The attempt being submitted: the wrapper, written once, reads it for JOBD_ATTEMPT.
ATTEMPT_FILE = "slurm-attempt"
#: seconds an answer to "are sbatch, squeue and scancel here?" holds
TOOLS_CHECK_EVERY = 10.0
_SQUEUE_FORMAT = "JobID:|,State:|,Reason:|,exit_code:|"
#: Slurm's end states, and how each reads in a job's Message.
_END_STATES = {
    "COMPLETED": "",
    "FAILED": "Slurm FAILED: the job could not run to its end",
    "CANCELLED": "Slurm CANCELLED: the job was cancelled",
    "TIMEOUT": "Slurm TIMEOUT: time limit exceeded",
    "OUT_OF_MEMORY": "Slurm OUT_OF_MEMORY: the job ran out of memory (raise --mem)",
    "NODE_FAIL": "Slurm NODE_FAIL: the node running the job failed",
    "BOOT_FAIL": "Slurm BOOT_FAIL: the node could not boot",
    "DEADLINE": "Slurm DEADLINE: the job's deadline passed",
    "PREEMPTED": "Slurm PREEMPTED: the job was preempted",
    "REVOKED": "Slurm REVOKED: the job was revoked",
    "SPECIAL_EXIT": "Slurm SPECIAL_EXIT: the job ended in a special state",
}


class SlurmError(Exception):
    """sbatch, squeue or scancel could not do what was asked; the message says why."""


@dataclass(frozen=True)
class SlurmJob:
    """What squeue says of one job."""

    state: str
    reason: str
    status: int  # a wait status: exit code << 8, or the signal that ended it

    @property
    def finished(self) -> bool:
        return self.state in _END_STATES

    @property
    def running(self) -> bool:
        return self.state in ("RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED")

    def ending(self) -> str:
        """Why it ended, in words; empty for a normal exit (the exit code says it)."""
        return _END_STATES.get(self.state, f"Slurm {self.state}")


class SlurmExecutor:
    def __init__(
        self,
        environ: Mapping[str, str],
        partition: str | None = None,
        account: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._env = runsh.child_environment(environ)  # sbatch passes its environment to the job
        self._defaults = [f"--partition={partition}"] if partition else []
        self._defaults += [f"--account={account}"] if account else []
        self._defaults += _group_options(list(extra_args))
        self._tools_checked: tuple[float, str | None] | None = None

    def missing(self) -> str | None:
        """Why Slurm jobs cannot be submitted from here, if they cannot. Looked up again
        after TOOLS_CHECK_EVERY: /health asks each time, and a PATH search is dozens of
        stat calls."""
        now = time.monotonic()
        if self._tools_checked is None or now - self._tools_checked[0] >= TOOLS_CHECK_EVERY:
            self._tools_checked = (now, self._look_for_tools())
        return self._tools_checked[1]

    def _look_for_tools(self) -> str | None:
        for tool in ("sbatch", "squeue", "scancel"):
            if shutil.which(tool, path=self._env.get("PATH")) is None:
                return f"{tool} is not installed or not on jobd's PATH"
        return None

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv, env=self._env, capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmError(f"{argv[0]} failed: {exc}") from None

    def prepare(
        self, jobdir: Path, workdir: Path, options: Iterable[str], env: Mapping[str, str]
    ) -> None:
        """Write the wrapper: the daemon's defaults, then run.sh's own #SBATCH lines, then the
        upload's options (a later directive wins); then the job's variables. Kept, so a
        submission can be redone."""
        run_sh = (workdir / "run.sh").read_bytes()
        exit_file = shlex.quote(str(jobdir / EXIT_FILE))
        start = " ".join(runsh.command(run_sh))
        lines = ["#!/bin/sh"]
        lines += [f"#SBATCH {option}" for option in self._defaults]
        lines += _sbatch_lines(run_sh)
        lines += [f"#SBATCH {option}" for option in options]
        lines += [
            f"export {name}={shlex.quote(value)}"
            for name, value in env.items()
            if name != "JOBD_ATTEMPT"
        ]
        attempt_file = shlex.quote(str(jobdir / ATTEMPT_FILE))
        lines += [
            f'JOBD_ATTEMPT="$(cat {attempt_file} 2>/dev/null || echo 1)"; export JOBD_ATTEMPT'
        ]
        lines += [
            f"cd {shlex.quote(str(workdir))} || exit 1",
            start,
            "code=$?",
            # written whole or not at all: Slurm's own state tells the rest (killed, timed out)
            f'echo "$code" > {exit_file}.part && mv {exit_file}.part {exit_file}',
            'exit "$code"',
        ]
        (jobdir / WRAPPER).write_text("\n".join(lines) + "\n")

    def submit(self, name: str, jobdir: Path, workdir: Path, attempt: int = 1) -> int:
        """sbatch the prepared wrapper as `name`, for `attempt`; Slurm's job ID."""
        (jobdir / EXIT_FILE).unlink(missing_ok=True)  # an earlier attempt's
        (jobdir / ATTEMPT_FILE).write_text(f"{attempt}\n")
        done = self._run(
            "sbatch",
            "--parsable",
            f"--job-name={name}",
            f"--chdir={workdir}",
            f"--output={workdir / runsh.STDOUT}",
            f"--error={workdir / runsh.STDERR}",
            str(jobdir / WRAPPER),
        )
        if done.returncode != 0:
            raise SlurmError(f"sbatch refused the job: {done.stderr.strip() or done.stdout}")
        try:
            return int(done.stdout.strip().split(";")[0])
        except ValueError:
            raise SlurmError(f"sbatch answered {done.stdout.strip()!r}, not a job ID") from None

    def find(self, name: str) -> int | None:
        """The Slurm job named `name`, if one was submitted (to never submit twice)."""
        done = self._run("squeue", "-h", "--states=all", f"--name={name}", "-o", "%i")
        if done.returncode != 0:
            raise SlurmError(f"squeue failed: {done.stderr.strip()}")
        ids = [int(line) for line in done.stdout.split() if line.strip().isdigit()]
        return min(ids) if ids else None

    def states(self, slurm_ids: Iterable[int]) -> dict[int, SlurmJob]:
        """What Slurm says of these jobs, in one squeue call; jobs it forgot are left out."""
        ids = ",".join(str(i) for i in slurm_ids)
        if not ids:
            return {}
        done = self._run("squeue", "-h", "--states=all", f"--jobs={ids}", "-O", _SQUEUE_FORMAT)
        if done.returncode != 0:
            if "Invalid job id" in done.stderr:
                return {}  # none of them is known any more
            raise SlurmError(f"squeue failed: {done.stderr.strip()}")
        found = {}
        for line in done.stdout.splitlines():
            fields = [field.strip() for field in line.split("|")]
            if len(fields) >= 4 and fields[0].isdigit():
                status = int(fields[3]) if fields[3].isdigit() else 0
                found[int(fields[0])] = SlurmJob(fields[1], fields[2], status)
        return found

    def cancel(self, slurm_id: int) -> None:
        done = self._run("scancel", str(slurm_id))
        if done.returncode != 0:
            raise SlurmError(f"scancel failed: {done.stderr.strip()}")


def _sbatch_lines(script: bytes) -> list[str]:
    """The #SBATCH lines at the top of a script, before its first command."""
    found = []
    for raw in script.decode(errors="replace").splitlines()[1:]:
        line = raw.strip()
        if line.startswith("#SBATCH"):
            found.append(line)
        elif line and not line.startswith("#"):
            break
    return found


def _group_options(tokens: list[str]) -> list[str]:
    """['--time', '10', '-N2'] -> ['--time 10', '-N2']: one #SBATCH line per option."""
    grouped: list[str] = []
    for token in tokens:
        if token.startswith("-") or not grouped:
            grouped.append(token)
        else:
            grouped[-1] += f" {token}"
    return grouped
