"""The daemon's log: one line per event, whatever a client put into an ID or a path, and a
failure that repeats is logged once, not once per retry."""

from __future__ import annotations

import logging
import re
import sys
import threading

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def escape(text: str) -> str:
    """Control characters as \\xNN, so no client can start a line of its own in the log."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class _OneLine(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))  # a traceback after it keeps its lines


def configure() -> None:
    # what no line shows is not gathered for each one (the logging HOWTO's "Optimization")
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # the caller's file and line: a walk up the stack per line
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


class Once:
    """Remembers which failures were logged, so a retry loop says so once and says when it
    is over."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def failed(
        self, key: str, message: str, *args: object, exc: BaseException | None = None
    ) -> None:
        """Log an error the first time `key` fails; `exc`'s traceback goes with it."""
        with self._lock:
            first = key not in self._seen
            self._seen.add(key)
        if first:
            self._log.error(message + " (retrying; logged once)", *args, exc_info=exc)

    def recovered(self, key: str, message: str, *args: object) -> None:
        with self._lock:
            if key not in self._seen:
                return
            self._seen.discard(key)
        self._log.info(message, *args)
