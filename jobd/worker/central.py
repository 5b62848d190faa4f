"""The central jobd, as a worker speaks to it: Ocypod's dequeue and heartbeat, and the pull
routes for the zips. A call that cannot reach it (a restart, a cut network, a 5xx) is tried
again with backoff until it answers or the worker stops; an answer is never retried.

http.client, as the client's: the standard library, in the binary too. Each thread keeps its
own keep-alive connection, opened again after a failure."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobd.formats.archive import CHUNK
from jobd.logs import Once

log = logging.getLogger("jobd")
_once = Once(log)

#: Gaps between tries of a call that did not reach the central jobd, doubling.
RETRY_FIRST = 0.1
#: Seconds a call may wait to connect, and for each answer.
TIMEOUT = 60.0


class Refused(Exception):
    """The central jobd answered no (4xx): its message, and the status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Stopped(Exception):
    """The worker stops: a call that waits for the central jobd gives up."""


class Unanswered(Exception):
    """No usable answer (no connection, a 5xx): the call may be tried again."""


@dataclass(frozen=True)
class Pulled:
    """A carrier a worker dequeued: its lease and the job it names."""

    lease: int
    job_id: str


class Central:
    def __init__(self, url: str, token: str | None, stopping: threading.Event) -> None:
        self._url = url
        parts = urllib.parse.urlsplit(url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "", parts.port
        self._prefix = parts.path.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._stopping = stopping
        self._local = threading.local()
        self._waiting: set[http.client.HTTPConnection] = set()  # dequeues held by the central
        self._waiting_lock = threading.Lock()
        self.retry_last = 5.0  # the longest gap; the worker sets it below its heartbeat
        #: once the worker stops, results and hand-backs are still tried until then
        self.finish_by: float | None = None

    def pull_service(self, service: str) -> int:
        """The service's heartbeat timeout, in seconds; Refused unless it is a pull service."""
        found = self._json("GET", "/api/services")
        entries = [entry for entry in found if isinstance(entry, dict)]
        for entry in entries:
            if entry.get("name") == service and entry.get("runner") == "pull":
                return int(entry["heartbeat_timeout"])
        pulled = [str(e.get("name")) for e in entries if e.get("runner") == "pull"]
        raise Refused(
            400,
            f"the jobd at {self._url} has no pull service {service!r} (its pull services:"
            f" {', '.join(pulled) or 'none'}); declare it there with"
            f" --service {service}:runner=pull",
        )

    def dequeue(self, service: str, wait: float) -> Pulled | None:
        """The next carrier, waiting up to `wait` seconds for one."""
        status, data = self._call("GET", f"/queue/{service}/job?wait={wait:g}", held=True)
        if status == 204:
            return None
        body = json.loads(data)
        return Pulled(int(body["id"]), str(body["input"]["job"]))

    def claim(self, lease: int) -> dict:
        return dict(self._json("POST", f"/api/pull/{lease}"))

    def fetch_input(self, lease: int, path: Path) -> None:
        def save(answer: http.client.HTTPResponse) -> None:
            written, size = 0, int(answer.headers.get("Content-Length", "-1"))
            with open(path, "wb") as out:
                while block := answer.read(CHUNK):
                    written += out.write(block)
            if written != size:  # the central jobd stopped halfway: fetched again
                raise Unanswered(f"the input ended after {written} of {size} bytes")

        self._call("GET", f"/api/pull/{lease}/input", sink=save)

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
        return str(self._json("GET", f"/job/{lease}/status", retry=False))

    def send_result(self, lease: int, path: Path, query: dict[str, str]) -> None:
        target = f"/api/pull/{lease}/result?{urllib.parse.urlencode(query)}"
        self._call("PUT", target, upload=path, essential=True)

    def hand_back(self, lease: int) -> None:
        self._call("DELETE", f"/api/pull/{lease}", essential=True)

    # -- the calls --------------------------------------------------------------------------

    def _json(self, method: str, path: str, retry: bool = True) -> Any:
        return json.loads(self._call(method, path, retry=retry)[1])

    def _call(
        self,
        method: str,
        path: str,
        *,
        retry: bool = True,
        essential: bool = False,
        upload: Path | None = None,
        sink: Callable[[http.client.HTTPResponse], None] | None = None,
        held: bool = False,
    ) -> tuple[int, bytes]:
        """One call: its status and body (none if `sink` read it); Refused on a 4xx. Without
        an answer, tried again after a growing gap (with `retry`) until the worker stops, or,
        if `essential`, until `finish_by` once it stops. A `held` call (the central waits
        before it answers) is cut short by `interrupt`."""
        delay = RETRY_FIRST
        while True:
            if held and self._stopping.is_set():
                raise Stopped
            try:
                status, data = self._once(method, path, upload, sink, held)
                _once.recovered("central", "the central jobd answers again")
                return status, data
            except (OSError, http.client.HTTPException, Unanswered) as exc:
                if not retry:
                    raise Unanswered(str(exc)) from None
                _once.failed("central", "cannot reach the central jobd at %s: %s", self._url, exc)
            self._pause(delay, essential)
            delay = min(delay * 2, self.retry_last)

    def _once(
        self,
        method: str,
        path: str,
        upload: Path | None,
        sink: Callable[[http.client.HTTPResponse], None] | None,
        held: bool = False,
    ) -> tuple[int, bytes]:
        connection = self._connection()
        headers = dict(self._headers)
        if held:
            with self._waiting_lock:
                self._waiting.add(connection)
        try:
            if upload is None:
                connection.request(method, self._prefix + path, headers=headers)
            else:
                with open(upload, "rb") as body:
                    headers["Content-Type"] = "application/octet-stream"
                    headers["Content-Length"] = str(os.fstat(body.fileno()).st_size)
                    connection.request(method, self._prefix + path, body, headers)
            answer = connection.getresponse()
            if answer.status < 300 and sink is not None:
                sink(answer)
                data = b""
            else:
                data = answer.read()
        except BaseException:
            self._drop()  # half a request or answer: this connection is done
            raise
        finally:
            if held:
                with self._waiting_lock:
                    self._waiting.discard(connection)
        if answer.status >= 500:
            raise Unanswered(f"HTTP {answer.status}: {_message(data)}")
        if answer.status >= 400:
            raise Refused(answer.status, _message(data))
        return answer.status, data

    def interrupt(self) -> None:
        """The worker stops: the dequeues the central jobd holds end now (a job it hands
        out meanwhile goes to another worker once its heartbeat is missed)."""
        with self._waiting_lock:
            held = list(self._waiting)
        for connection in held:
            with contextlib.suppress(OSError, AttributeError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            connection = kind(self._host, self._port, timeout=TIMEOUT)
            self._local.connection = connection
        return connection

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
        self._local.connection = None

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


def _message(data: bytes) -> str:
    try:
        found = json.loads(data)
        text = found.get("message", data.decode(errors="replace"))
    except (ValueError, AttributeError):
        text = data.decode(errors="replace")
    return str(text)[:500]


def heartbeat_every(timeout: int) -> float:
    """A third of the heartbeat timeout, at most a second: a cancel reaches the run soon."""
    return min(timeout / 3, 1.0)
