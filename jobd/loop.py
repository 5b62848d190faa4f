"""A background thread that runs a tick, then sleeps until it is kicked or the tick's next
deadline, and stops on request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


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
        while not self._stopping.is_set():
            self._kick.clear()  # a kick during the tick is seen: the wait returns at once
            delay = self.tick(self.clock())
            self._kick.wait(delay)
