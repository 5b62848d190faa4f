"""The routes `jobd worker` uses beside Ocypod's queue routes: claim the job a dequeued carrier
names, fetch its input, send its result, hand it back. Each takes the carrier's id, the run's
lease; a replaced lease is a 409."""

from __future__ import annotations

from bottle import Bottle, HTTPResponse, request

from jobd.config.options import Config
from jobd.config.units import shown
from jobd.errors import BadRequest
from jobd.http.auth import operator_only
from jobd.http.jobd_api import query_value
from jobd.http.responses import json_response, refuse_large_body, zip_response
from jobd.http.slots import WaitSlots
from jobd.jobs.pulled import pull_number, run_spec
from jobd.jobs.service import JobService
from jobd.run.outcome import Ending, Stop

_STOPS = {"cancel": Stop.CANCEL, "timeout": Stop.TIMEOUT}


def pull_routes(app: Bottle, config: Config, service: JobService, slots: WaitSlots) -> None:
    # a result may be larger than an upload: waitress takes up to twice --max-upload
    most_result = 2 * config.max_upload

    @app.post("/api/pull/<lease>")
    def claim(lease: str) -> HTTPResponse:
        operator_only("pulling jobs")
        job = service.pulls.claim(pull_number(lease))
        request.environ["jobd.job_id"] = job.id
        return json_response(run_spec(job))

    @app.get("/api/pull/<lease>/input")
    def input_zip(lease: str) -> HTTPResponse:
        operator_only("pulling jobs")
        return zip_response(open(service.pulls.input(pull_number(lease)), "rb"), slots)

    @app.put("/api/pull/<lease>/result")
    def result(lease: str) -> HTTPResponse:
        operator_only("pulling jobs")
        number = pull_number(lease)
        refuse_large_body(most_result)
        given = {n: query_value(request.query, n) for n in ("code", "stop", "oom", "pgid")}
        error = query_value(request.query, "error")  # kept as the job's Message
        if error is not None:
            error = error[:2000]
        code = _whole(given["code"], "code", -255, 255)
        if code is None:
            raise BadRequest("'code' is missing: run.sh's return code (negative: its signal)")
        end = Ending(code, _stop(given["stop"]), _whole(given["oom"], "oom", 1, 2**62))
        pgid = _whole(given["pgid"], "pgid", 1, 2**31)
        job = service.pulls.receive(number, request.environ["wsgi.input"], end, pgid, error)
        request.environ["jobd.job_id"] = job.id
        return json_response(job.wire())

    @app.delete("/api/pull/<lease>")
    def hand_back(lease: str) -> HTTPResponse:
        operator_only("pulling jobs")
        return json_response(service.pulls.hand_back(pull_number(lease)).wire())


def _stop(text: str | None) -> Stop | None:
    if text is None:
        return None
    if text not in _STOPS:
        raise BadRequest(f"'stop' must be one of {', '.join(_STOPS)}, not {shown(text)}")
    return _STOPS[text]


def _whole(text: str | None, name: str, low: int, high: int) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high or not text.lstrip("-").isdigit():
        raise BadRequest(f"'{name}' must be a whole number from {low} to {high}, not {shown(text)}")
    return value
