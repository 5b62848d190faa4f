"""The central jobd, as a worker speaks to it: Ocypod's dequeue and heartbeat, and the pull
routes for the zips. A call that cannot reach it (a restart, a cut network, a 5xx) is tried
again with backoff until it answers or the worker stops; an answer is never retried."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests

from jobd.formats.archive import CHUNK
from jobd.logs import Once

log = logging.getLogger("jobd")
_once = Once(log)

#: Gaps between tries of a call that did not reach the central jobd, doubling.
RETRY_FIRST = 0.1
#: Seconds a call may take to connect and between bytes of its answer.
TIMEOUT = (5.0, 60.0)


class Refused(Exception):
    """The central jobd answered no (4xx): its message, and the status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Stopped(Exception):
    """The worker stops: a call that waits for the central jobd gives up."""


@dataclass(frozen=True)
class Pulled:
    """A carrier a worker dequeued: its lease and the job it names."""

    lease: int
    job_id: str


class Central:
    def __init__(self, url: str, token: str | None, stopping: threading.Event) -> None:
        self._url = url
        self._stopping = stopping
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self.retry_last = 5.0  # the longest gap; the worker sets it below its heartbeat
        #: once the worker stops, results and hand-backs are still tried until then
        self.finish_by: float | None = None

    def pull_service(self, service: str) -> int:
        """The service's heartbeat timeout, in seconds; Refused unless it is a pull service."""
        found = self._json("GET", "/api/services")
        for entry in found if isinstance(found, list) else ():
            if entry.get("name") == service and entry.get("runner") == "pull":
                return int(entry["heartbeat_timeout"])
        pulled = [e.get("name") for e in found if e.get("runner") == "pull"]
        raise Refused(
            400,
            f"the jobd at {self._url} has no pull service {service!r} (its pull services:"
            f" {', '.join(pulled) or 'none'}); declare it there with"
            f" --service {service}:runner=pull",
        )

    def dequeue(self, service: str) -> Pulled | None:
        answer = self._call("GET", f"/queue/{service}/job")
        if answer.status_code == 204:
            return None
        body = answer.json()
        return Pulled(int(body["id"]), str(body["input"]["job"]))

    def claim(self, lease: int) -> dict:
        return self._json("POST", f"/api/pull/{lease}")

    def fetch_input(self, lease: int, path: Path) -> None:
        def save(answer: requests.Response) -> None:
            with open(path, "wb") as out:
                for block in answer.iter_content(CHUNK):
                    out.write(block)

        self._call("GET", f"/api/pull/{lease}/input", stream=True, then=save)

    def beat(self, lease: int) -> str:
        """'running' while the run is this worker's; else the carrier's status (cancelled:
        a cancel; timed_out or gone: the run was given to another worker)."""
        try:
            self._call("PUT", f"/job/{lease}/heartbeat", retry=False)
            return "running"
        except Refused as exc:
            if exc.status == 404:
                return "gone"
            if exc.status != 409:
                raise
        status = self._json("GET", f"/job/{lease}/status", retry=False)
        return str(status)

    def send_result(self, lease: int, path: Path, query: dict[str, str]) -> None:
        def body() -> BinaryIO:
            return open(path, "rb")  # closed by _call once sent

        self._call("PUT", f"/api/pull/{lease}/result", params=query, data=body, essential=True)

    def hand_back(self, lease: int) -> None:
        self._call("DELETE", f"/api/pull/{lease}", essential=True)

    # -- the calls --------------------------------------------------------------------------

    def _json(self, method: str, path: str, retry: bool = True) -> Any:
        return self._call(method, path, retry=retry).json()

    def _call(
        self,
        method: str,
        path: str,
        *,
        retry: bool = True,
        essential: bool = False,
        stream: bool = False,
        params: dict[str, str] | None = None,
        data: Callable[[], BinaryIO] | None = None,
        then: Callable[[requests.Response], None] | None = None,
    ) -> requests.Response:
        """One call; without an answer, tried again after a growing gap (with `retry`) until
        the worker stops, or, if `essential`, until `finish_by` once it stops."""
        delay = RETRY_FIRST
        while True:
            body = data() if data else None
            try:
                with (
                    body or contextlib.nullcontext(),
                    self._session.request(
                        method,
                        self._url + path,
                        params=params,
                        data=body,
                        stream=stream,
                        timeout=TIMEOUT,
                    ) as answer,
                ):
                    if answer.status_code >= 500:
                        raise Unanswered(f"HTTP {answer.status_code}: {_message(answer)}")
                    if answer.status_code >= 400:
                        raise Refused(answer.status_code, _message(answer))
                    if then is not None:
                        then(answer)
                    else:
                        answer.content  # noqa: B018 - read before the connection goes back
                _once.recovered("central", "the central jobd answers again")
                return answer
            except (requests.RequestException, Unanswered) as exc:
                if not retry:
                    raise Unanswered(str(exc)) from None
                _once.failed(
                    "central",
                    "cannot reach the central jobd at %s: %s (retrying)",
                    self._url,
                    exc,
                )
            self._pause(delay, essential)
            delay = min(delay * 2, self.retry_last)

    def _pause(self, delay: float, essential: bool) -> None:
        """Wait before the next try; Stopped if the worker stops (and the call may go)."""
        if not essential:
            if self._stopping.wait(delay):
                raise Stopped
            return
        if self._stopping.is_set():
            left = (self.finish_by or 0.0) - time.monotonic()
            if left <= 0:
                raise Stopped
            delay = min(delay, left)
        time.sleep(delay)


class Unanswered(Exception):
    """No usable answer: the call may be tried again."""


def _message(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("message", answer.text))[:500]
    except ValueError:
        return answer.text[:500]


def heartbeat_every(timeout: int) -> float:
    """A third of the heartbeat timeout, at most a second: a cancel reaches the run soon."""
    return min(timeout / 3, 1.0)
