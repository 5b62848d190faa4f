"""Starts run.sh from a small helper process, forked once at start-up while jobd is one thread.

Forking the daemon for each job cost it milliseconds of CPU: copying the page tables of a
heap and dozens of thread stacks, re-initialising its threads in the child, and the
copy-on-write faults that followed in every thread. The helper is cloned instead: it has
one thread and touches nothing between jobs. It clones with CLONE_PARENT, so run.sh is
still the daemon's own child, waited for, reaped and timed out exactly as before.

The helper is an optimisation, never a condition: where it cannot start (a process that
already has threads, a kernel or seccomp profile without clone3 or clone) or when it is
gone, run.sh is started from the daemon itself (see local).
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import json
import logging
import os
import platform
import signal
import socket
import struct
import threading
from dataclasses import dataclass

from jobd.run.sandbox.in_child import confine_self
from jobd.sysfiles import read_to_end

log = logging.getLogger("jobd")

_CLONE_PARENT = 0x00008000
_CLONE3 = 435  # the same number on every architecture (added in Linux 5.3)
#: clone(2)'s number where seccomp answers ENOSYS to clone3 (Docker before 20.10.10)
_CLONE = {"x86_64": 56, "aarch64": 220}
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE = 1, 4
_REPLY = struct.Struct("ii")  # pid, errno
_LENGTH = struct.Struct("I")
#: the descriptors sent with each request before the cgroup joiners and the ruleset
_STDIN, _STDOUT, _STDERR, _REPORT = range(4)


class SpawnerGone(Exception):
    """The helper is gone (or never answered): start run.sh from the daemon."""


class ConfineFailed(Exception):
    """run.sh's child could not confine itself; it said why in jobd.stderr."""


@dataclass(frozen=True)
class Launch:
    """What the child does before it becomes run.sh, in the order subprocess does it."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    uid: int | None
    umask: int
    rlimits: list[tuple[int, int]]
    isolate: bool
    joiners: int  # how many cgroup joiners follow the four standard descriptors
    ruleset: bool  # and then a Landlock ruleset


@dataclass
class Child:
    """run.sh started by the helper: the daemon's child, waited for as a Popen is."""

    pid: int
    returncode: int | None = None

    def wait(self) -> int:
        """Reap it; its code, or minus the signal that ended it."""
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


class Spawner:
    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self._sock = sock
        self._lock = threading.Lock()

    @classmethod
    def start(cls) -> Spawner | None:
        """Fork the helper, from a thread that lives as long as jobd (a child's parent is a
        thread: jobd's main thread has only adopted orphans for children, see procs).
        None where it cannot be done safely (jobd already has threads) or fork fails; a
        kernel that refuses the clone is found out at the first run (SpawnerGone)."""
        if threading.active_count() != 1:
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        forked: list[int | OSError] = []
        ready = threading.Event()

        def parent() -> None:
            try:
                pid = os.fork()
            except OSError as exc:
                forked.append(exc)
                ready.set()
                return
            if pid == 0:
                _serve(theirs, ours)
            forked.append(pid)
            ready.set()
            threading.Event().wait()  # the parent of every run.sh, for jobd's whole life

        threading.Thread(target=parent, name="spawner", daemon=True).start()
        ready.wait()
        theirs.close()
        pid = forked[0]
        if isinstance(pid, OSError):
            log.info("starting run.sh from the daemon itself: fork: %s", pid.strerror)
            ours.close()
            return None
        return cls(pid, ours)

    def spawn(self, launch: Launch, fds: list[int]) -> Child:
        """Start run.sh; OSError when exec fails (as subprocess raises it), ConfineFailed
        when the child could not confine itself, SpawnerGone when the helper is gone and
        started nothing. The clone's first word on the report pipe is its PID, so a run.sh
        started just before the helper died is still known (never started twice)."""
        body = json.dumps(vars(launch)).encode()  # asdict would deep-copy the environment
        report, report_end = os.pipe()
        reply = b""
        try:
            # OSError: the helper is gone; the report tells whether it started anything
            with self._lock, contextlib.suppress(OSError):
                head = _LENGTH.pack(len(body)) + body
                _send(self._sock, head, [*fds[:3], report_end, *fds[3:]])
                os.close(report_end)
                report_end = -1
                reply = self._sock.recv(_REPLY.size, socket.MSG_WAITALL)
            if report_end >= 0:
                os.close(report_end)
                report_end = -1
            said = read_to_end(report)  # to its end: the clone's exec (or exit) closes it
        finally:
            os.close(report)
            if report_end >= 0:
                os.close(report_end)
        started, _, failure = said.partition(b"\n")
        if not started:
            pid, number = _REPLY.unpack(reply) if len(reply) == _REPLY.size else (-1, 0)
            if pid > 0:  # the clone ended before it could say a word
                Child(pid).wait()
                raise ConfineFailed("start")
            raise SpawnerGone(f"clone: {os.strerror(number)}" if number else "it has ended")
        child = Child(int(started))
        if not failure:  # run.sh is running
            return child
        child.wait()
        stage, _, number = failure.decode().partition(":")
        if stage == "exec":
            raise OSError(int(number), os.strerror(int(number)))
        raise ConfineFailed(stage)

    def close(self) -> None:
        """At shutdown: the helper sees its end close and exits; collect it."""
        self._sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def reap(self) -> None:
        """The helper is gone: collect it, if it has ended."""
        self._sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, os.WNOHANG)


def _send(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    sent = socket.send_fds(sock, [data], fds)
    if sent < len(data):
        sock.sendall(data[sent:])


# -- in the helper ------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _clone() -> tuple[int, int]:
    """clone3 (or clone) with CLONE_PARENT: (0, 0) in the child, (its pid, 0) in the helper,
    (-1, errno) when it failed."""
    args = (ctypes.c_uint64 * 8)(_CLONE_PARENT)  # exit_signal 0: CLONE_PARENT's rule
    pid = _libc.syscall(ctypes.c_long(_CLONE3), ctypes.byref(args), ctypes.c_long(64))
    if pid == -1 and ctypes.get_errno() in (errno.ENOSYS, errno.EPERM):
        number = _CLONE.get(platform.machine())
        if number is None:
            return -1, errno.ENOSYS
        flags = _CLONE_PARENT | signal.SIGCHLD
        zero = ctypes.c_long(0)
        pid = _libc.syscall(ctypes.c_long(number), ctypes.c_long(flags), zero, zero, zero, zero)
    return pid, ctypes.get_errno() if pid == -1 else 0


def _serve(sock: socket.socket, other: socket.socket) -> None:
    """The helper's loop: one request at a time, until the daemon's end closes."""
    try:
        other.close()
        _settle(sock.fileno())
        while True:
            request = _receive(sock)
            if request is None:
                break
            launch, fds = request
            pid, number = _clone()
            if pid == 0:
                _become(launch, fds)
            for fd in fds:
                os.close(fd)
            sock.sendall(_REPLY.pack(pid, number))
    finally:
        os._exit(0)


def _settle(keep: int) -> None:
    """The helper holds nothing of the daemon's but its socket; it ends with the daemon's
    thread that forked it; its memory (jobd's environment: the token) is not readable
    through /proc; Ctrl-C at a terminal is the daemon's to handle. Its signals are set up
    so that exec gives run.sh the defaults: caught ones are reset by exec itself, and
    Python's ignored SIGPIPE and SIGXFSZ are restored here, once."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    signal.signal(signal.SIGINT, lambda number, frame: None)
    for number in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(number, signal.SIG_DFL)
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 20)
    for fd in (0, 1, 2):  # so that no received descriptor lands on a standard one
        try:
            os.fstat(fd)
        except OSError:
            os.dup2(os.open("/", os.O_PATH), fd)


def _receive(sock: socket.socket) -> tuple[Launch, list[int]] | None:
    # every descriptor but the three run.sh gets is closed by its exec (socket.recv_fds
    # would drop these flags)
    flags = socket.MSG_WAITALL | socket.MSG_CMSG_CLOEXEC
    head, ancillary, _, _ = sock.recvmsg(_LENGTH.size, socket.CMSG_SPACE(64 * 4), flags)
    if len(head) < _LENGTH.size:
        return None
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    (length,) = _LENGTH.unpack(head)
    fields = json.loads(sock.recv(length, socket.MSG_WAITALL))
    fields["rlimits"] = [tuple(pair) for pair in fields["rlimits"]]
    return Launch(**fields), list(fds)


def _become(launch: Launch, fds: list[int]) -> None:
    """In the clone: become run.sh, or say why not on the report pipe, and exit."""
    report = fds[_REPORT]  # closed by exec: the daemon's sign that run.sh runs
    stage = "start"
    try:
        os.write(report, b"%d\n" % os.getpid())
        for target, fd in ((0, fds[_STDIN]), (1, fds[_STDOUT]), (2, fds[_STDERR])):
            os.dup2(fd, target)
        os.chdir(launch.cwd)
        os.umask(launch.umask)
        os.setsid()
        if launch.uid is not None:
            os.setgroups([])
            os.setregid(launch.uid, launch.uid)
            os.setreuid(launch.uid, launch.uid)
        stage = "confine"
        rest = fds[4:]
        joiners, ruleset = rest[: launch.joiners], rest[launch.joiners :]
        confine_self(
            joiners, launch.rlimits, ruleset[0] if launch.ruleset else None, launch.isolate
        )
        stage = "exec"  # every descriptor but 0, 1 and 2 is close-on-exec (see _receive)
        os.execve(launch.argv[0], launch.argv, launch.env)
    except BaseException as exc:  # the child must never return into the helper's loop
        number = exc.errno if isinstance(exc, OSError) and exc.errno else 0
        with contextlib.suppress(OSError):
            if stage == "start":  # confine_self says why itself
                os.write(2, f"jobd: run.sh could not be started: {exc}\n".encode())
            os.write(report, f"{stage}:{number}".encode())
    finally:
        os._exit(127)
