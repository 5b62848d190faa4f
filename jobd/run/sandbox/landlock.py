"""The kernel's Landlock sandbox, through ctypes: a ruleset is built in the daemon, and the
child enforces it on itself just before it becomes run.sh (see confine).

Landlock is unprivileged and stacks: once a process restricts itself, it and everything it
starts keep to the ruleset's paths, and (from ABI 6) cannot signal or reach the abstract
UNIX sockets of processes outside it. Its ptrace rule also keeps a job out of other
processes' /proc/PID/environ and memory.
"""

from __future__ import annotations

import ctypes
import os
import stat
import struct
from collections.abc import Iterable
from pathlib import Path

# The syscalls have the same numbers on every architecture (they came after the unification).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
#: What applies to a file rather than a directory (a rule on a file may grant no more).
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

# called with the GIL held: each call is a quick system call, and a run's ruleset takes
# a hundred of them, which would each hand the GIL to another thread and back
_libc = ctypes.PyDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_prctl = _libc.prctl


def abi() -> int | None:
    """The kernel's Landlock ABI version; None where it has none or it is switched off (or
    a seccomp profile refuses the call)."""
    version = _syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return int(version) if version > 0 else None


def all_rights(version: int) -> int:
    """Every file-system right the kernel knows at this ABI: all of them are handled, so what
    no rule grants is refused."""
    rights = (1 << 13) - 1  # ABI 1: execute ... make_sym
    if version >= 2:
        rights |= REFER
    if version >= 3:
        rights |= TRUNCATE
    if version >= 5:
        rights |= IOCTL_DEV
    return rights


def read_rights(version: int) -> int:
    return (EXECUTE | READ_FILE | READ_DIR) | (IOCTL_DEV if version >= 5 else 0)


class Rule:
    """`rights` beneath a folder (or on a file) held open as `fd`, packed once: the rules
    every run has in common are added to each run's ruleset without being built again."""

    def __init__(self, fd: int, rights: int, directory: bool, version: int) -> None:
        rights &= all_rights(version)
        if not directory:
            rights &= _FILE_RIGHTS
        # struct landlock_path_beneath_attr is packed: u64 allowed_access, s32 parent_fd
        self.attr = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)


class Ruleset:
    """One run's rules. The descriptor is inherited by the child, which enforces it."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.handled = all_rights(version)
        scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if version >= 6 else 0
        # struct landlock_ruleset_attr grew with the ABI: fs rights, then net (4), scoped (6)
        if version >= 6:
            attr = struct.pack("QQQ", self.handled, 0, scoped)
        elif version >= 4:
            attr = struct.pack("QQ", self.handled, 0)
        else:
            attr = struct.pack("Q", self.handled)
        buffer = ctypes.create_string_buffer(attr, len(attr))
        fd = _syscall(_CREATE_RULESET, buffer, ctypes.c_size_t(len(attr)), 0)
        if fd < 0:
            raise _error("landlock_create_ruleset")
        self.fd = int(fd)

    def allow(self, path: Path | str, rights: int) -> None:
        """Grant `rights` beneath `path` (a directory) or on it (a file); a path that is not
        there is skipped: nothing beneath it can be reached either."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        try:
            self.allow_fd(fd, rights, is_directory(fd))
        finally:
            os.close(fd)

    def allow_fd(self, fd: int, rights: int, directory: bool) -> None:
        self.add(Rule(fd, rights, directory, self.version))

    def add(self, rule: Rule) -> None:
        if _syscall(_ADD_RULE, self.fd, _RULE_PATH_BENEATH, rule.attr, 0) < 0:
            raise _error("landlock_add_rule")

    def close(self) -> None:
        os.close(self.fd)


def is_directory(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)


def enforce(ruleset_fd: int) -> None:
    """In the child: no gaining privileges by exec (Landlock's condition for the
    unprivileged), then the ruleset, for this process and all it starts."""
    if _prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _error("prctl(PR_SET_NO_NEW_PRIVS)")
    if _syscall(_RESTRICT_SELF, ruleset_fd, 0) != 0:
        raise _error("landlock_restrict_self")


def no_new_privs() -> None:
    if _prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _error("prctl(PR_SET_NO_NEW_PRIVS)")


def _error(call: str) -> OSError:
    number = ctypes.get_errno()
    return OSError(number, f"{call}: {os.strerror(number)}")


def image_except(hidden: Iterable[Path]) -> list[Path]:
    """Paths that together cover the whole file tree except `hidden` (and what lies above
    them): at each directory on the way down to a hidden path, its other entries. Landlock
    grants rights to a directory and everything beneath it, so this is how 'all but the
    data dir' is said. An entry that leads into a hidden path (a link to it) is left out."""
    hidden = [path.resolve() for path in hidden]
    above = {parent for path in hidden for parent in path.parents}
    covered: list[Path] = []
    for folder in sorted(above):
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for name in entries:
            entry = folder / name
            if entry in above or entry in hidden:
                continue
            try:
                target = entry.resolve()
            except (OSError, RuntimeError):
                continue
            if any(
                target == path or target in path.parents or path in target.parents
                for path in hidden
            ):
                continue
            covered.append(entry)
    return covered
