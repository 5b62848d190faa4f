"""HTTP threads that a request may hold while it waits: long-polls and log follows.

Each holds one of waitress's threads for as long as it waits, so at most `--threads` - 4 may
wait at once and the rest of the API always has threads left. A slot is taken and given
back here only.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator

from jobd.errors import Unavailable


class WaitSlots:
    def __init__(self, threads: int) -> None:
        self._free = threading.BoundedSemaphore(max(1, threads - 4))

    @contextlib.contextmanager
    def hold(self) -> Iterator[bool]:
        """A slot for the length of the block if one is free; yields whether it got one."""
        held = self._free.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                self._free.release()

    def stream(self, body: Iterable[bytes]) -> Iterable[bytes]:
        """`body` as a response that holds a slot until the server closes it; 503 if none
        is free."""
        if not self._free.acquire(blocking=False):
            raise Unavailable("too many clients follow logs or long-poll now; try again")
        return _Held(body, self._free.release)


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
