"""What both executors agree on about run.sh: how it is started, where its output goes, the
environment it sees, and how its end reads in a job's Message."""

from __future__ import annotations

from collections.abc import Mapping

from jobd.run import procs

STDOUT = "jobd.stdout"
STDERR = "jobd.stderr"


def command(first_line: bytes) -> list[str]:
    """run.sh's `#!` line picks its interpreter; without one it runs under /bin/sh."""
    return ["./run.sh"] if first_line.startswith(b"#!") else ["/bin/sh", "./run.sh"]


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The daemon's environment minus its own settings and the frozen binary's loader state.

    JOBD_* may hold the token. A PyInstaller binary points LD_LIBRARY_PATH at its bundle
    and leaks _PYI_*/STATICX_*; research tools run by run.sh must see the system's libraries.
    """
    env = {
        key: value
        for key, value in environ.items()
        if not key.startswith(("JOBD_", "_PYI_", "STATICX_"))
    }
    original = env.pop("LD_LIBRARY_PATH_ORIG", None)
    env.pop("LD_LIBRARY_PATH", None)
    if original:
        env["LD_LIBRARY_PATH"] = original
    return env


def ending(code: int) -> str:
    """How run.sh ended, from its return code (negative: the signal that ended it)."""
    if code < 0:
        return f"run.sh was ended by {procs.signal_name(-code)}"
    return f"run.sh exited with code {code}"
