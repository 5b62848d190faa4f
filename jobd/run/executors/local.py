"""Runs run.sh on this machine: its own session, process group and mark (see procs), output
straight to files."""

from __future__ import annotations

import errno
import os
import select
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jobd.run import procs
from jobd.run.executors import runsh


class StartError(Exception):
    """run.sh could not be started; the message says why, for the job's Message."""


#: Tries of an exec that finds run.sh busy (ETXTBSY): another thread's fork may hold a
#: write descriptor to it for a moment, until that child's exec closes it.
BUSY_TRIES, BUSY_FIRST_DELAY = 8, 0.005


@dataclass
class Run:
    """A started run.sh: its process (the group leader) and all its processes."""

    proc: subprocess.Popen[bytes]
    start_time: int | None
    tree: procs.Tree

    @property
    def pgid(self) -> int:
        return self.proc.pid


class LocalExecutor:
    def __init__(self, environ: Mapping[str, str], kill_grace: float) -> None:
        self._env = runsh.child_environment(environ)
        self._grace = kill_grace

    def start(self, workdir: Path, job_env: Mapping[str, str]) -> Run:
        """Start run.sh in `workdir`, with `job_env` on top of jobd's environment."""
        script = workdir / "run.sh"
        with open(script, "rb") as head:
            first_line = head.readline(256)
        argv = runsh.command(first_line)
        mark = procs.mark_for(workdir)
        env = {**self._env, **job_env, procs.MARK: mark}
        delay = BUSY_FIRST_DELAY
        with (
            open(workdir / runsh.STDOUT, "wb") as out,
            open(workdir / runsh.STDERR, "wb") as err,
        ):
            for tries_left in range(BUSY_TRIES - 1, -1, -1):
                try:
                    proc = subprocess.Popen(
                        argv,
                        cwd=workdir,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        env=env,
                        start_new_session=True,
                    )
                    break
                except OSError as exc:
                    if exc.errno != errno.ETXTBSY or not tries_left:
                        raise StartError(_start_failure(first_line, exc)) from None
                    time.sleep(delay)
                    delay *= 2
        started = procs.start_time(proc.pid)
        return Run(proc, started, procs.Tree(proc.pid, mark, started))

    def wait(self, run: Run, timeout: float | None) -> bool:
        """Wait until run.sh exits (False if `timeout` passes first), without reaping it:
        its zombie keeps the process group's number from being reused until `reap`."""
        if timeout is None:
            os.waitid(os.P_PID, run.pgid, os.WEXITED | os.WNOWAIT)
            return True
        try:
            return _exits_within(run.pgid, timeout)
        except OSError:  # no pidfd (kernel before 5.3): poll for the exit instead
            deadline = time.monotonic() + timeout
            while os.waitid(os.P_PID, run.pgid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
            return True

    def terminate(self, *runs: Run) -> None:
        """End every process of the runs, all at once: SIGTERM, then SIGKILL after the
        grace period."""
        procs.end_all([run.tree for run in runs], self._grace)

    def reap(self, run: Run) -> int:
        """Kill what run.sh left behind, then collect its return code."""
        procs.kill(run.tree)
        return run.proc.wait()


def _exits_within(pid: int, timeout: float) -> bool:
    """Wait on a pidfd: woken the moment the process exits, without polling."""
    fd = os.pidfd_open(pid)
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def _start_failure(first_line: bytes, exc: OSError) -> str:
    interpreter = first_line[2:].strip().decode(errors="replace")
    if first_line.rstrip(b"\n").endswith(b"\r"):
        return "run.sh has Windows line endings (CRLF); save it with Unix line endings (LF)"
    if isinstance(exc, FileNotFoundError) and interpreter:
        return f"run.sh's interpreter {interpreter!r} (from its #! line) is not installed here"
    return f"run.sh could not be started: {exc.strerror}"
