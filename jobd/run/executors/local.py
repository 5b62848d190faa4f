"""Runs run.sh on this machine: its own session, process group and mark (see procs), output
straight to files."""

from __future__ import annotations

import errno
import logging
import os
import select
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jobd.models import JobLimits
from jobd.run import procs
from jobd.run.executors import runsh
from jobd.run.executors.spawner import Child, ConfineFailed, Launch, Spawner, SpawnerGone
from jobd.run.sandbox.confine import Cell, Sandbox

log = logging.getLogger("jobd")


class StartError(Exception):
    """run.sh could not be started; the message says why, for the job's Message."""


#: Tries of an exec that finds run.sh busy (ETXTBSY): another thread's fork may hold a
#: write descriptor to it for a moment, until that child's exec closes it.
BUSY_TRIES, BUSY_FIRST_DELAY = 8, 0.005


@dataclass
class Run:
    """A started run.sh: its process (the group leader), all its processes, its confinement."""

    proc: subprocess.Popen[bytes] | Child
    start_time: int | None
    tree: procs.Tree
    cell: Cell
    #: set by reap: the kernel's OOM killer ended one of its processes
    out_of_memory: bool = False

    @property
    def pgid(self) -> int:
        return self.proc.pid


class LocalExecutor:
    def __init__(
        self,
        environ: Mapping[str, str],
        kill_grace: float,
        sandbox: Sandbox,
        spawner: Spawner | None = None,
    ) -> None:
        self._env = runsh.child_environment(environ)
        self._grace = kill_grace
        self.sandbox = self._sandbox = sandbox
        self._spawner = spawner

    def start(self, workdir: Path, job_env: Mapping[str, str], limits: JobLimits) -> Run:
        """Start run.sh in `workdir`, confined, with `job_env` on top of jobd's environment."""
        first_line = _first_line(workdir / "run.sh")
        argv = runsh.command(first_line)
        mark = procs.mark_for(workdir)
        try:
            cell = self._sandbox.enter(mark, workdir.parent, workdir, limits)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise StartError(f"jobd could not confine run.sh: {exc.strerror}{where}") from None
        env = {**self._env, **job_env, **cell.env, procs.MARK: mark}
        try:
            proc = self._spawn(argv, workdir, env, cell, first_line)
        except BaseException:
            self._sandbox.leave(cell)
            raise
        finally:
            cell.spawned()
        started = procs.start_time(proc.pid)
        return Run(proc, started, procs.Tree(proc.pid, mark, started, cell.uid), cell)

    def _spawn(
        self, argv: list[str], workdir: Path, env: dict[str, str], cell: Cell, first_line: bytes
    ) -> subprocess.Popen[bytes] | Child:
        delay = BUSY_FIRST_DELAY
        out = err = -1
        try:
            out = _create(workdir / runsh.STDOUT)
            err = _create(workdir / runsh.STDERR)
            if cell.uid is not None:
                os.fchown(out, cell.uid, cell.uid)
                os.fchown(err, cell.uid, cell.uid)
            for tries_left in range(BUSY_TRIES - 1, -1, -1):
                try:
                    return self._start(argv, workdir, env, cell, out, err)
                except (subprocess.SubprocessError, ConfineFailed):  # the child said why
                    raise StartError("run.sh could not be confined; see jobd.stderr") from None
                except OSError as exc:
                    if exc.errno != errno.ETXTBSY or not tries_left:
                        raise StartError(_start_failure(first_line, exc)) from None
                    time.sleep(delay)
                    delay *= 2
        finally:
            for fd in (out, err):
                if fd >= 0:
                    os.close(fd)
        raise AssertionError("unreachable")

    def _start(
        self, argv: list[str], workdir: Path, env: dict[str, str], cell: Cell, out: int, err: int
    ) -> subprocess.Popen[bytes] | Child:
        """From the spawner while there is one (see spawner), else forked from the daemon."""
        if self._spawner is not None:
            launch = Launch(
                argv,
                str(workdir),
                env,
                cell.uid,
                self._sandbox.job_umask,
                cell.rlimits,
                cell.isolate,
                len(cell.joiners),
                cell.ruleset is not None,
            )
            ruleset = [] if cell.ruleset is None else [cell.ruleset]
            stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                return self._spawner.spawn(launch, [stdin, out, err, *cell.joiners, *ruleset])
            except SpawnerGone as exc:
                log.warning("the process that starts run.sh is gone (%s); jobd starts it", exc)
                self._spawner.reap()
                self._spawner = None
            finally:
                os.close(stdin)
        return subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,
            user=cell.uid,
            group=cell.uid,
            extra_groups=[] if cell.uid is not None else None,
            umask=self._sandbox.job_umask,
            preexec_fn=cell.child_setup,
        )

    def close(self) -> None:
        """At shutdown, once no run is left."""
        if self._spawner is not None:
            self._spawner.close()

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
        """Kill what run.sh left behind, collect its return code, then undo its confinement."""
        procs.kill(run.tree)
        code = run.proc.wait()
        run.out_of_memory = run.cell.out_of_memory()
        self._sandbox.leave(run.cell)
        return code


def _create(path: Path) -> int:
    """As open(path, "wb") makes it, without the buffered file's own system calls."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)


def _first_line(script: Path) -> bytes:
    """run.sh's first line (at most 256 bytes, with its newline): its #! line, if any."""
    fd = os.open(script, os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = os.read(fd, 256)
    finally:
        os.close(fd)
    end = head.find(b"\n")
    return head if end < 0 else head[: end + 1]


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
