"""A background thread that sleeps until it is kicked or its next deadline, and stops on request."""

from __future__ import annotations

import threading


class Loop:
    """Subclasses name the thread, say how long a stop may wait for it, and write `_run`,
    which checks `_stopping` and sleeps on `_kick`."""

    thread_name = "loop"
    stop_wait = 30.0

    def __init__(self) -> None:
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

    def kick(self) -> None:
        """Something happened that the loop should look at now."""
        self._kick.set()

    def _run(self) -> None:
        raise NotImplementedError
