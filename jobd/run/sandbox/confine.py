"""What a run.sh may reach: its own folder, its own TMPDIR and the image, read-only; not the
rest of the data dir, nor other processes. Decided once at start from what this machine
allows (`--isolation`), then applied to each run.

Two mechanisms, each used where it can be, both where both can:
- as root, a job user per run (see users): its folder is handed to it, the data dir is the
  daemon's alone, and the kernel's permission checks do the rest;
- Landlock (see landlock), as any user: the run sees the image read-only, its folder, its
  TMPDIR and what the operator shares, and cannot signal or trace outside itself.
The daemon also makes itself non-dumpable, so a job of its own user cannot read its
environment (the token) from /proc; and limits come from cgroups as root, rlimits otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import resource
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from jobd.errors import ConfigError
from jobd.models import NO_LIMITS, JobLimits
from jobd.run.sandbox import landlock
from jobd.run.sandbox.cgroups import Cgroups, CgroupsUnavailable, JobGroup
from jobd.run.sandbox.in_child import confine_self
from jobd.run.sandbox.users import JobUsers, why_not
from jobd.store.layout import Layout

log = logging.getLogger("jobd")

_PR_SET_DUMPABLE = 4
#: Devices a job writes to as any program does (its stdout may be one of these, too).
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/pts", "/dev/ptmx")
#: Shared memory: POSIX semaphores and shm (Python's multiprocessing) live there.
_SHARED_MEMORY = "/dev/shm"


@dataclass
class Cell:
    """One run's confinement: who it runs as, what the child does to itself before it
    becomes run.sh, and what is undone when the run is over."""

    tmpdir: Path
    env: dict[str, str]
    uid: int | None = None
    group: JobGroup | None = None
    limits: JobLimits = NO_LIMITS
    #: what the child does to itself before it becomes run.sh (see confine_self)
    joiners: list[int] = field(default_factory=list)
    rlimits: list[tuple[int, int]] = field(default_factory=list)
    ruleset: int | None = None
    isolate: bool = False
    _close: list[int] = field(default_factory=list)
    _handed: list[Path] = field(default_factory=list)

    @property
    def child_setup(self) -> Callable[[], None] | None:
        """For a child forked from the daemon: confine_self with this cell's descriptors."""
        if not (self.joiners or self.rlimits or self.ruleset is not None or self.isolate):
            return None
        return functools.partial(
            confine_self, self.joiners, self.rlimits, self.ruleset, self.isolate
        )

    def out_of_memory(self) -> bool:
        return self.group is not None and self.group.out_of_memory()

    def spawned(self) -> None:
        """The child has its rules: the daemon's copies of their descriptors can go."""
        for fd in self._close:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._close.clear()


class IsolationSettings(Protocol):
    """What `jobd serve` and `jobd worker` both set: --isolation, --job-uids, --job-readable,
    --job-writable."""

    @property
    def isolation(self) -> str: ...
    @property
    def job_uids(self) -> tuple[int, int]: ...
    @property
    def job_readable(self) -> tuple[Path, ...] | None: ...
    @property
    def job_writable(self) -> tuple[Path, ...] | None: ...


class Sandbox:
    @classmethod
    def for_data_dir(cls, settings: IsolationSettings, layout: Layout) -> Sandbox:
        """The sandbox of a data dir's jobs; ConfigError if --isolation cannot hold."""
        return cls(
            settings.isolation,
            layout.root,
            layout.scratch,
            settings.job_uids,
            settings.job_readable or (),
            settings.job_writable or (),
        )

    def seal(self, layout: Layout) -> list[Path]:
        """Only jobd reads the data dir (unless isolation is off); the folders above it
        that job users cannot pass, if any."""
        if self.mode == "off":
            return []
        return layout.seal(traversable=self.users is not None)

    def __init__(
        self,
        mode: str,
        data_dir: Path,
        scratch: Path,
        job_uids: tuple[int, int],
        readable: tuple[Path, ...] = (),
        writable: tuple[Path, ...] = (),
    ) -> None:
        self.mode = mode
        self._data_dir = data_dir
        self._scratch = scratch
        self._readable = readable
        self._writable = writable
        self.users: JobUsers | None = None
        self.landlock: int | None = None
        self.cgroups: Cgroups | None = None
        self.missing: dict[str, str] = {}  # what is not in force, and why
        #: what a run may read (the image but the data dir) and the devices it writes to.
        #: Folders and devices are opened once, their rules made once; regular files are
        #: opened for each run, so that jobd holds no deleted file's space (a filler beside
        #: the data dir) for ever
        self._held: list[landlock.Rule] = []
        self._files: list[tuple[Path, int]] = []
        #: run.sh gets the umask jobd was started with; jobd's own files are private
        self.job_umask = os.umask(0o077)
        try:
            self.cgroups = Cgroups.find(f"jobd-{_label(data_dir)}")
        except CgroupsUnavailable as exc:
            self.missing["cgroups"] = str(exc)
        if mode == "off":
            os.umask(self.job_umask)
            return
        reason = why_not(*job_uids)
        if reason is None:
            try:
                self.users = JobUsers(*job_uids)
            except OSError as exc:
                reason = str(exc)
        if reason is not None:
            self.missing["job users"] = reason
        version = landlock.abi()
        if version is None:
            self.missing["landlock"] = "the kernel has no Landlock (Linux 5.13 or later, with"
            " landlock in its lsm= list) or a seccomp profile refuses it"
        else:
            self.landlock = version
            self._open_image(version)
        if mode == "strict":
            self._insist()
        _non_dumpable()

    def _insist(self) -> None:
        """strict: every "may not" must hold; as root job users do it, as any other user
        Landlock must also scope signals (ABI 6, Linux 6.12)."""
        if self.users is None and self.landlock is not None and self.landlock < 6:
            self.missing["signal scoping"] = (
                f"Landlock ABI {self.landlock} cannot keep a job from signalling jobd (ABI 6,"
                " Linux 6.12, can)"
            )
        elif self.on:
            return
        raise ConfigError(
            "--isolation strict: jobs cannot be isolated here: "
            + "; ".join(f"{what}: {why}" for what, why in self.missing.items() if what != "cgroups")
        )

    @property
    def on(self) -> bool:
        return self.users is not None or self.landlock is not None

    def describe(self) -> dict[str, object]:
        """For /health: what is in force."""
        return {
            "mode": self.mode,
            "in_force": self.on,
            "job_users": str(self.users) if self.users else None,
            "landlock": self.landlock,
            "cgroups": self.cgroups.version if self.cgroups else None,
        }

    def summary(self) -> str:
        """The start-up line's words."""
        limits = f"limits by cgroup {self.cgroups.version}" if self.cgroups else "limits by rlimit"
        if self.mode == "off":
            return f"isolation off: jobs run as jobd's user and reach what it reaches; {limits}"
        in_force = [f"a job user each ({self.users})"] if self.users else []
        in_force += [f"Landlock ABI {self.landlock}"] if self.landlock else []
        said = ", ".join(in_force) or "NONE in force: jobs reach what jobd reaches"
        missing = "".join(f"; no {what}: {why}" for what, why in self.missing.items())
        return f"isolation {self.mode}: {said}; {limits}{missing}"

    def _open_image(self, version: int) -> None:
        """The image's links are left out: what one leads to is granted where it lies (a
        path is checked once resolved), and /dev/stdout would lead to jobd's own log."""
        read, nofollow = landlock.read_rights(version), os.O_NOFOLLOW
        image = [(path, read, nofollow) for path in landlock.image_except([self._data_dir])]
        devices = [(Path(each), read | landlock.WRITE_FILE, 0) for each in _DEVICES]
        for path, rights, follow in [*image, *devices]:
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC | follow)
                mode = os.fstat(fd).st_mode
                if stat.S_ISLNK(mode):
                    os.close(fd)
                elif stat.S_ISREG(mode):
                    os.close(fd)
                    self._files.append((path, rights))
                else:
                    self._held.append(landlock.Rule(fd, rights, stat.S_ISDIR(mode), version))

    # -- one run ------------------------------------------------------------------------------

    def enter(self, name: str, job_dir: Path, workdir: Path, limits: JobLimits) -> Cell:
        """Confine a run that is about to start in `workdir` (inside `job_dir`); `name` is
        unique to the job in this data dir."""
        tmpdir = self._scratch / name
        try:
            tmpdir.mkdir(mode=0o700)
        except FileExistsError:  # an earlier daemon's, left by a kill
            shutil.rmtree(tmpdir, ignore_errors=True)
            tmpdir.mkdir(mode=0o700)
        cell = Cell(tmpdir, {"TMPDIR": str(tmpdir)}, limits=limits)
        try:
            if self.users is not None:
                self._hand_over(cell, job_dir, workdir)
            if self.cgroups is not None:
                cell.group = self.cgroups.make(name, limits.memory, limits.processes)
            cell.joiners = cell.group.joiners() if cell.group else []
            cell._close += cell.joiners
            cell.ruleset = self._ruleset(workdir, tmpdir) if self.landlock else None
            if cell.ruleset is not None:
                cell._close.append(cell.ruleset)
        except BaseException:
            cell.spawned()
            self.leave(cell)
            raise
        cell.rlimits = [] if self.cgroups else _rlimits(limits, cell.uid)
        cell.isolate = self.on
        return cell

    def _hand_over(self, cell: Cell, job_dir: Path, workdir: Path) -> None:
        """The run's folder and TMPDIR become its user's; the job folder around them lets
        that user pass (group search), and no one else."""
        assert self.users is not None
        uid = cell.uid = self.users.acquire()
        cell._handed += [job_dir, workdir, cell.tmpdir]
        os.chown(job_dir, 0, uid)
        os.chmod(job_dir, 0o710)
        for folder, dirs, files in os.walk(workdir):
            os.chown(folder, uid, uid)
            for entry in dirs + files:
                os.lchown(os.path.join(folder, entry), uid, uid)
        os.chown(cell.tmpdir, uid, uid)
        cell.env |= {"HOME": str(cell.tmpdir), "USER": f"job{uid}", "LOGNAME": f"job{uid}"}

    def _ruleset(self, workdir: Path, tmpdir: Path) -> int:
        assert self.landlock is not None
        ruleset = landlock.Ruleset(self.landlock)
        try:
            read = landlock.read_rights(self.landlock)
            for rule in self._held:
                ruleset.add(rule)
            for path, rights in self._files:
                ruleset.allow(path, rights)
            for shared in self._readable:
                ruleset.allow(shared, read)
            every = landlock.all_rights(self.landlock)
            for own in (workdir, tmpdir, Path(_SHARED_MEMORY), *self._writable):
                ruleset.allow(own, every)
        except BaseException:
            ruleset.close()
            raise
        return ruleset.fd

    def close(self) -> None:
        """At shutdown, once no run is left."""
        if self.cgroups is not None:
            self.cgroups.close()

    def leave(self, cell: Cell) -> None:
        """After the run and all its processes are gone: its group, its TMPDIR and its user
        go; its folder is the daemon's alone again."""
        if cell.group is not None:
            cell.group.remove()
        shutil.rmtree(cell.tmpdir, ignore_errors=True)
        for folder in cell._handed:
            with contextlib.suppress(OSError):
                os.chown(folder, 0, 0)
                os.chmod(folder, 0o700)
        if cell.uid is not None and self.users is not None:
            self.users.release(cell.uid)
            cell.uid = None


def _label(data_dir: Path) -> str:
    """Tells this data dir's jobd from others on the machine, and stays across restarts."""
    return hashlib.sha256(os.fsencode(data_dir.resolve())).hexdigest()[:12]


def _non_dumpable() -> None:
    """A process of the same user may not read a non-dumpable process's /proc/PID/environ
    or memory: the token stays the daemon's."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _rlimits(limits: JobLimits, uid: int | None) -> list[tuple[int, int]]:
    """Where no cgroup can hold a run: its address space, and its user's processes (exact
    for a job user of its own; for the daemon's user, on top of what that user runs now)."""
    found = []
    if limits.memory is not None:
        found.append((resource.RLIMIT_AS, _within_hard(resource.RLIMIT_AS, limits.memory)))
    if limits.processes is not None:
        base = 0 if uid is not None else _tasks_of(os.getuid())
        found.append(
            (resource.RLIMIT_NPROC, _within_hard(resource.RLIMIT_NPROC, base + limits.processes))
        )
    return found


def _within_hard(which: int, value: int) -> int:
    """An unprivileged process may not raise a hard limit: a tighter one set on jobd wins."""
    hard = resource.getrlimit(which)[1]
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def _tasks_of(uid: int) -> int:
    """Threads and processes of `uid` (what RLIMIT_NPROC counts)."""
    count = 0
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                if entry.stat().st_uid == uid:
                    with open(f"/proc/{entry.name}/stat", "rb") as stat:
                        text = stat.read()
                    count += int(text[text.rfind(b")") + 2 :].split()[17])
    return count
