"""The kernel's small files (/proc, cgroupfs) read and written through one plain descriptor.

A buffered `open()` adds four system calls (fstat, the terminal check, two seeks) to each
such file, and with other threads about, each system call hands the GIL over and back:
the daemon reads and writes a dozen of these for every job.
"""

from __future__ import annotations

import os
from pathlib import Path

#: More than any /proc/PID/stat, children list or cgroup setting jobd reads holds.
_MOST = 1 << 16


def read_small(path: Path | str) -> bytes:
    """The whole file, for files the kernel makes up on read (one read may not be all)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return read_to_end(fd)
    finally:
        os.close(fd)


def read_to_end(fd: int) -> bytes:
    """What a descriptor gives until its end (a file's, or a pipe's last writer closing)."""
    chunks = []
    while chunk := os.read(fd, _MOST):
        chunks.append(chunk)
    return b"".join(chunks)


def write_small(path: Path | str, data: bytes) -> None:
    """One write of `data`, as the kernel's setting files expect (no truncating first)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
