"""Ocypod's HTTP API: `/queue`, `/job`, `/tag` and `/info`, route for route and code for code
as Ocypod answers them (errors keep jobd's JSON shape)."""

from __future__ import annotations

import json
import math

from bottle import Bottle, HTTPResponse, request

from jobd import __version__
from jobd.config.options import Config
from jobd.errors import BadRequest, TooLarge
from jobd.http.jobd_api import parse_wait, query_value
from jobd.http.responses import json_response, refuse_large_body
from jobd.http.slots import WaitSlots
from jobd.jobs import queues as q
from jobd.jobs.service import JobService

#: A JSON body is read whole to be parsed: at most this much of --max-upload.
MOST_JSON = 64 * 1024 * 1024
_JSON = {"Content-Type": "application/json"}


def queue_routes(app: Bottle, config: Config, service: JobService, slots: WaitSlots) -> None:
    limit = min(config.max_upload, MOST_JSON)

    def body() -> object:
        return _json_body(limit)

    @app.get("/queue")
    def names() -> HTTPResponse:
        return json_response(service.queues.names())

    @app.put("/queue/<name>")
    def put(name: str) -> HTTPResponse:
        q.queue_name(name)  # a bad name before a bad body
        if service.queues.put(name, body()):
            return HTTPResponse(b"", 201, {"Location": f"/queue/{name}"})
        return HTTPResponse(b"", 204)

    @app.get("/queue/<name>")
    def settings(name: str) -> HTTPResponse:
        return json_response(q.settings_view(service.queues.settings(name)))

    @app.delete("/queue/<name>")
    def delete(name: str) -> HTTPResponse:
        service.queues.delete(name)
        return HTTPResponse(b"", 204)

    @app.get("/queue/<name>/size")
    def size(name: str) -> HTTPResponse:
        return json_response(service.queues.size(name))

    @app.get("/queue/<name>/job_ids")
    def job_ids(name: str) -> HTTPResponse:
        return json_response(service.queues.job_ids(name))

    @app.get("/queue/<name>/job")
    def dequeue(name: str) -> HTTPResponse:
        wait = parse_wait(request.query)  # jobd's: wait for a job instead of polling
        with slots.hold() as held:  # without a free slot, answer now rather than starve others
            job = service.queues.dequeue(name, wait if held else 0.0)
        if job is None:
            request.environ["jobd.quiet"] = True  # a worker's poll, every second or so
            return HTTPResponse(b"", 204)
        return HTTPResponse(f'{{"id": {job.id}, "input": {job.input}}}', 200, _JSON)

    @app.post("/queue/<name>/job")
    def add(name: str) -> HTTPResponse:
        q.queue_name(name)
        job_id = service.queues.add(name, body())
        return json_response(job_id, 201, Location=f"/job/{job_id}")

    @app.get("/job/<job_id>")
    def job(job_id: str) -> HTTPResponse:
        asked = query_value(request.query, "fields")
        fields = q.FIELDS if asked is None else q.fields(asked)
        return json_response(q.view(service.queues.job(job_id), fields))

    @app.get("/job/<job_id>/status")
    def status(job_id: str) -> HTTPResponse:
        return json_response(service.queues.job(job_id).status.value)

    @app.route("/job/<job_id>", method="PATCH")
    def patch(job_id: str) -> HTTPResponse:
        q.job_id(job_id)
        service.queues.patch(job_id, body())
        return HTTPResponse(b"", 204)

    @app.delete("/job/<job_id>")
    def delete_job(job_id: str) -> HTTPResponse:
        service.queues.delete_job(job_id)
        return HTTPResponse(b"", 204)

    @app.put("/job/<job_id>/heartbeat")
    def heartbeat(job_id: str) -> HTTPResponse:
        service.queues.heartbeat(job_id)
        request.environ["jobd.quiet"] = True  # a worker's, every second or so
        return HTTPResponse(b"", 204)

    @app.get("/job/<job_id>/output")
    def output(job_id: str) -> HTTPResponse:
        return HTTPResponse(service.queues.output(job_id), 200, _JSON)

    @app.put("/job/<job_id>/output")
    def set_output(job_id: str) -> HTTPResponse:
        q.job_id(job_id)
        service.queues.set_output(job_id, body())
        return HTTPResponse(b"", 204)

    @app.get("/tag/<tag:path>")
    def tagged(tag: str) -> HTTPResponse:
        return json_response(service.queues.tagged(tag))

    @app.get("/info")
    def info() -> HTTPResponse:
        return json_response(service.queues.info())

    @app.get("/info/version")
    def version() -> HTTPResponse:
        return json_response(__version__)


def _json_body(limit: int) -> object:
    """The request's JSON, whole; NaN, Infinity and numbers too long to read are 400s."""
    refuse_large_body(limit)
    raw = request.environ["wsgi.input"].read(limit + 1)
    if len(raw) > limit:
        raise TooLarge(f"a queue's JSON body is at most {limit} bytes")
    if not raw.strip():
        raise BadRequest('the body is empty: send JSON, e.g. {} or {"input": [1, 2, 3]}')
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not JSON: {str(exc)[:200]}") from None


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is too large")
    return number
