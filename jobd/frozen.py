"""Life inside the frozen binary: the daemon runs two or three processes below the one started.

staticx's loader starts PyInstaller's bootloader, which starts Python. SIGTERM to the top
process reaches the daemon, but SIGKILL ends only the top one and would leave the daemon
running with the data dir locked. The daemon therefore watches the top process and exits
with it, as if it had been killed itself.

In front of staticx, jobd's own launcher (launcher/launcher.c) checks TMPDIR and writes the
staticx program into `jobd-exe-*` there; each of staticx and PyInstaller unpacks itself into a
directory in TMPDIR (`staticx-*`, `_MEI*`) and removes it on a normal exit. A SIGKILL of the
whole tree leaves them behind. Each run therefore holds a lock on a file in its own
directories for as long as it lives, and every start removes the directories whose lock
nobody holds: earlier runs' that died, never a live one's.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import shutil
import sys
import threading
from pathlib import Path

log = logging.getLogger("jobd")

#: The file in each unpack directory whose lock says its run is alive.
ALIVE = ".jobd-alive"
_LAUNCH_PREFIX = "jobd-exe-"
_UNPACK_PREFIXES = ("_MEI", "staticx-", _LAUNCH_PREFIX)
_HELD: list[int] = []


def _cmdline(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().split(b"\0")
    except OSError:
        return None


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        text = stat.read()
    return int(text[text.rfind(b")") + 2 :].split()[1])


def launcher_pid() -> int | None:
    """The top-most ancestor started with our arguments: the process a user or docker started."""
    if not getattr(sys, "frozen", False):
        return None
    ours = _cmdline(os.getpid())
    if ours is None:
        return None
    top, pid = None, os.getppid()
    while pid > 1:
        theirs = _cmdline(pid)
        if theirs is None or theirs[1:] != ours[1:]:
            break
        top, pid = pid, _parent(pid)
    return top


def remove_launch_copy() -> None:
    """The launcher's copy of the staticx program has served once staticx has unpacked it,
    which it has by now: remove it at once, whatever the command."""
    program = os.environ.get("STATICX_PROG_PATH")
    if getattr(sys, "frozen", False) and program:
        folder = Path(program).parent
        if folder.name.startswith(_LAUNCH_PREFIX):
            shutil.rmtree(folder, ignore_errors=True)


def claim_unpack_dirs() -> None:
    """Mark this run's unpack directories as alive: a lock held until the process ends."""
    for folder in _own_unpack_dirs():
        try:
            fd = os.open(folder / f"{ALIVE}.{os.getpid()}", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(folder / f"{ALIVE}.{os.getpid()}", folder / ALIVE)  # appears locked
        except OSError as exc:
            log.warning("cannot mark %s as in use: %s", folder, exc)
            continue
        _HELD.append(fd)  # never closed: the lock lasts as long as this process


def remove_dead_unpack_dirs() -> None:
    """Remove earlier runs' unpack directories whose lock is free: their process is dead."""
    own = set(_own_unpack_dirs())
    for parent in {folder.parent for folder in own}:
        try:
            entries = list(parent.iterdir())
        except OSError:
            continue
        for folder in entries:
            if folder in own or not folder.name.startswith(_UNPACK_PREFIXES):
                continue
            if _is_dead(folder / ALIVE):
                shutil.rmtree(folder, ignore_errors=True)
                log.info("removed %s, left behind by a jobd that was killed", folder)


def _own_unpack_dirs() -> list[Path]:
    found = [getattr(sys, "_MEIPASS", None), os.environ.get("STATICX_BUNDLE_DIR")]
    return [Path(folder) for folder in found if folder and getattr(sys, "frozen", False)]


def _is_dead(alive: Path) -> bool:
    """True only if the file exists (so the directory is jobd's) and its lock is free."""
    try:
        fd = os.open(alive, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False  # no lock file: another program's, or a jobd still starting
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def exit_with_launcher() -> None:
    """Start a thread that ends this process the moment the launcher is gone."""
    pid = launcher_pid()
    if pid is None:
        return
    threading.Thread(target=_watch, args=(pid,), name="launcher-watch", daemon=True).start()


def _watch(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
        select.select([fd], [], [])
    except OSError:  # no pidfd (kernel before 5.3): look once a second instead
        while _cmdline(pid) is not None:
            threading.Event().wait(1.0)
    log.error("the jobd launcher (pid %d) was killed; exiting at once", pid)
    bundle = os.environ.get("STATICX_BUNDLE_DIR")
    if bundle:  # the dead launcher would have removed it; PyInstaller's parent cleans its own
        shutil.rmtree(bundle, ignore_errors=True)
    os._exit(137)
