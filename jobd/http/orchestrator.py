"""job-orchestrator's client protocol on the same jobs and workers: its routes, its payload,
and its small integer job IDs (`IntID` in the job object)."""

from __future__ import annotations

import os

from bottle import Bottle, HTTPResponse, request

from jobd import __version__
from jobd.config.options import Config
from jobd.config.units import shown
from jobd.errors import BadRequest, Conflict, Internal, JobdError, NotFound
from jobd.formats.archive import path_problem
from jobd.http.auth import owner
from jobd.http.multipart import form_limits, form_retry, read_form
from jobd.http.page_document import html_errors, wants_page
from jobd.http.page_jobs import list_page
from jobd.http.responses import json_response, refuse_large_body, zip_response
from jobd.http.slots import WaitSlots
from jobd.jobs.service import JobService
from jobd.models import Job, JobStatus, int_id

#: job-orchestrator's payload states, spelled as its deserializer expects.
_PAYLOAD_STATUS = {
    JobStatus.QUEUED: "Prepared",
    JobStatus.RUNNING: "Running",
    JobStatus.SUCCESS: "Completed",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELLED: "Killed",
    JobStatus.SKIPPED: "Killed",  # a schedule's run that never started
}


def payload(job: Job, service: JobService) -> dict[str, object]:
    """The job as job-orchestrator's client protocol shows it; every key is required."""
    return {
        "id": job.seq,
        "input": {},
        "status": "Cleaned" if job.expired else _PAYLOAD_STATUS[job.status],
        "loc": str(service.layout.work_dir(job.id)),
        "pid": job.pgid or 0,
        "killed": job.status is JobStatus.CANCELLED,
    }


def load() -> float:
    """CPU load as a percentage of this machine's CPUs (the 1-minute average), 0 to 100."""
    return round(min(100.0, os.getloadavg()[0] / (os.cpu_count() or 1) * 100), 1)


def orchestrator_routes(app: Bottle, config: Config, service: JobService, slots: WaitSlots) -> None:
    @app.get("/")
    def ping() -> HTTPResponse:
        if wants_page():  # a browser: the status page's list (page_jobs.py)
            return html_errors(list_page)(service, request.query, "")
        return HTTPResponse(f"jobd {__version__}\n", 200, {"Content-Type": "text/plain"})

    @app.get("/load")
    def cpu_load() -> HTTPResponse:
        return json_response(load())

    @app.post("/submit")
    def submit() -> HTTPResponse:
        refuse_large_body(config.max_upload)
        form = read_form("/submit")
        parts = [(_part_path(name, part.raw_filename), part.file) for name, part in form.files]
        retry, limits = form_retry(form.fields), form_limits(form.fields)
        job = service.intake.files(parts, owner(), retry=retry, limits=limits)
        request.environ["jobd.job_id"] = job.id
        return json_response(payload(job, service))

    @app.get("/retrieve/<number>")
    def retrieve(number: str) -> HTTPResponse:
        job = service.find(_int_id(number), owner=owner())
        request.environ["jobd.job_id"] = job.id
        if job.status is JobStatus.SUCCESS and not job.expired:
            return zip_response(service.result(job), slots)
        return json_response(payload(job, service))

    @app.get("/retrieve_partial/<number>")
    def retrieve_partial(number: str) -> HTTPResponse:
        job = service.get(_int_id(number), owner=owner())
        request.environ["jobd.job_id"] = job.id
        zipped = service.result(job) if job.status.terminal else service.snapshot(job)
        return zip_response(zipped, slots)

    @app.post("/kill/<number>")
    def kill(number: str) -> HTTPResponse:
        job = service.find(_int_id(number), owner=owner())
        request.environ["jobd.job_id"] = job.id
        if not job.status.terminal and not job.expired:
            try:
                job = service.cancel(job.id)
            except Conflict:  # it ended meanwhile: nothing left to kill
                job = service.find(job.id)
            except JobdError as exc:
                raise Internal(f"could not end job {number}: {exc.message}") from None
        return json_response(payload(job, service))


def _int_id(text: str) -> int:
    """job-orchestrator names jobs by their integer ID only; anything else is no job."""
    number = int_id(text)
    if number is None:
        raise NotFound(f"there is no job number {shown(text)}")
    return number


def _part_path(name: str | None, filename: str | None) -> str:
    """Where a /submit part goes: its name when that is a relative path ending in its file
    name (job-orchestrator's way), else its file name (curl -F file=@x's way)."""
    if name is None:
        raise BadRequest("a part has no name: every part needs Content-Disposition's name=")
    for what, value in (("name", name), ("file name", filename or "")):
        problem = path_problem(value)
        if problem:
            raise BadRequest(f"the part {what} {value!r} {problem}; paths must stay inside the job")
    assert filename is not None
    return name if name == filename or name.endswith("/" + filename) else filename
