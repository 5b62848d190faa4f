"""A Python client for jobd's API, streaming both ways; the `jobd submit/status/logs/...`
commands use it, so a container with only the binary can drive (or health-check) a daemon.

    from jobd.client import JobdClient
    client = JobdClient("http://127.0.0.1:8080")
    job = client.submit("myjob/", timeout="10m")
    job = client.wait(job["ID"])
    client.download(job["ID"], "myjob-results")
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import itertools
import json
import os
import socket
import ssl
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from jobd.errors import JobdError, is_full
from jobd.formats.archive import (
    Base64Writer,
    Limits,
    base64_chunks_of,
    base64_length,
    extract,
    zip_directory,
)
from jobd.formats.jsonstream import scan_object
from jobd.models import is_terminal

#: A job object as the API sends it (`ID`, `Status`, `ExitCode`, ...), without `Output`.
Job = dict[str, Any]
JobList = list[Job]  # named out here: `JobdClient.list` hides the builtin inside the class
Progress = Callable[[int, int], None]
#: One long-poll's length: the daemon answers sooner when the job finishes.
_POLL = 60.0
_LONGEST_LINE = 1 << 20
#: `_request`'s timeout when none is given: the client's own.
_DEFAULT_TIMEOUT = -1.0
#: An https:// URL whose TLS handshake takes longer is taken for a plain-HTTP daemon (which
#: waits for a request's end that a ClientHello never brings) rather than waited on for 90 s.
_HANDSHAKE = 5.0
#: What an upload's zip left out, each (its name in the zip, why).
LeftOutList = list[tuple[str, str]]
#: A result is unpacked with the daemon's path rules but without its size limits.
_RESULT_LIMITS = Limits(max_unpacked=2**62, max_files=10**7)


class ClientError(Exception):
    """The daemon could not be reached or refused a request. `status` is its HTTP status
    (None when it was not reached), and the message is the daemon's own."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class NotFinished(ClientError):
    """The job was still pending when the wait ended; `job` is how it stood then."""

    def __init__(self, job: Job, waited: float | None) -> None:
        after = f" after {waited:g} s" if waited else ""
        super().__init__(f"job {job.get('ID')!r} is still {job.get('Status')}{after}")
        self.job = job


class JobdClient:
    """One daemon at `url`, with its bearer `token` if it has one; `timeout` bounds each
    socket operation (follows and long-polls allow for their own length)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 90.0) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"{url!r} is not an http(s) URL of a jobd")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._timeout = timeout
        self._base = parts.path.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    # ------------------------------------------------------------------ jobs

    def submit(
        self,
        path_or_zip: str | os.PathLike[str],
        id: str | None = None,
        slurm: bool = False,
        timeout: float | str | None = None,
        env: Mapping[str, str] | None = None,
        callback_url: str | None = None,
        retry: int | None = None,
        progress: Progress | None = None,
        left_out: Callable[[LeftOutList], None] | None = None,
    ) -> Job:
        """Upload a job folder (zipped on the way, to a temporary file: empty folders and
        modes kept) or a zip. `timeout` is seconds or a duration such as "30m"; `retry` the
        attempts in all; `progress(sent, total)` is called as the body goes out; `left_out`
        is told what the zip leaves out (links to folders, unreadable files), before the
        upload. A link that points outside the folder is refused: nothing is sent."""
        given: dict[str, object] = {
            "id": id,
            "slurml": slurm or None,
            "timeout": timeout,
            "env": dict(env) if env else None,
            "callback_url": callback_url,
            "retry": retry,
        }
        fields = {key: value for key, value in given.items() if value is not None}
        return self._with_zip("/api/upload", fields, Path(path_or_zip), progress, left_out)

    def get(self, id: str, wait: float = 0.0) -> Job:
        """The job now, or once it finishes if that is within `wait` seconds (up to 60)."""
        return self._get(id, wait, None)

    def wait(self, id: str, timeout: float | None = None) -> Job:
        """The finished job; NotFinished if `timeout` seconds pass first (None: no limit)."""
        return self._wait(id, timeout, None)

    def download(
        self,
        id: str,
        dest_dir: str | os.PathLike[str],
        timeout: float | None = 0.0,
    ) -> Job:
        """Unpack a finished job's result into `dest_dir` (made; it must not hold anything
        yet), streamed through a file beside it, and return the job; waits up to `timeout`
        seconds for it to finish (None: no limit), else NotFinished. Entries that would land
        outside the folder, links and devices are refused before anything is written."""
        dest = Path(dest_dir)
        refuse_taken(dest)
        with _storing(id, dest.parent):
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".jobd-result-") as scratch:
                zipped = Path(scratch) / "result.zip"
                with open(zipped, "wb") as out:
                    job = self._wait(id, timeout, out)
                _unpack(zipped, Path(scratch) / "files", dest, id)
        return job

    def save_result(
        self,
        id: str,
        out: str | os.PathLike[str],
        timeout: float | None = None,
    ) -> Job:
        """Wait up to `timeout` seconds, then write the result zip to `out` as it arrives;
        NotFinished (and no file) if the job is still pending."""
        target = Path(out)
        partial = target.with_name(f".{target.name}.part")
        try:
            with _storing(id, target.parent), open(partial, "wb") as result:
                job = self._wait(id, timeout, result)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return job

    def cancel(self, id: str) -> Job:
        """Cancel a queued or running job (409 if it already finished)."""
        return self._json("POST", f"/api/cancel/{quote(id, safe='')}", 200)

    def retry(self, id: str) -> Job:
        """A new job from a finished one's input and settings (409 while it is pending, 410
        once its input is gone)."""
        return self._json("POST", f"/api/retry/{quote(id, safe='')}", 201)

    def logs(
        self,
        id: str,
        follow: bool = False,
        stderr: bool = False,
    ) -> Iterator[str]:
        """run.sh's output lines (without their newline): what it wrote so far, or with
        `follow`, each line as it is written until the job ends. An unknown job fails here,
        not at the first line; a line over 1 MiB comes in 1 MiB pieces (memory stays bounded)."""
        query = urlencode(
            {"stream": "stderr" if stderr else "stdout"} | ({"follow": 1} if follow else {})
        )
        response = self._request(
            "GET",
            f"/api/logs/{quote(id, safe='')}?{query}",
            timeout=None if follow else self._timeout,
        )
        if response.status != 200:
            raise self._fail(response)
        return _lines(response)

    def list(
        self,
        status: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> JobList:
        """Jobs newest first, without their result; the next page is `before=` the last
        one's `IntID`."""
        given = {"status": status, "limit": limit, "before": before}
        query = urlencode({key: value for key, value in given.items() if value is not None})
        answer = self.call("GET", f"/api/jobs?{query}", 200)
        assert isinstance(answer, list)
        return answer

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/health", 200)

    # ------------------------------------------------------------------ schedules, any route

    def create_schedule(self, fields: dict[str, object], source: Path) -> dict[str, Any]:
        """A schedule whose runs start from `source` (a folder or a zip)."""
        return self._with_zip("/api/schedules", fields, source, None, None)

    def call(self, method: str, path: str, *ok: int) -> Any:
        """Any other route's JSON answer (None for an empty one)."""
        response = self._request(method, path)
        if response.status not in ok:
            raise self._fail(response)
        text = response.read()
        return json.loads(text) if text else None

    # ------------------------------------------------------------------ the wire

    def _request(
        self,
        method: str,
        path: str,
        body: Iterator[bytes] | None = None,
        length: int | None = None,
        timeout: float | None = _DEFAULT_TIMEOUT,
    ) -> http.client.HTTPResponse:
        headers = dict(self._headers)
        if length is not None:
            headers |= {"Content-Type": "application/json", "Content-Length": str(length)}
        limit = self._timeout if timeout == _DEFAULT_TIMEOUT else timeout
        connection = self._connect(limit)
        try:
            connection.request(method, self._base + path, body, headers)
            return connection.getresponse()
        except OSError as exc:
            raise self._unreachable(exc) from None

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        if not self._https:
            return http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        context = ssl.create_default_context()
        connection = http.client.HTTPSConnection(
            self._host, self._port, timeout=timeout, context=context
        )
        try:
            tcp = socket.create_connection((self._host, self._port or 443), timeout)
        except OSError as exc:
            raise self._unreachable(exc) from None
        try:
            tcp.settimeout(_HANDSHAKE if timeout is None else min(timeout, _HANDSHAKE))
            connection.sock = context.wrap_socket(tcp, server_hostname=self._host)
        except ssl.SSLCertVerificationError as exc:
            tcp.close()
            raise ClientError(
                f"cannot reach jobd at {self.url}: its certificate is refused"
                f" ({exc.verify_message})"
            ) from None
        except (ssl.SSLError, TimeoutError, ConnectionResetError) as exc:
            tcp.close()
            plain = urlunsplit(("http", *urlsplit(self.url)[1:]))
            raise ClientError(
                f"jobd at {self.url} does not answer in TLS ({type(exc).__name__}): a jobd"
                f" serves plain HTTP unless a proxy adds TLS; try --url {plain}"
            ) from None
        except OSError as exc:
            tcp.close()
            raise self._unreachable(exc) from None
        connection.sock.settimeout(timeout)
        return connection

    def _unreachable(self, exc: OSError) -> ClientError:
        reason = exc.strerror or str(exc) or type(exc).__name__
        reason = reason[:1].lower() + reason[1:]
        hint = " — is `jobd serve` running?" if isinstance(exc, ConnectionRefusedError) else ""
        return ClientError(f"cannot reach jobd at {self.url}: {reason}{hint}")

    @staticmethod
    def _fail(response: http.client.HTTPResponse) -> ClientError:
        text = response.read(65536).decode(errors="replace").strip()
        with contextlib.suppress(ValueError, KeyError, TypeError):
            text = json.loads(text)["message"]
        return ClientError(
            text or f"jobd answered {response.status} {response.reason}", response.status
        )

    def _json(self, method: str, path: str, *ok: int) -> dict[str, Any]:
        answer = self.call(method, path, *ok)
        assert isinstance(answer, dict)
        return answer

    def _with_zip(
        self,
        path: str,
        fields: dict[str, object],
        source: Path,
        progress: Progress | None,
        left_out: Callable[[LeftOutList], None] | None,
    ) -> dict[str, Any]:
        """POST `fields` with the zip as base64 `input`, streamed: never whole in memory."""
        _check_source(source)
        with tempfile.TemporaryDirectory(prefix="jobd-submit-") as scratch:
            archive = source
            if source.is_dir():
                archive = Path(scratch) / "job.zip"
                _zip_folder(source, archive, left_out)
            head = (json.dumps(fields)[:-1] + (", " if fields else "") + '"input": "').encode()
            length = len(head) + base64_length(archive.stat().st_size) + 2
            with open(archive, "rb") as data:
                body: Iterator[bytes] = itertools.chain([head], base64_chunks_of(data), [b'"}'])
                if progress is not None:
                    body = _reporting(body, length, progress)
                response = self._request("POST", path, body, length)
        if response.status != 201:
            raise self._fail(response)
        return json.loads(response.read())

    def _get(self, job_id: str, wait: float, out: BinaryIO | None) -> Job:
        """The job; once finished, its result zip is decoded into `out` as it arrives."""
        path = f"/api/get/{quote(job_id, safe='')}" + (f"?wait={wait:g}" if wait > 0 else "")
        response = self._request("GET", path, timeout=self._timeout + wait)
        if response.status not in (200, 202, 206):
            raise self._fail(response)
        if response.status != 200:
            job = json.loads(response.read())
        else:  # the result is decoded to `out` as it arrives, or passed over: never held
            decoder = Base64Writer(out) if out is not None else None
            sink = decoder.write if decoder is not None else _discard
            try:
                job = scan_object(response, 2**62, "output", sink, '{"ID": ...}')
                if decoder is not None:
                    decoder.close()
            except JobdError as exc:
                raise ClientError(f"jobd's answer is not a job with a result: {exc}") from None
        job.pop("Output", None)
        return job

    def _wait(self, job_id: str, limit: float | None, out: BinaryIO | None) -> Job:
        """Long-poll until the job is finished; NotFinished once `limit` seconds pass."""
        deadline = None if limit is None else time.monotonic() + limit
        while True:  # only a finished job's answer carries a result for `out`
            left = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
            job = self._get(job_id, max(left, 0.0), out)
            if is_terminal(job.get("Status")):
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise NotFinished(job, limit)


def _check_source(source: Path) -> None:
    """What a person gave as a job, checked before anything is sent."""
    if not source.exists():
        raise ClientError(f"{source} does not exist; give a job folder (holding run.sh) or a zip")
    if source.is_dir():
        if not (source / "run.sh").is_file():
            raise ClientError(f"{source} has no run.sh at its top; a job folder needs one")
    elif source.name == "run.sh":
        folder = source.parent if str(source.parent) else Path(".")
        raise ClientError(f"{source} is the script itself; give its folder ({folder}/) instead")
    elif not zipfile.is_zipfile(source):
        raise ClientError(f"{source} is not a zip; give a job folder (holding run.sh) or a zip")


def _zip_folder(source: Path, archive: Path, told: Callable[[LeftOutList], None] | None) -> None:
    """Zip a job folder; a link out of it is refused (it would carry files the folder does
    not hold), and what else is left out is told, before anything is sent."""
    left: LeftOutList = []

    def leave(name: str, why: str) -> None:
        if "outside the folder" in why:
            raise ClientError(
                f"{source / name} is {why}: the job would not find it on the daemon; copy the"
                " file in, or remove the link"
            )
        left.append((name, why))

    try:
        zip_directory(source, archive, leave)
    except OSError as exc:
        raise ClientError(f"cannot zip {source}: {exc.strerror}: {exc.filename}") from None
    if left and told is not None:
        told(left)


def _unpack(zipped: Path, scratch: Path, dest: Path, job_id: str) -> None:
    """Unpack into `scratch` (checked entry by entry), then move it to `dest` in one rename."""
    try:
        extract(zipped, scratch, _RESULT_LIMITS, "the result", job=False)
    except JobdError as exc:
        raise ClientError(f"the result of job {job_id!r} is refused: {exc.message}") from None
    scratch.mkdir(exist_ok=True)  # an empty result is an empty folder
    if dest.exists():
        dest.rmdir()
    scratch.rename(dest)


def refuse_taken(folder: Path) -> None:
    """A result is unpacked only into a new or empty folder: never mixed with other files."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ClientError(f"{folder} already exists and is not an empty folder; choose another")


@contextlib.contextmanager
def _storing(job_id: str, where: Path) -> Iterator[None]:
    """A full or read-only disk while a result is written: one sentence, not an errno."""
    try:
        yield
    except OSError as exc:
        if not (is_full(exc) or exc.errno in (errno.EROFS, errno.EACCES)):
            raise
        raise ClientError(
            f"cannot store the result of job {job_id!r} in {where}: {exc.strerror}"
        ) from None


def _lines(response: http.client.HTTPResponse) -> Iterator[str]:
    with contextlib.closing(response):
        while line := response.readline(_LONGEST_LINE):
            yield line.rstrip(b"\n").decode(errors="replace")


def _discard(_: bytes) -> None:
    pass


def _reporting(body: Iterator[bytes], total: int, progress: Progress) -> Iterator[bytes]:
    sent = 0
    for block in body:
        yield block
        sent += len(block)
        progress(sent, total)
