"""The Bottle app: the token check (who is asking: jobd/http/auth.py), the routes of each
protocol mounted, /health, /metrics and the API description; every error becomes the one JSON
shape here, once."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable

from bottle import Bottle, HTTPError, HTTPResponse, request, response

from jobd.config.options import Config
from jobd.errors import JobdError, NotFound, Unauthorized, is_full
from jobd.http.auth import Credentials, operator_only, set_caller
from jobd.http.jobd_api import jobd_routes
from jobd.http.openapi import docs_page, spec
from jobd.http.orchestrator import orchestrator_routes
from jobd.http.page_job import job_routes
from jobd.http.page_jobs import list_routes
from jobd.http.page_sections import section_routes
from jobd.http.page_signin import SignIn, signin_routes
from jobd.http.pull import pull_routes
from jobd.http.queues import queue_routes
from jobd.http.responses import error_response, json_response
from jobd.http.schedules import schedule_routes
from jobd.http.slots import WaitSlots
from jobd.http.user_api import user_routes
from jobd.jobs.service import JobService
from jobd.metrics import CONTENT_TYPE_LATEST

log = logging.getLogger("jobd")

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
        except Exception as exc:
            if is_full(exc):  # a store write on a full disk: nothing was kept, say so
                return error_response(
                    507, "insufficient_storage", f"the data dir's disk is full: {exc}"
                )
            log.exception("%s %s failed", request.method, request.path)
            return error_response(
                500, "internal_error", "jobd hit an unexpected error; see its log"
            )

    return wrapper


def _check_path() -> None:
    """A path that is not UTF-8 names nothing: Bottle drops the bad bytes (its PATH_INFO is
    already decoded that way) and could land on another job, so the raw path is checked."""
    raw = request.environ.get("bottle.raw_path", request.environ.get("PATH_INFO", ""))
    try:
        raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise NotFound("there is no such path: it is not valid UTF-8") from None


def _require_token(
    credentials: Credentials, signin: SignIn
) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """The bearer header on every route; for reading routes, also the status page's cookie.
    The caller it names (the operator or a user) is kept for the route."""

    def plugin(callback: Callable[..., object]) -> Callable[..., object]:
        if not credentials.required:
            return callback

        @functools.wraps(callback)
        def wrapper(*args: object, **kwargs: object) -> object:
            given = request.get_header("Authorization", "")
            caller = credentials.from_header(given)
            if caller is None:
                caller = signin.cookie_caller()
            if caller is None:
                form = signin.form_instead()
                if form is not None:
                    return form
                raise Unauthorized(
                    "this jobd needs a token: send the header 'Authorization: Bearer <token>'"
                    if not given
                    else "the bearer token is wrong"
                )
            set_caller(caller)
            return callback(*args, **kwargs)

        return wrapper

    return plugin


def create_app(config: Config, service: JobService) -> Bottle:
    app = Bottle()
    slots = WaitSlots(config.threads)
    credentials = Credentials(config.token, config.user_tokens)
    signin = SignIn(credentials)
    auth = _require_token(credentials, signin)
    app.install(_errors_as_json)
    app.install(auth)

    for status, code in _HTTP_CODES.items():
        app.error(status)(functools.partial(_bottle_error, code))

    @app.get("/health", skip=[auth])
    def health() -> HTTPResponse:
        threads = {"total": config.threads, "held": slots.held, "may_hold": slots.limit}
        return json_response(service.health() | {"threads": threads})

    @app.get("/openapi.json")
    def openapi() -> HTTPResponse:
        return json_response(spec(token_required=credentials.required))

    @app.get("/docs")
    def docs() -> HTTPResponse:
        return HTTPResponse(docs_page(), 200, {"Content-Type": "text/html; charset=utf-8"})

    @app.get("/metrics")
    def metrics() -> HTTPResponse:
        operator_only("/metrics")  # its counts are every user's
        return HTTPResponse(service.metrics.render(), 200, {"Content-Type": CONTENT_TYPE_LATEST})

    jobd_routes(app, config, service, slots)
    orchestrator_routes(app, config, service, slots)
    user_routes(app, config, service, slots)
    schedule_routes(app, config, service)
    queue_routes(app, config, service, slots)
    pull_routes(app, config, service, slots)
    signin_routes(app, signin, skip=[auth])
    list_routes(app, service)
    job_routes(app, service, signin, skip=[auth])
    section_routes(app, service)
    return app


def _bottle_error(code: str, error: HTTPError) -> str:
    """Bottle's own errors (no such route, wrong method) in the same JSON shape."""
    response.content_type = "application/json"
    message = {
        "not_found": f"there is no route {request.method} {request.path}",
        "method_not_allowed": f"{request.path} does not accept {request.method}",
    }.get(code, str(error.body))
    return json.dumps({"error": code, "message": message, "status": error.status_code})
