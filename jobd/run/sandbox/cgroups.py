"""Control groups for jobs: a memory and a process limit the kernel holds a job's whole
tree to, and the kernel's own word when its OOM killer ended the job.

jobd makes its jobs' groups below its own, in cgroup v2 (one tree) where the memory and
pids controllers are there, else in cgroup v1 (a tree per controller).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from jobd.sysfiles import read_small, write_small

_CONTROLLERS = ("memory", "pids")


class CgroupsUnavailable(Exception):
    """jobd cannot make groups for its jobs here; the message says why."""


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, type, super options) of every cgroup mount, from mountinfo."""
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            head, _, tail = line.partition(" - ")
            fstype, _, options = tail.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                found.append((head.split()[4], fstype, set(options.split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """This process's group per controller ('' for cgroup v2), from /proc/self/cgroup."""
    paths = {}
    with open("/proc/self/cgroup") as listing:
        for line in listing:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _read(path: Path) -> str:
    return read_small(path).decode()


def _write(path: Path, text: str) -> None:
    write_small(path, text.encode())


class Cgroups:
    """Where jobd's job groups go: one folder per controller (v1) or one (v2)."""

    def __init__(self, version: str, bases: dict[str, Path]) -> None:
        self.version = version
        self._bases = bases

    @classmethod
    def find(cls, label: str) -> Cgroups:
        """The groups of one daemon go in a folder named `label` below its own group; what
        an earlier run of it left there empty is removed."""
        if os.geteuid() != 0:
            raise CgroupsUnavailable("jobd does not run as root")
        try:
            mounts, own = _mounts(), _own_paths()
        except OSError as exc:
            raise CgroupsUnavailable(f"cannot read /proc: {exc.strerror}") from None
        problems = []
        for version in ("v2", "v1"):
            try:
                found = (
                    cls._v2(mounts, own, label) if version == "v2" else cls._v1(mounts, own, label)
                )
                found._sweep()
                return found
            except CgroupsUnavailable as exc:
                problems.append(f"{version}: {exc}")
            except OSError as exc:
                problems.append(f"{version}: {exc.filename}: {exc.strerror}")
        raise CgroupsUnavailable("; ".join(problems))

    @classmethod
    def _v1(
        cls, mounts: list[tuple[str, str, set[str]]], own: dict[str, str], label: str
    ) -> Cgroups:
        bases = {}
        for controller in _CONTROLLERS:
            point = next((m for m, t, o in mounts if t == "cgroup" and controller in o), None)
            if point is None or controller not in own:
                raise CgroupsUnavailable(f"no {controller} controller mounted")
            base = Path(point) / own[controller].lstrip("/") / label
            base.mkdir(exist_ok=True)
            bases[controller] = base
        return cls("v1", bases)

    @classmethod
    def _v2(
        cls, mounts: list[tuple[str, str, set[str]]], own: dict[str, str], label: str
    ) -> Cgroups:
        point = next((m for m, t, _ in mounts if t == "cgroup2"), None)
        if point is None or "" not in own:
            raise CgroupsUnavailable("not mounted")
        home = Path(point) / own[""].lstrip("/")
        present = set(_read(home / "cgroup.controllers").split())
        if not set(_CONTROLLERS) <= present:
            raise CgroupsUnavailable(
                f"controllers {' '.join(sorted(set(_CONTROLLERS) - present))} not available"
            )
        # A group with processes may not pass controllers down (the "no internal processes"
        # rule): jobd moves what runs in its group into a leaf of its own first.
        enable = " ".join(f"+{name}" for name in _CONTROLLERS)
        try:
            _write(home / "cgroup.subtree_control", enable)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            leaf = home / "jobd-daemon"
            leaf.mkdir(exist_ok=True)
            for pid in _read(home / "cgroup.procs").split():
                with contextlib.suppress(ProcessLookupError):
                    _write(leaf / "cgroup.procs", pid)
            _write(home / "cgroup.subtree_control", enable)
        base = home / label
        base.mkdir(exist_ok=True)
        _write(base / "cgroup.subtree_control", enable)
        return cls("v2", {"": base})

    def _sweep(self) -> None:
        """Groups an earlier run of this daemon left, and the empty folders of daemons that
        were killed; rmdir refuses any group with a live process."""
        for base in self._bases.values():
            for entry in base.iterdir():
                if entry.is_dir():
                    with contextlib.suppress(OSError):
                        entry.rmdir()
            for other in base.parent.glob("jobd-*"):
                if other != base and not any(entry.is_dir() for entry in other.iterdir()):
                    with contextlib.suppress(OSError):
                        other.rmdir()

    def _base(self, key: str) -> Path:
        """A daemon's folder, made again if another daemon's sweep took it while empty."""
        base = self._bases[key]
        try:
            base.mkdir()
        except FileExistsError:
            return base
        if self.version == "v2":
            _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in _CONTROLLERS))
        return base

    def _make_group(self, key: str, folder: Path) -> None:
        """One mkdir when all is as it should be; else what an earlier daemon left under the
        name goes first (rmdir refuses a group with a live process), and a daemon's folder
        another daemon's sweep took is made again."""
        try:
            folder.mkdir()
        except FileExistsError:
            folder.rmdir()
            folder.mkdir()
        except FileNotFoundError:
            self._base(key)
            folder.mkdir()

    def close(self) -> None:
        for base in self._bases.values():
            with contextlib.suppress(OSError):
                base.rmdir()

    def make(self, name: str, memory: int | None, processes: int | None) -> JobGroup | None:
        """A fresh group for one run, in the controllers its limits need; None without
        limits. A memory group outlives its rmdir while pages the run wrote are charged to
        it (its files in the page cache, or on tmpfs, for as long as they are kept), so one
        is made only to hold a memory limit: thousands of such dying groups slow the kernel."""
        limited = {"memory": memory is not None, "pids": processes is not None}
        any_limit = memory is not None or processes is not None
        keys = [key for key in self._bases if limited.get(key, any_limit)]  # v2: one folder
        if not keys:
            return None
        group = JobGroup(self.version, {key: self._bases[key] / name for key in keys})
        made = []
        try:
            for key, folder in group.folders.items():
                self._make_group(key, folder)
                made.append(folder)
        except OSError:
            for folder in made:
                folder.rmdir()
            raise
        try:
            group.limit(memory, processes)
        except OSError:
            group.remove()
            raise
        return group


class JobGroup:
    def __init__(self, version: str, folders: dict[str, Path]) -> None:
        self.version = version
        self.folders = folders  # by controller; v2's one folder under ""

    def _file(self, controller: str, name: str) -> Path:
        return self.folders["" if self.version == "v2" else controller] / name

    def limit(self, memory: int | None, processes: int | None) -> None:
        v2 = self.version == "v2"
        if memory is not None:
            _write(
                self._file("memory", "memory.max" if v2 else "memory.limit_in_bytes"), str(memory)
            )
            # swap does not stretch the limit
            swap = self._file("memory", "memory.swap.max" if v2 else "memory.memsw.limit_in_bytes")
            if swap.exists():
                _write(swap, "0" if v2 else str(memory))
        if processes is not None:
            _write(self._file("pids", "pids.max"), str(processes))

    def joiners(self) -> list[int]:
        """Descriptors of the groups' process lists, opened by the daemon: the child writes
        itself into them before it becomes run.sh (the kernel checks the opener's rights),
        so nothing it starts is ever outside its groups."""
        fds: list[int] = []
        try:
            for folder in self.folders.values():
                fds.append(os.open(folder / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def pids(self) -> list[int]:
        found: set[int] = set()
        for folder in self.folders.values():
            with contextlib.suppress(OSError):
                found.update(int(pid) for pid in _read(folder / "cgroup.procs").split())
        return sorted(found)

    def out_of_memory(self) -> bool:
        """Whether the kernel's OOM killer ended a process of the group."""
        if self.version == "v1" and "memory" not in self.folders:
            return False
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        try:
            text = _read(self._file("memory", name))
        except OSError:
            return False
        counts = dict(line.split() for line in text.splitlines() if line.strip())
        return int(counts.get("oom_kill", 0)) > 0

    def remove(self) -> None:
        """Remove the groups; one with a live process stays (rmdir refuses it)."""
        for folder in self.folders.values():
            with contextlib.suppress(FileNotFoundError):
                folder.rmdir()
