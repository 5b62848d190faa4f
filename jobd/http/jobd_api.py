"""The jobd wire (the Go jobd's routes and ours beside them): upload, get (long-polled, with the
result streamed as base64), logs, cancel, the job list and services."""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from typing import BinaryIO

from bottle import Bottle, FormsDict, HTTPResponse, request

from jobd.config.options import Config
from jobd.config.units import parse_whole, shown
from jobd.errors import BadRequest
from jobd.formats.archive import base64_chunks_of, base64_length
from jobd.http.auth import owner
from jobd.http.multipart import json_body
from jobd.http.responses import SEND_HEADERS, json_response, read_all, refuse_large_body, size_of
from jobd.http.slots import SMALL_BODY, WaitSlots
from jobd.jobs.service import JobService
from jobd.models import Job, JobStatus

MAX_WAIT = 60.0
#: The most jobs one page of GET /api/jobs lists.
MAX_LISTED = 1000
_NUMBER = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
#: The largest IntID: the largest integer SQLite keeps.
MAX_BEFORE = 2**63 - 1


def _client_gone() -> Callable[[], bool]:
    """Whether the client hung up (waitress reads ahead on the connection to tell)."""
    return request.environ.get("waitress.client_disconnected", lambda: False)


def query_value(query: FormsDict, name: str) -> str | None:
    """A query parameter as sent, None when absent. Sent empty or twice, it is a 400: the
    description gives none of them an empty value, and of two, neither would be the one."""
    values = query.getall(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"'{name}' is given {len(values)} times; give it once")
    if values[0] == "":
        raise BadRequest(f"'{name}' is empty; give it a value or leave it out")
    return str(values[0])


def parse_flag(query: FormsDict, name: str) -> bool:
    """`?name=true` and the like; anything but a clear yes or no is a 400."""
    value = query_value(query, name)
    if value is None or value.lower() in ("0", "false", "no", "off"):
        return False
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    raise BadRequest(f"'{name}' must be true or false, not {shown(value)}")


def parse_wait(query: FormsDict) -> float:
    """`?wait=` in seconds: fractions allowed, clamped to 60."""
    value = query_value(query, "wait")
    if value is None:
        return 0.0
    try:  # a number as JSON writes one: float() also takes "inf", "1_0" and spaces
        seconds = float(value) if _NUMBER.fullmatch(value) else math.nan
    except ValueError:
        seconds = math.nan
    if math.isnan(seconds) or seconds < 0:
        raise BadRequest(f"'wait' must be a number of seconds from 0 to 60, not {shown(value)}")
    return min(seconds, MAX_WAIT)


def _whole(query: FormsDict, name: str, low: int, high: int) -> int | None:
    """A whole-number query parameter within bounds (None if absent); a 400 otherwise."""
    text = query_value(query, name)
    if text is None:
        return None
    number = parse_whole(text, low, high)
    if number is None:
        raise BadRequest(f"'{name}' must be a whole number from {low} to {high}, not {shown(text)}")
    return number


def _with_output(job: Job, zipped: BinaryIO, status: int, slots: WaitSlots) -> HTTPResponse:
    """The job object with Output streamed as base64 from a zip file, never held whole."""
    body = job.wire()
    del body["Output"]
    head = (json.dumps(body)[:-1] + ', "Output": "').encode()
    tail = b'"}'
    size = size_of(zipped)
    length = len(head) + base64_length(size) + len(tail)
    headers = {"Content-Type": "application/json", "Content-Length": str(length)}
    if length <= SMALL_BODY:  # in one piece: one write to the client, not one per chunk
        with zipped:
            return HTTPResponse(head + base64.b64encode(zipped.read()) + tail, status, headers)

    def stream() -> Iterator[bytes]:
        with zipped:
            yield head
            yield from base64_chunks_of(zipped)
            yield tail

    return HTTPResponse(slots.sized(stream(), length), status, headers)


def jobd_routes(app: Bottle, config: Config, service: JobService, slots: WaitSlots) -> None:
    @app.get("/api/services")
    def services() -> HTTPResponse:
        return json_response(service.services(owner=owner()))

    @app.get("/api/jobs")
    def jobs() -> HTTPResponse:
        """Newest first, without Output; the next page is `?before=<the last IntID>`."""
        query = request.query
        status = query_value(query, "status")
        if status is not None and status.upper() not in {s.value for s in JobStatus}:
            raise BadRequest(
                f"'status' must be one of {', '.join(s.value for s in JobStatus)},"
                f" not {shown(status)}"
            )
        limit = _whole(query, "limit", 1, MAX_LISTED) or 50
        before = _whole(query, "before", 0, MAX_BEFORE)
        found = service.newest(
            JobStatus(status.upper()) if status else None, limit, before, owner=owner()
        )
        return json_response(
            [{k: v for k, v in job.wire().items() if k != "Output"} for job in found]
        )

    @app.post("/api/upload")
    def upload() -> HTTPResponse:
        refuse_large_body(config.max_upload)
        body = json_body(request.environ["wsgi.input"])
        job = service.submit(body, config.max_upload, owner=owner())
        request.environ["jobd.job_id"] = job.id
        return json_response(job.wire(), 201)

    @app.get("/api/get/<job_id>")
    def get(job_id: str) -> HTTPResponse:
        request.environ["jobd.job_id"] = job_id
        partial = parse_flag(request.query, "partial")
        wait = parse_wait(request.query)
        with slots.hold() as held:  # without a free slot, answer now rather than starve others
            job = service.wait(job_id, wait if held else 0.0, _client_gone(), owner=owner())
        if job.status is JobStatus.SKIPPED:  # a schedule's run that never started: no result
            return json_response(job.wire(), 200)
        if job.status.terminal:
            return _with_output(job, service.result(job), 200, slots)
        if partial:
            return _with_output(job, service.snapshot(job), config.pending_status, slots)
        return json_response(job.wire(), config.pending_status)

    @app.get("/api/logs/<job_id>")
    def logs(job_id: str) -> HTTPResponse:
        request.environ["jobd.job_id"] = job_id
        stream = query_value(request.query, "stream") or "stdout"
        if stream not in ("stdout", "stderr"):
            raise BadRequest(f"'stream' must be stdout or stderr, not {shown(stream)}")
        job = service.get(job_id, owner=owner())
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if parse_flag(request.query, "follow"):
            followed = itertools.chain([SEND_HEADERS], service.follow(job, stream, _client_gone()))
            return HTTPResponse(slots.stream(followed), 200, headers)
        try:
            log_file = open(service.log_path(job, stream), "rb")  # noqa: SIM115 - closed by the stream
        except FileNotFoundError:
            return HTTPResponse(b"", 200, headers)  # not started yet
        size = os.fstat(log_file.fileno()).st_size
        body = slots.sized(read_all(log_file, size), size)
        return HTTPResponse(body, 200, headers | {"Content-Length": str(size)})

    @app.post("/api/cancel/<job_id>")
    def cancel(job_id: str) -> HTTPResponse:
        request.environ["jobd.job_id"] = job_id
        return json_response(service.cancel(job_id, owner=owner()).wire())

    @app.post("/api/retry/<job_id>")
    def retry(job_id: str) -> HTTPResponse:
        request.environ["jobd.job_id"] = job_id
        return json_response(service.retry(job_id, owner=owner()).wire(), 201)
