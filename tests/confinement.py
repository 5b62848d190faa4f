"""Helpers of the confinement tests: a daemon started as an unprivileged user (uid 1000); its
processes (the binary's launcher, loader and Python); and the processes of a job, found by
the JOBD_JOB_ID in their environment."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, proc_gone

#: The unprivileged user the contract names (`setpriv --reuid=1000 --regid=1000 --clear-groups`).
USER = 1000
#: What a daemon started as USER needs to read, besides the checkout: the interpreter and the
#: packages jobd imports (the source pass; the binary carries its own).
_IMPORTS = ("bottle", "waitress", "prometheus_client", "croniter", "yaml", "rich", "tzdata")


def _needed() -> list[Path]:
    exe = os.environ.get("JOBD_EXE")
    if exe:
        return [Path(exe).resolve()]
    paths = [Path(sys.executable).resolve(), Path(sys.prefix), Path(sys.base_prefix), REPO_ROOT]
    for name in _IMPORTS:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            paths.append(Path(spec.origin).resolve())
    return paths


def _blocked(path: Path, below: Path = Path("/")) -> Path | None:
    """The first folder from `below` down to `path` that USER may not pass, or `path` itself
    if USER may not read (and, if it is a program, run) it; None when USER reaches it."""
    for folder in [*reversed(path.parents), path]:
        if folder != below and below not in folder.parents:
            continue
        mode = folder.stat()
        if folder.is_dir():
            wanted = stat.S_IXOTH | (stat.S_IROTH if folder == path else 0)
        else:
            wanted = stat.S_IROTH | (stat.S_IXOTH if mode.st_mode & stat.S_IXUSR else 0)
        if mode.st_mode & wanted != wanted and mode.st_uid != USER:
            return folder
    return None


def user_wrapper(stage: Path) -> list[str]:
    """A command that starts the daemon's command (its arguments) as USER, in a mount
    namespace of its own where what USER must read under /root (0700, e.g. pyenv's Python)
    is bound back over an empty /root. It execs all the way: its PID is jobd's.

    Skips the test where this cannot be done: not root, no unshare/setpriv, no mount
    namespace, or the interpreter or binary behind a folder USER cannot pass."""
    if os.geteuid() != 0:
        pytest.skip("starting jobd as uid 1000 needs root")
    for tool in ("unshare", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"starting jobd as uid 1000 needs {tool}")
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    home = Path("/root")
    rebound: set[Path] = set()
    for path in _needed():
        top = home / path.relative_to(home).parts[0] if home in path.parents else None
        if top is not None:
            rebound.add(top)  # /root itself becomes passable; what is below it must be too
        blocked = _blocked(path, below=top or Path("/"))
        if blocked is not None:
            pytest.skip(f"uid {USER} cannot reach {path}: {blocked} is not open to others")
    lines = ["set -e"]
    moves = []
    for number, top in enumerate(sorted(rebound)):
        spot = stage / str(number)
        spot.mkdir(parents=True, exist_ok=True)
        lines.append(f"mount --bind {shlex.quote(str(top))} {shlex.quote(str(spot))}")
        moves += [
            f"mkdir -p {shlex.quote(str(top))}",
            f"mount --move {shlex.quote(str(spot))} {shlex.quote(str(top))}",
        ]
    if rebound:
        lines.append(f"mount -t tmpfs -o mode=0755,size=1m jobd-test-home {home}")
        lines += moves
    lines.append(f'exec setpriv --reuid={USER} --regid={USER} --clear-groups --inh-caps=-all "$@"')
    script = "\n".join(lines)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "as-user"]


def user_data_dir(base: Path) -> Path:
    """A data dir path for a daemon running as USER: `base` lets others pass, and a folder of
    USER's in it holds the data dir (which the daemon makes)."""
    base.chmod(0o711)
    home = base / f"uid{USER}"
    home.mkdir(exist_ok=True)
    os.chown(home, USER, USER)
    home.chmod(0o755)
    return home / "data"


# --------------------------------------------------------------------------- processes


def _parents() -> dict[int, int]:
    found = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    text = Path(f"/proc/{entry.name}/stat").read_text()
                    found[int(entry.name)] = int(text.rpartition(")")[2].split()[1])
    return found


def daemon_processes(pid: int, token: str) -> list[int]:
    """jobd's own processes: the one started, and those below it with the token in their
    environment (the binary's loader and Python; never a job, which gets no JOBD_*)."""
    parents = _parents()
    found, queue = [pid], [pid]
    while queue:
        parent = queue.pop()
        for child, its_parent in parents.items():
            if its_parent != parent:
                continue
            with contextlib.suppress(OSError):
                if token.encode() in Path(f"/proc/{child}/environ").read_bytes():
                    found.append(child)
                    queue.append(child)
    return found


def processes_of(job_id: str) -> list[int]:
    """Live processes (zombies left out) whose environment names the job: every process a
    run.sh starts inherits its JOBD_JOB_ID."""
    needle = f"JOBD_JOB_ID={job_id}".encode()
    found = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as environ:
                    variables = environ.read().split(b"\0")
            except OSError:
                continue
            if needle in variables and not proc_gone(int(entry.name)):
                found.append(int(entry.name))
    return found


def kill_processes_of(job_id: str, timeout: float = 30.0) -> list[int]:
    """A safety net: stop, then kill, every process of the job until none is left (a fork
    bomb forks while it is being killed). Returns every PID it signalled."""
    signalled: list[int] = []
    deadline = time.monotonic() + timeout
    while (pids := processes_of(job_id)) and time.monotonic() < deadline:
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        signalled += pids
    return signalled
