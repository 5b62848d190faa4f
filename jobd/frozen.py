"""Life inside the frozen binary: the daemon runs two or three processes below the one started.

staticx's loader starts PyInstaller's bootloader, which starts Python. SIGTERM to the top
process reaches the daemon, but SIGKILL ends only the top one and would leave the daemon
running with the data dir locked. The daemon therefore watches the top process and exits
with it, as if it had been killed itself.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import sys
import threading

log = logging.getLogger("jobd")


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
