"""`/api/schedules`: recurring jobs over HTTP (create, list, read, change, delete, trigger,
enable, disable, and each schedule's runs)."""

from __future__ import annotations

import json

from bottle import Bottle, HTTPResponse, request

from jobd.config.options import Config
from jobd.errors import BadRequest
from jobd.http.auth import owner
from jobd.http.responses import json_response, refuse_large_body
from jobd.jobs.schedules import Rules, wire
from jobd.jobs.service import JobService

#: The largest body a change to a schedule may have (its input cannot change).
MAX_CHANGE = 256 * 1024
MAX_RUNS_LISTED = 1000


def schedule_routes(app: Bottle, config: Config, service: JobService) -> None:
    rules = Rules(config.max_schedules, config.min_schedule_interval)

    @app.post("/api/schedules")
    def create() -> HTTPResponse:
        refuse_large_body(config.max_upload)
        body = request.environ["wsgi.input"]
        schedule = service.schedules.create(body, owner=owner(), rules=rules)
        return json_response(wire(schedule), 201)

    @app.get("/api/schedules")
    def listed() -> HTTPResponse:
        return json_response([wire(schedule) for schedule in service.schedules.all(owner=owner())])

    @app.get("/api/schedules/<name>")
    def get(name: str) -> HTTPResponse:
        return json_response(wire(service.schedules.get(name, owner=owner())))

    @app.route("/api/schedules/<name>", method="PATCH")
    def change(name: str) -> HTTPResponse:
        changed = service.schedules.change(name, _small_json(), owner=owner(), rules=rules)
        return json_response(wire(changed))

    @app.delete("/api/schedules/<name>")
    def delete(name: str) -> HTTPResponse:
        service.schedules.delete(name, owner=owner())
        return HTTPResponse(b"", 204)

    @app.post("/api/schedules/<name>/trigger")
    def trigger(name: str) -> HTTPResponse:
        run = service.schedules.trigger(name, owner=owner())
        return json_response(wire(service.schedules.get(name)) | {"run": run.wire()})

    @app.post("/api/schedules/<name>/enable")
    def enable(name: str) -> HTTPResponse:
        return json_response(wire(service.schedules.enable(name, True, owner=owner())))

    @app.post("/api/schedules/<name>/disable")
    def disable(name: str) -> HTTPResponse:
        return json_response(wire(service.schedules.enable(name, False, owner=owner())))

    @app.get("/api/schedules/<name>/runs")
    def runs(name: str) -> HTTPResponse:
        text = request.query.get("limit", "50")
        # the length first: int() refuses more than 4,300 digits with a ValueError
        digits = text.isascii() and text.isdigit() and len(text) <= len(str(MAX_RUNS_LISTED))
        if not digits or not 1 <= int(text) <= MAX_RUNS_LISTED:
            raise BadRequest(f"'limit' must be a whole number from 1 to {MAX_RUNS_LISTED}")
        return json_response(
            [job.wire() for job in service.schedules.runs(name, int(text), owner=owner())]
        )


def _small_json() -> dict[str, object]:
    refuse_large_body(MAX_CHANGE)
    raw = request.environ["wsgi.input"].read(MAX_CHANGE + 1)
    if len(raw) > MAX_CHANGE:
        raise BadRequest(f"a change to a schedule is at most {MAX_CHANGE} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest('the body is not a JSON object, e.g. {"enabled": false}') from None
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object, e.g. {"schedule": "@every 5m"}')
    return body
