"""A background thread that runs a tick, then sleeps until it is kicked or the tick's next
deadline, and stops on request. Nothing but a stop ends it: a failing tick is retried, and
what it could not use is set aside and shown in /health."""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable

from jobd.logs import Once

#: After a failed tick the loop tries again after this long, doubling up to the last.
RETRY_FIRST, RETRY_LAST = 0.5, 30.0
#: The longest a loop sleeps at once: a due time further away is looked at again then.
LONGEST_WAIT = 3600.0
#: How long /health lists a row that a loop set aside, and how many of them at most.
SET_ASIDE_SHOWN, SET_ASIDE_KEPT = 3600.0, 5
log = logging.getLogger("jobd")
_once = Once(log)


class Loop:
    """Subclasses name the thread, say how long a stop may wait for it, and write `tick`.

    `tick(now)` does one round of work and returns the seconds until the next is due (None:
    only when kicked). It can be driven directly with a made-up `now` in a test; `clock` is
    what the thread reads `now` from.
    """

    thread_name = "loop"
    stop_wait = 30.0

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._kick = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._restarting = threading.Lock()
        self._failing: str | None = None
        self._restarted = 0
        self._set_aside: collections.deque[tuple[float, str]] = collections.deque(
            maxlen=SET_ASIDE_KEPT
        )

    def start(self) -> None:
        # kept only once started: /health must never take a thread about to start for one
        # that died (and start a second one beside it)
        thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        thread.start()
        self._thread = thread

    def stop(self) -> None:
        self._stopping.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=self.stop_wait)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def kick(self) -> None:
        """Something happened that the loop should look at now."""
        self._kick.set()

    def tick(self, now: float) -> float | None:
        raise NotImplementedError

    def set_aside(self, what: str, why: str) -> None:
        """`what` (a row) cannot be used: the tick marks it and goes on; this says so in the
        log, once, and in /health for a while."""
        log.warning("%s set aside %s: %s", self.thread_name, what, why)
        self._set_aside.append((time.monotonic(), f"{what}: {why}"))

    def problems(self) -> list[str]:
        """For /health. A loop whose thread ended without a stop is started again here."""
        found: list[str] = []
        thread = self._thread
        if thread is not None and not thread.is_alive() and not self.stopping:
            with self._restarting:  # two /health requests at once restart it once
                if self._thread is thread:
                    self._restarted += 1
                    self.start()
        if not (self._restarted or self._failing or self._set_aside):
            return found  # the common case, asked by every /health
        if self._restarted:
            found.append(f"the {self.thread_name} loop stopped and was restarted")
        if self._failing is not None:
            found.append(f"the {self.thread_name} loop fails: {self._failing} (retrying)")
        since = time.monotonic() - SET_ASIDE_SHOWN
        found += [
            f"the {self.thread_name} loop set aside {text}"
            for at, text in self._set_aside
            if at >= since
        ]
        return found

    def _run(self) -> None:
        backoff = RETRY_FIRST
        while not self._stopping.is_set():
            self._kick.clear()  # a kick during the tick is seen: the wait returns at once
            try:
                delay = _bounded(self.tick(self.clock()))
            except BaseException as exc:  # the loop outlives any one bad round; it says so once
                self._failing = str(exc) or type(exc).__name__
                _once.failed(self.thread_name, "%s failed: %s", self.thread_name, exc, exc=exc)
                delay, backoff = backoff, min(backoff * 2, RETRY_LAST)
            else:
                if self._failing is not None:
                    self._failing = None
                    _once.recovered(self.thread_name, "%s works again", self.thread_name)
                backoff = RETRY_FIRST
            self._kick.wait(delay)


def _bounded(delay: float | None) -> float | None:
    """A wait the clock can take: a due time years away (or not a number) is looked at again
    within LONGEST_WAIT; threading's wait refuses timeouts past a platform limit."""
    if delay is None:
        return LONGEST_WAIT
    if math.isnan(delay):
        return RETRY_FIRST
    return min(max(delay, 0.0), LONGEST_WAIT)
