"""A small client for jobd's API, streaming both ways: what the `jobd submit/get/cancel/health`
subcommands use, so a container with only the binary can drive (or health-check) a daemon."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlsplit

from jobd.archive import Base64Writer, base64_chunks_of, base64_length
from jobd.errors import JobdError
from jobd.jsonstream import scan_object
from jobd.models import is_terminal


class ClientError(Exception):
    """The daemon could not be reached or refused a request; the message says which."""


class JobdClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 90.0) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"{url!r} is not an http(s) URL of a jobd")
        connection = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        host, port = parts.hostname, parts.port
        self._connect = lambda: connection(host, port, timeout=timeout)
        self._base = parts.path.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _request(
        self,
        method: str,
        path: str,
        body: Iterable[bytes] | None = None,
        length: int | None = None,
    ) -> http.client.HTTPResponse:
        headers = dict(self._headers)
        if length is not None:
            headers |= {"Content-Type": "application/json", "Content-Length": str(length)}
        connection = self._connect()
        try:
            connection.request(method, self._base + path, body, headers)
            return connection.getresponse()
        except OSError as exc:
            where = f"{connection.host}:{connection.port}"
            raise ClientError(f"cannot reach jobd at {where}: {exc}") from None

    @staticmethod
    def _fail(response: http.client.HTTPResponse) -> ClientError:
        text = response.read(65536).decode(errors="replace")
        with contextlib.suppress(ValueError, KeyError, TypeError):
            text = json.loads(text)["message"]
        return ClientError(f"jobd answered {response.status}: {text}")

    def _json(self, method: str, path: str, *ok: int) -> dict[str, object]:
        response = self._request(method, path)
        if response.status not in ok:
            raise self._fail(response)
        return json.loads(response.read())

    def health(self) -> dict[str, object]:
        return self._json("GET", "/health", 200)

    def cancel(self, job_id: str) -> dict[str, object]:
        return self._json("POST", f"/api/cancel/{quote(job_id, safe='')}", 200)

    def submit(
        self,
        source: Path,
        job_id: str | None = None,
        timeout: str | None = None,
        retry: int | None = None,
    ) -> dict[str, object]:
        """Upload a folder (zipped on the way, to a temporary file) or a zip file."""
        given = (("id", job_id), ("timeout", timeout), ("retry", retry))
        fields: dict[str, object] = {key: value for key, value in given if value is not None}
        return self._with_zip("/api/upload", fields, source)

    def create_schedule(self, fields: dict[str, object], source: Path) -> dict[str, object]:
        """A schedule whose runs start from `source` (a folder or a zip)."""
        return self._with_zip("/api/schedules", fields, source)

    def call(self, method: str, path: str, *ok: int) -> object:
        """Any other route's JSON answer (None for an empty one)."""
        response = self._request(method, path)
        if response.status not in ok:
            raise self._fail(response)
        text = response.read()
        return json.loads(text) if text else None

    def _with_zip(self, path: str, fields: dict[str, object], source: Path) -> dict[str, object]:
        """POST `fields` with the zip as base64 `input`, streamed: never whole in memory."""
        with tempfile.TemporaryDirectory() as scratch:
            archive = source if source.is_file() else _zip_folder(source, Path(scratch) / "j.zip")
            head = (json.dumps(fields)[:-1] + (", " if fields else "") + '"input": "').encode()
            size = archive.stat().st_size
            with open(archive, "rb") as data:
                body = itertools.chain([head], base64_chunks_of(data), [b'"}'])
                length = len(head) + base64_length(size) + 2
                response = self._request("POST", path, body, length)
        if response.status != 201:
            raise self._fail(response)
        return json.loads(response.read())

    def get(self, job_id: str, wait: float = 0.0, out: BinaryIO | None = None) -> dict[str, object]:
        """The job; once finished, its result zip is decoded into `out` as it arrives."""
        path = f"/api/get/{quote(job_id, safe='')}" + (f"?wait={wait:g}" if wait else "")
        response = self._request("GET", path)
        if response.status not in (200, 202, 206):
            raise self._fail(response)
        if response.status != 200 or out is None:
            job = json.loads(response.read())
        else:
            decoder = Base64Writer(out)
            try:
                job = scan_object(response, 2**62, "output", decoder.write, '{"ID": ...}')
                decoder.close()
            except JobdError as exc:
                raise ClientError(f"jobd's answer is not a job with a result: {exc}") from None
        job.pop("Output", None)
        return job

    def wait(
        self, job_id: str, out: BinaryIO | None = None, limit: float | None = None
    ) -> dict[str, object]:
        """Long-poll until the job is finished (or `limit` seconds pass)."""
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            left = 60.0 if deadline is None else min(60.0, deadline - time.monotonic())
            job = self.get(job_id, max(left, 0.0), out)
            if is_terminal(job.get("Status")) or left <= 0:
                return job


def _zip_folder(folder: Path, dest: Path) -> Path:
    if not (folder / "run.sh").is_file():
        raise ClientError(f"{folder} has no run.sh; a job folder needs one at its top")
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return dest
