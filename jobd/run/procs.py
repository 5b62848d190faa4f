"""A run's processes: its process group, and every process that carries the run's mark.

jobd starts run.sh in a session and group of its own, but a child may leave both (`setsid`,
`setpgid`, a double fork); it still inherits run.sh's environment. So each run gets a mark in
its environment, and ending a run ends its group and every process that carries the mark.
Processes are found and signalled by PID only, through a pidfd where the kernel has them, so
a PID reused by someone else is never signalled.

Finding marked processes means reading every process's environment: fine for a cancel, too
slow for the end of every job. So jobd makes itself its jobs' subreaper: when run.sh exits,
whatever it left running becomes jobd's child, and the end of a job only looks there.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from jobd.sysfiles import read_small

#: The variable that marks a run's processes.
MARK = "_JOBD_RUN"  # not JOBD_*: those never reach run.sh
#: How long ending a run waits for SIGKILL to take effect.
KILL_WAIT = 10.0
_PR_SET_CHILD_SUBREAPER = 36
#: /proc/PID/stat's flag of a kernel thread: it has no environment to read, ever
_PF_KTHREAD = 0x00200000
#: /proc's list of the processes jobd adopted, once it is their subreaper
_adopted_list: str | None = None


def adopt_orphans() -> bool:
    """Become the subreaper of every process jobd starts (from the main thread, at start).
    Orphans then come to the main thread, the only one that starts no process of its own,
    so its children are exactly what jobs left behind."""
    global _adopted_list
    listing = f"/proc/{os.getpid()}/task/{threading.main_thread().native_id}/children"
    if not os.path.exists(listing):  # a kernel without CONFIG_PROC_CHILDREN
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    _adopted_list = listing
    return True


def _children(pid: int | str) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            found += [
                int(child) for child in read_small(f"/proc/{pid}/task/{task}/children").split()
            ]
    return found


def _adopted() -> list[int]:
    if _adopted_list is None:
        return []
    try:
        return [int(pid) for pid in read_small(_adopted_list).split()]
    except OSError:
        return []


def reap_adopted() -> None:
    """Collect adopted processes that have ended, so no zombie is left."""
    for pid in _adopted():
        fields = _stat_fields(pid)
        if fields is not None and fields[0] in ("Z", "X"):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def mark_for(workdir: Path) -> str:
    """The mark of runs in `workdir` (`<jobs>/<id>/work`): the same across restarts, so a new
    daemon finds what an earlier one left running, and unique to this data dir's job."""
    real = os.path.join(_resolved(workdir.parent.parent), workdir.parent.name, workdir.name)
    return hashlib.sha256(os.fsencode(real)).hexdigest()[:32]


@functools.lru_cache(maxsize=8)
def _resolved(jobs: Path) -> str:
    """Where the data dir's links lead, looked up once: below it, jobd makes the folders."""
    return str(jobs.resolve())


def _stat_fields(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        text = read_small(f"/proc/{pid}/stat").decode()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Clock ticks after boot at which `pid` started; tells a PID from a reused one."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _carries(pid: int | str, needle: bytes) -> bool | None:
    """Whether the process carries the mark; None while that cannot be told yet. An exec
    lays out the new program's environment after replacing its memory, and an exit drops
    the memory before the process is a zombie: meanwhile its environment reads short or
    empty, though it still runs. Either lasts a moment (longer on a loaded machine): look
    again."""
    try:
        text = read_small(f"/proc/{pid}/environ")
    except PermissionError:  # not ours to read
        return False
    except OSError:  # gone, or without memory (as said below)
        text = b""
    if needle in text.split(b"\0"):
        return True
    # Not there: true only of the whole environment of a program that is set up. An exec
    # sets the end of the code (stat field 27) after laying out the environment (50, 51);
    # without memory (exiting), both read 0.
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X") or len(fields) < 49:
        return False
    if int(fields[6]) & _PF_KTHREAD:
        return False
    end_code, env_start, env_end = int(fields[24]), int(fields[47]), int(fields[48])
    return False if end_code and env_end - env_start == len(text) else None


def _live_pids() -> Iterable[tuple[int, list[str]]]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields and fields[0] not in ("Z", "X"):
                yield int(entry), fields


def _signal(pid: int, sig: signal.Signals, holds: Callable[[int], bool | None]) -> None:
    """Signal `pid` if it is (still) a member: checked after a pidfd pins the process."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfds (kernel before 5.3): a plain kill, right after the check
        if holds(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return
    try:
        if holds(pid):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, sig)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Tree:
    """Every process of one run: its group (None once that group is not the run's), and
    whatever carries its mark."""

    pgid: int | None
    mark: str
    #: when run.sh started (clock ticks after boot): older processes cannot be its
    #: descendants, so their environment is not read
    since: int | None = None
    #: the run's own user, if it has one: every process of that user is the run's, whatever
    #: it did to its group and environment
    uid: int | None = None

    @property
    def _needle(self) -> bytes:
        return f"{MARK}={self.mark}".encode()

    def _holds(self, pid: int) -> bool | None:
        """Whether `pid` is the run's; None while that cannot be told yet (see _carries)."""
        if self.uid is not None:
            try:
                if os.stat(f"/proc/{pid}").st_uid == self.uid:
                    return True
            except OSError:
                return False
        return _carries(pid, self._needle)

    def _members(self) -> tuple[list[int], list[int], list[int]]:
        """Live members: those in the group, those found only by their mark, and those whose
        mark cannot be told yet (see _carries)."""
        grouped, marked, unsure = [], [], []
        since = self.since or 0
        for pid, fields in _live_pids():
            if int(fields[2]) == self.pgid:
                grouped.append(pid)
            elif int(fields[19]) >= since:
                carries = self._holds(pid)
                if carries:
                    marked.append(pid)
                elif carries is None:
                    unsure.append(pid)
        return grouped, marked, unsure

    def members(self) -> list[int]:
        """Live members, and processes that may be: the run is not over while there are."""
        grouped, marked, unsure = self._members()
        return grouped + marked + unsure

    def signal(self, sig: signal.Signals) -> bool:
        """Signal the live members (the unsure once they are known); whether there were."""
        grouped, marked, _ = self._members()
        if grouped and self.pgid is not None:
            with contextlib.suppress(ProcessLookupError):  # already gone: what we wanted
                os.killpg(self.pgid, sig)
        for pid in marked:
            _signal(pid, sig, self._holds)
        return bool(grouped or marked)


def end_all(trees: Iterable[Tree], grace: float) -> dict[Tree, signal.Signals]:
    """SIGTERM every run at once, SIGKILL what is left after `grace`; the last signal each
    run with live processes was sent."""
    trees = list(trees)
    sent = {tree: signal.SIGTERM for tree in trees if tree.signal(signal.SIGTERM)}
    left = _wait_gone(trees, grace)  # also what could not be told a member yet
    deadline = time.monotonic() + KILL_WAIT
    while left and time.monotonic() < deadline:  # again, for what forked meanwhile
        for tree in left:
            if tree.signal(signal.SIGKILL):
                sent[tree] = signal.SIGKILL
        left = _wait_gone(left, 0.2)
    reap_adopted()
    return sent


def kill(tree: Tree) -> None:
    """SIGKILL at once what is left of a run whose run.sh has exited: its group, and what
    carries its mark among the processes jobd adopted (run.sh's orphans) and below them."""
    if _adopted_list is None:
        end_all([tree], 0)
        return
    if tree.pgid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(tree.pgid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT
    while time.monotonic() < deadline:
        found = {pid: tree._holds(pid) for pid in _below(_adopted())}
        if all(carries is False for carries in found.values()):
            break
        for pid, carries in found.items():
            if carries:
                _signal(pid, signal.SIGKILL, tree._holds)
        # let them die before looking again (their children come up), and the unsure show
        # their mark or end (so a killed one is only done once it is a zombie)
        time.sleep(0.002)
        reap_adopted()
    reap_adopted()


def _below(roots: list[int]) -> list[int]:
    """The processes and all their descendants."""
    found, stack = [], list(roots)
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack += _children(pid)
    return found


def leftovers(pgid: int | None, leader_start: int | None, mark: str) -> Tree:
    """What an earlier daemon's run may have left: its marked processes, and its group if
    that is still the run's group (the PID may have been reused).

    The leader's start time proves identity; without the leader, only a group that is
    also its own session (as jobd starts runs) is taken to be the run's.
    """
    if pgid is not None:
        leader = _stat_fields(pgid)
        reused = leader is not None and leader_start is not None and int(leader[19]) != leader_start
        in_its_session = any(int(f[3]) == pgid for _, f in _live_pids() if int(f[2]) == pgid)
        if reused or not in_its_session:
            pgid = None
    return Tree(pgid, mark, leader_start)


def _wait_gone(trees: Iterable[Tree], timeout: float) -> list[Tree]:
    """Wait until the runs have no live process; those that still have one."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    left = [tree for tree in trees if tree.members()]
    while left and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
        left = [tree for tree in left if tree.members()]
    return left


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
