"""Job users: as root, each running job gets an unprivileged uid of its own (HTCondor's slot
users), so the kernel's ordinary permission checks keep jobs apart even without Landlock: a
job cannot open another's files, read its /proc entries or signal it."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import tempfile
import threading
from pathlib import Path

#: Capabilities jobd needs to hand a job to its user (bits of /proc/self/status's CapEff).
_CAP_CHOWN, _CAP_SETGID, _CAP_SETUID = 0, 6, 7


class NoFreeUser(Exception):
    """Every job uid is taken by a live process."""


def why_not(first: int, last: int) -> str | None:
    """Why this process cannot run jobs as uids first..last; None if it can."""
    if os.geteuid() != 0:
        return "jobd does not run as root"
    caps = _effective_caps()
    missing = [
        name
        for name, bit in (
            ("CAP_SETUID", _CAP_SETUID),
            ("CAP_SETGID", _CAP_SETGID),
            ("CAP_CHOWN", _CAP_CHOWN),
        )
        if not caps >> bit & 1
    ]
    if missing:
        return f"the container dropped {', '.join(missing)}"
    if not _mapped(first, last):
        return f"uids {first}-{last} are not mapped into this user namespace (/proc/self/uid_map)"
    return None


def _effective_caps() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def _mapped(first: int, last: int) -> bool:
    try:
        with open("/proc/self/uid_map") as uid_map:
            ranges = [tuple(map(int, line.split())) for line in uid_map if line.strip()]
    except OSError:
        return True  # no user namespaces: every uid exists
    return any(inside <= first and last < inside + count for inside, _, count in ranges)


def busy_uids() -> set[int]:
    """The uids of every live process (the owner of /proc/PID is the process's uid)."""
    found = set()
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    found.add(entry.stat().st_uid)
    return found


class JobUsers:
    """The pool of job uids: a uid is handed out only when no process has it and no other
    jobd on the machine holds it, and the least recently used comes first, so a uid rests as
    long as possible between jobs. A run's processes all end with it (procs ends every
    process of its uid), so only uids that had processes when jobd started are looked for
    in /proc again: leftovers of an earlier jobd, or of another program.

    Daemons sharing a range hold their uids by a lock on a file per uid: the kernel drops the
    lock when a daemon dies, so a `kill -9` leaves no uid taken for ever."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self._free = collections.deque(range(first, last + 1))
        self._held: dict[int, int] = {}  # uid -> descriptor of its locked claim
        self._lock = threading.Lock()
        self._claims = _claims_folder()
        self._suspect = busy_uids() & set(self._free)

    def acquire(self) -> int:
        with self._lock:
            busy = busy_uids() if self._suspect else set()
            self._suspect &= busy
            for _ in range(len(self._free)):
                uid = self._free.popleft()
                if uid not in busy and self._claim(uid):
                    return uid
                self._free.append(uid)
        raise NoFreeUser(
            f"every job uid ({self.first}-{self.last}) has a live process or belongs to another"
            " jobd; give --job-uids a larger or a separate range"
        )

    def _claim(self, uid: int) -> bool:
        fd = os.open(self._claims / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._held[uid] = fd
        return True

    def release(self, uid: int) -> None:
        with self._lock:
            fd = self._held.pop(uid, None)
            if fd is not None:
                os.close(fd)
            self._free.append(uid)

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


def _claims_folder() -> Path:
    """Where daemons of this machine claim uids: /run when jobd may write there (it is
    emptied at boot, as the claims should be), the temporary folder otherwise."""
    for parent in ("/run", tempfile.gettempdir()):
        folder = Path(parent, "jobd-uids")
        with contextlib.suppress(OSError):
            folder.mkdir(mode=0o700, exist_ok=True)
            if folder.stat().st_uid == os.geteuid() and not folder.is_symlink():
                return folder
    raise OSError("jobd cannot keep its claims on job uids in /run/jobd-uids or the temp folder")
