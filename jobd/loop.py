"""A background thread that runs a tick, then sleeps until it is kicked or the tick's next
deadline, and stops on request."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from jobd.logs import Once

#: After a failed tick the loop tries again after this long, doubling up to the last.
RETRY_FIRST, RETRY_LAST = 0.5, 30.0
_once = Once(logging.getLogger("jobd"))


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

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

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

    def _run(self) -> None:
        backoff = RETRY_FIRST
        while not self._stopping.is_set():
            self._kick.clear()  # a kick during the tick is seen: the wait returns at once
            try:
                delay = self.tick(self.clock())
            except Exception as exc:  # the loop outlives any one bad round; it says so once
                _once.failed(self.thread_name, "%s failed: %s", self.thread_name, exc, exc=exc)
                delay, backoff = backoff, min(backoff * 2, RETRY_LAST)
            else:
                _once.recovered(self.thread_name, "%s works again", self.thread_name)
                backoff = RETRY_FIRST
            self._kick.wait(delay)
