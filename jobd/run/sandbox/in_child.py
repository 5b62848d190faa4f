"""What run.sh's process does to itself between fork (or clone) and exec. It runs in a copy
of a threaded daemon or of the spawner, so it makes only system calls; and the spawner
imports it before anything else, so it imports nothing of jobd's but Landlock."""

from __future__ import annotations

import os
import resource

from jobd.run.sandbox import landlock


def confine_self(
    joiners: list[int], rlimits: list[tuple[int, int]], ruleset: int | None, isolate: bool
) -> None:
    """What the child does to itself, between fork and exec: join its cgroups, take its
    rlimits, enforce its ruleset. It runs in a copy of a threaded daemon (or of the spawner),
    so it only makes system calls: nothing that takes a lock."""
    try:
        for fd in joiners:
            os.write(fd, b"0")
        for which, value in rlimits:
            resource.setrlimit(which, (value, value))
        if ruleset is not None:
            landlock.enforce(ruleset)
        elif isolate:
            landlock.no_new_privs()
    except (OSError, ValueError) as exc:  # stderr is jobd.stderr by now
        os.write(2, f"jobd: run.sh could not be confined: {exc}\n".encode())
        raise
