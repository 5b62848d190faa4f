"""job-orchestrator's user API, for people with no orchestrator in front: multipart
`/upload` with a user and a service, `/download` that tells a job's state by its status code
(the guide "Your First Job" works as written), `/download_partial` and `/terminate`."""

from __future__ import annotations

from bottle import Bottle, HTTPResponse, request

from jobd.config.options import Config
from jobd.config.units import parse_whole, shown
from jobd.errors import BadRequest, Conflict, Forbidden, NotFound
from jobd.formats.archive import path_problem
from jobd.http.auth import owner
from jobd.http.multipart import form_limits, form_retry, read_form
from jobd.http.responses import json_response, refuse_large_body, zip_response
from jobd.http.slots import WaitSlots
from jobd.jobs.service import JobService
from jobd.models import DEFAULT_SERVICE, SERVICE_PATTERN, Job, JobStatus, int_id

#: job-orchestrator's status words.
_STATE = {
    JobStatus.QUEUED: "Queued",
    JobStatus.RUNNING: "Running",
    JobStatus.SUCCESS: "Completed",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELLED: "Cancelled",
    JobStatus.SKIPPED: "Skipped",
}
_MAX_USER_ID = 2**63 - 1


def user_routes(app: Bottle, config: Config, service: JobService, slots: WaitSlots) -> None:
    def status_body(job: Job) -> dict[str, object]:
        return {
            "id": job.seq,
            "user_id": job.user_id,
            "service": job.service,
            "status": "Cleaned"
            if job.expired
            else "Invalid"
            if job.invalid
            else _STATE[job.status],
            "loc": str(service.layout.work_dir(job.id)),
            "dest_id": "",
        }

    @app.post("/upload")
    def upload() -> HTTPResponse:
        refuse_large_body(config.max_upload)
        form = read_form("/upload")
        user_id = _user_id(form.fields.get("user_id"), owner())
        name = form.fields.get("service", DEFAULT_SERVICE)
        if not SERVICE_PATTERN.fullmatch(name):
            raise BadRequest(
                "'service' must be letters, digits, '-' and '_', 1 to 64 of them,"
                f" not {shown(name)}"
            )
        parts = [(_file_path(part.raw_filename), part.file) for _, part in form.files]
        retry, limits = form_retry(form.fields), form_limits(form.fields)
        job = service.intake.files(parts, user_id, name, retry, limits)
        request.environ["jobd.job_id"] = job.id
        return json_response(status_body(job), 201)

    @app.get("/download/<number>")  # and HEAD: the same codes, no body
    def download(number: str) -> HTTPResponse:
        job = _job(service, number)
        if job.expired:
            return HTTPResponse(b"", 204)
        if not job.status.terminal:
            return json_response(status_body(job), 202)
        if job.status is JobStatus.SUCCESS:
            answer = zip_response(service.result(job), slots)
            name = f"job-{job.seq}-results.zip"
            answer.set_header("Content-Disposition", f'attachment; filename="{name}"')
            return answer
        code, error = (400, "invalid_job") if job.invalid else (410, "job_failed")
        how = "could not be started" if job.invalid else f"ended {job.status.value}"
        body = status_body(job)
        state = body.pop("status")
        return json_response(
            {
                "error": error,
                "message": f"job {job.seq} {how}: {job.message}",
                "status": code,
                "state": state,
                **body,
                "exit_code": job.exit_code,
                "logs": f"/api/logs/{job.seq}",
                "errors": f"/api/logs/{job.seq}?stream=stderr",
                "partial": f"/download_partial/{job.seq}",
            },
            code,
        )

    @app.get("/download_partial/<number>")
    def download_partial(number: str) -> HTTPResponse:
        job = service.get(_job(service, number).id)
        zipped = service.result(job) if job.status.terminal else service.snapshot(job)
        return zip_response(zipped, slots)

    @app.post("/terminate/<number>")
    def terminate(number: str) -> HTTPResponse:
        job = _job(service, number)
        if not job.status.terminal and not job.expired:
            try:
                job = service.cancel(job.id)
            except Conflict:  # it ended meanwhile: nothing left to end
                job = service.find(job.id)
        return json_response(status_body(job))


def _job(service: JobService, number: str) -> Job:
    """The job of a /download, /download_partial or /terminate path: by its integer ID only."""
    found = int_id(number)
    if found is None:
        raise NotFound(f"there is no job number {shown(number)}")
    job = service.find(found, owner=owner())
    request.environ["jobd.job_id"] = job.id
    return job


def _user_id(value: str | None, token_user: int | None) -> int:
    """The form's user_id; a user's token stands for it (and allows no other)."""
    if value is None and token_user is not None:
        return token_user
    if value is None:
        raise BadRequest("'user_id' is missing: send it as a form field, e.g. -F user_id=1")
    number = parse_whole(value, 0, _MAX_USER_ID)
    if number is None:
        raise BadRequest(
            f"'user_id' must be a whole number from 0 to {_MAX_USER_ID}, not {shown(value)}"
        )
    if token_user is not None and number != token_user:
        raise Forbidden(
            f"'user_id' is {value} but the token is user {token_user}'s: a user uploads only"
            " their own jobs (leave 'user_id' out, or send the operator's token)"
        )
    return number


def _file_path(filename: str | None) -> str:
    """Where an /upload file part goes: its file name, which may be a relative path."""
    name = filename or ""
    problem = path_problem(name) or ("names a folder" if name.endswith("/") else None)
    if problem:
        raise BadRequest(f"the file name {name!r} {problem}; paths must stay inside the job")
    return name
