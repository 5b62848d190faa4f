"""Process groups: find, signal and wait for every process of a job's run, by PID only."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def _stat_fields(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Clock ticks after boot at which `pid` started; tells a PID from a reused one."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _session(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[3]) if fields else None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone: what we wanted
        os.killpg(pgid, sig)


def wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no live process is left in the group; False if some are still there."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def end_group(pgid: int, grace: float) -> signal.Signals | None:
    """SIGTERM the group, SIGKILL it after `grace`; returns the last signal sent, if any."""
    if not group_members(pgid):
        return None
    signal_group(pgid, signal.SIGTERM)
    if wait_group_gone(pgid, grace):
        return signal.SIGTERM
    signal_group(pgid, signal.SIGKILL)
    wait_group_gone(pgid, 10.0)
    return signal.SIGKILL


def end_leftover_group(pgid: int, leader_start: int | None) -> bool:
    """End a group a previous daemon started, if it is still that group (the PID may be reused).

    The leader's start time proves identity; without the leader, only a group that is
    also its own session (as jobd starts runs) is taken to be ours.
    """
    leader = _stat_fields(pgid)
    if leader is not None and leader_start is not None and int(leader[19]) != leader_start:
        return False
    if not any(_session(pid) == pgid for pid in group_members(pgid)):
        return False
    signal_group(pgid, signal.SIGKILL)
    wait_group_gone(pgid, 10.0)
    return True


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
