"""HTTP routes: read the request, call the service, shape the answer. Errors become JSON here."""

from __future__ import annotations

import functools
import hmac
import itertools
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from typing import BinaryIO

from bottle import Bottle, FormsDict, HTTPError, HTTPResponse, request, response

from jobd.archive import base64_chunks_of, base64_length
from jobd.config import Config
from jobd.errors import BadRequest, JobdError, NotFound, Unauthorized
from jobd.metrics import CONTENT_TYPE_LATEST
from jobd.models import Job, JobStatus
from jobd.multipart import json_body
from jobd.openapi import docs_page, spec
from jobd.orchestrator import orchestrator_routes
from jobd.responses import (
    SEND_HEADERS,
    error_response,
    json_response,
    read_all,
    refuse_large_body,
    size_of,
)
from jobd.schedule_api import schedule_routes
from jobd.service import JobService
from jobd.slots import WaitSlots
from jobd.status_page import SignIn, status_routes
from jobd.userapi import user_routes

log = logging.getLogger("jobd")

MAX_WAIT = 60.0
#: The most jobs one page of GET /api/jobs lists.
MAX_LISTED = 1000
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    500: "internal_error",
}


def _errors_as_json(callback: Callable[..., object]) -> Callable[..., object]:
    @functools.wraps(callback)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            _check_path()
            return callback(*args, **kwargs)
        except JobdError as exc:
            extra = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else {}
            return error_response(exc.status, exc.code, exc.message, **extra)
        except HTTPResponse:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return error_response(
                500, "internal_error", "jobd hit an unexpected error; see its log"
            )

    return wrapper


def _client_gone() -> Callable[[], bool]:
    """Whether the client hung up (waitress reads ahead on the connection to tell)."""
    return request.environ.get("waitress.client_disconnected", lambda: False)


def _check_path() -> None:
    """A path that is not UTF-8 names nothing: Bottle drops the bad bytes (its PATH_INFO is
    already decoded that way) and could land on another job, so the raw path is checked."""
    raw = request.environ.get("bottle.raw_path", request.environ.get("PATH_INFO", ""))
    try:
        raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise NotFound("there is no such path: it is not valid UTF-8") from None


def _require_token(
    token: str | None, signin: SignIn
) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """The bearer header on every route; for reading routes, also the status page's cookie."""
    expected = f"bearer {token}".encode()  # the scheme is case-insensitive (RFC 7235)

    def plugin(callback: Callable[..., object]) -> Callable[..., object]:
        if token is None:
            return callback

        @functools.wraps(callback)
        def wrapper(*args: object, **kwargs: object) -> object:
            given = request.get_header("Authorization", "").encode()
            scheme, _, credentials = given.partition(b" ")
            given = scheme.lower() + b" " + credentials if credentials else given
            if not hmac.compare_digest(given, expected) and not signin.cookie_opens():
                form = signin.form_instead()
                if form is not None:
                    return form
                raise Unauthorized(
                    "this jobd needs a token: send the header 'Authorization: Bearer <token>'"
                    if not given
                    else "the bearer token is wrong"
                )
            return callback(*args, **kwargs)

        return wrapper

    return plugin


def parse_flag(query: FormsDict, name: str) -> bool:
    """`?name=true` and the like; anything but a clear yes or no is a 400."""
    value = query.get(name, "").lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise BadRequest(f"'{name}' must be true or false, not {query.get(name)!r}")


def parse_wait(value: str | None) -> float:
    """`?wait=` in seconds: fractions allowed, clamped to 60."""
    if value is None or value == "":
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if math.isnan(seconds) or seconds < 0:
        raise BadRequest(f"'wait' must be a number of seconds from 0 to 60, not {value!r}")
    return min(seconds, MAX_WAIT)


def _whole(text: str | None, name: str, low: int, high: int) -> int | None:
    """A whole-number query parameter within bounds (None if absent); a 400 otherwise."""
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise BadRequest(f"'{name}' must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


def _with_output(job: Job, zipped: BinaryIO, status: int, slots: WaitSlots) -> HTTPResponse:
    """The job object with Output streamed as base64 from a zip file, never held whole."""
    body = job.wire()
    del body["Output"]
    head = (json.dumps(body)[:-1] + ', "Output": "').encode()
    tail = b'"}'
    size = size_of(zipped)

    def stream() -> Iterator[bytes]:
        with zipped:
            yield head
            yield from base64_chunks_of(zipped)
            yield tail

    length = len(head) + base64_length(size) + len(tail)
    headers = {"Content-Type": "application/json", "Content-Length": str(length)}
    return HTTPResponse(slots.sized(stream(), length), status, headers)


def create_app(config: Config, service: JobService) -> Bottle:
    app = Bottle()
    slots = WaitSlots(config.threads)
    signin = SignIn(config.token)
    auth = _require_token(config.token, signin)
    app.install(_errors_as_json)
    app.install(auth)

    for status, code in _HTTP_CODES.items():
        app.error(status)(functools.partial(_bottle_error, code))

    @app.get("/health", skip=[auth])
    def health() -> HTTPResponse:
        threads = {"total": config.threads, "held": slots.held, "may_hold": slots.limit}
        return json_response(service.health() | {"threads": threads})

    described = spec(token_required=config.token is not None)

    @app.get("/openapi.json")
    def openapi() -> HTTPResponse:
        return json_response(described)

    @app.get("/docs")
    def docs() -> HTTPResponse:
        return HTTPResponse(docs_page(), 200, {"Content-Type": "text/html; charset=utf-8"})

    @app.get("/metrics")
    def metrics() -> HTTPResponse:
        return HTTPResponse(service.metrics.render(), 200, {"Content-Type": CONTENT_TYPE_LATEST})

    @app.get("/api/services")
    def services() -> HTTPResponse:
        return json_response(service.services())

    @app.get("/api/jobs")
    def jobs() -> HTTPResponse:
        """Newest first, without Output; the next page is `?before=<the last IntID>`."""
        query = request.query
        status = query.get("status") or None
        if status is not None and status.upper() not in {s.value for s in JobStatus}:
            raise BadRequest(
                f"'status' must be one of {', '.join(s.value for s in JobStatus)}, not {status!r}"
            )
        limit = _whole(query.get("limit"), "limit", 1, MAX_LISTED) or 50
        before = _whole(query.get("before"), "before", 0, 2**63 - 1)
        found = service.store.newest(status and JobStatus(status.upper()), limit, before)
        return json_response(
            [{k: v for k, v in job.wire().items() if k != "Output"} for job in found]
        )

    @app.post("/api/upload")
    def upload() -> HTTPResponse:
        refuse_large_body(config.max_upload)
        job = service.submit(json_body(request.environ["wsgi.input"]), config.max_upload)
        request.environ["jobd.job_id"] = job.id
        return json_response(job.wire(), 201)

    @app.get("/api/get/<job_id>")
    def get(job_id: str) -> HTTPResponse:
        request.environ["jobd.job_id"] = job_id
        partial = parse_flag(request.query, "partial")
        wait = parse_wait(request.query.get("wait"))
        with slots.hold() as held:  # without a free slot, answer now rather than starve others
            job = service.wait(job_id, wait if held else 0.0, _client_gone())
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
        stream = request.query.get("stream", "stdout")
        if stream not in ("stdout", "stderr"):
            raise BadRequest(f"'stream' must be stdout or stderr, not {stream!r}")
        job = service.get(job_id)
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
        return json_response(service.cancel(job_id).wire())

    orchestrator_routes(app, config, service, slots)
    user_routes(app, config, service, slots)
    schedule_routes(app, config, service)
    status_routes(app, signin, skip=[auth])
    return app


def _bottle_error(code: str, error: HTTPError) -> str:
    """Bottle's own errors (no such route, wrong method) in the same JSON shape."""
    response.content_type = "application/json"
    message = {
        "not_found": f"there is no route {request.method} {request.path}",
        "method_not_allowed": f"{request.path} does not accept {request.method}",
    }.get(code, str(error.body))
    return json.dumps({"error": code, "message": message, "status": error.status_code})
