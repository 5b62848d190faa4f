"""A job's folder as a person looks at it: the last bytes of a log and its files with sizes.

Read for the status page while the job may still write; nothing here follows a symbolic link
(run.sh may leave one pointing anywhere), and both reads are bounded, so a folder of a million
files or a log of gigabytes costs the same as a small one.
"""

from __future__ import annotations

import itertools
import os
import stat
from dataclasses import dataclass
from pathlib import Path

#: The most entries a listing holds; past it, the listing says there are more.
MAX_ENTRIES = 200
#: The most names read from one folder to sort them: a folder of a million files costs this.
MAX_SCANNED = 10_000


@dataclass(frozen=True)
class Entry:
    """One thing in the folder: its path below the folder, what it is, and its size (files
    only; a link's target is never looked at)."""

    path: str
    kind: str  # "file", "folder", "link" or "other"
    size: int | None


@dataclass(frozen=True)
class Listing:
    entries: tuple[Entry, ...]
    more: bool  # the folder holds more than `entries`


def tail(path: Path, size: int) -> tuple[bytes, int]:
    """The last `size` bytes of a file and its whole length; (b"", 0) if it is not there.
    Opened without following a link, so a log replaced by one shows nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b"", 0
    with os.fdopen(fd, "rb") as log:
        info = os.fstat(log.fileno())
        if not stat.S_ISREG(info.st_mode):
            return b"", 0
        log.seek(max(0, info.st_size - size))
        return log.read(size), info.st_size


def listing(folder: Path, most: int = MAX_ENTRIES) -> Listing:
    """The folder's entries, depth first and sorted, at most `most` of them. A link is listed
    as a link and never entered; an unreadable folder is listed, not opened."""
    found: list[Entry] = []
    more = _walk(folder, "", found, most)
    return Listing(tuple(found), more)


def _walk(folder: Path, prefix: str, found: list[Entry], most: int) -> bool:
    """Adds the entries below `folder` to `found`; True when it stopped at `most`."""
    try:
        with os.scandir(folder) as items:
            entries = sorted(itertools.islice(items, MAX_SCANNED), key=lambda item: item.name)
    except OSError:
        return False
    more = len(entries) == MAX_SCANNED  # a huge folder: sorted among those read
    for item in entries:
        if len(found) >= most:
            return True
        name = prefix + item.name
        try:
            info = item.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISLNK(info.st_mode):
            found.append(Entry(name, "link", None))
        elif stat.S_ISDIR(info.st_mode):
            found.append(Entry(name + "/", "folder", None))
            if _walk(Path(item.path), name + "/", found, most):
                return True
        elif stat.S_ISREG(info.st_mode):
            found.append(Entry(name, "file", info.st_size))
        else:
            found.append(Entry(name, "other", None))
    return more
