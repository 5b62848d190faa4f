"""HTTP threads that a request may hold for long: long-polls, log follows, and large bodies
(a client that reads slowly, or not at all, holds its thread while the server waits to send).

At most `--threads` - RESERVED may be held at once, so the rest of the API (`/health` first)
always has threads left. A slot is taken and given back here only.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator

from jobd.errors import Unavailable

#: Threads kept for requests that answer at once.
RESERVED = 4
#: Bodies up to this size never hold a thread: the server buffers them whole (its
#: outbuf_high_watermark is this), so only larger ones take a slot.
SMALL_BODY = 1 << 18


class WaitSlots:
    def __init__(self, threads: int) -> None:
        self.limit = max(1, threads - RESERVED)
        self.held = 0
        self._lock = threading.Lock()

    def _take(self) -> bool:
        with self._lock:
            if self.held >= self.limit:
                return False
            self.held += 1
            return True

    def _give(self) -> None:
        with self._lock:
            self.held -= 1

    @contextlib.contextmanager
    def hold(self) -> Iterator[bool]:
        """A slot for the length of the block if one is free; yields whether it got one."""
        held = self._take()
        try:
            yield held
        finally:
            if held:
                self._give()

    def stream(self, body: Iterable[bytes]) -> Iterable[bytes]:
        """`body` as a response that holds a slot until the server closes it; 503 if none
        is free."""
        if not self._take():
            raise Unavailable(
                "too many clients are following logs, long-polling or downloading large"
                " results right now; try again in a moment"
            )
        return _Held(body, self._give)

    def sized(self, body: Iterable[bytes], size: int) -> Iterable[bytes]:
        """A body of `size` bytes: a large one holds a slot while it is sent."""
        return body if size <= SMALL_BODY else self.stream(body)


class _Held:
    """A response body that gives its slot back once: when it ends, fails, or is closed
    (WSGI closes every body it was given, also one never iterated)."""

    def __init__(self, body: Iterable[bytes], release: Callable[[], None]) -> None:
        self._body = body
        self._release = release
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._release()
