"""One job's page (`GET /jobs/<ID or IntID>`): its state, times, attempts, exit code and
message, the names of its env variables (never their values), the tail of its stdout and
stderr, the files in its folder, its downloads, and the forms that cancel or retry it.

The forms POST to routes of their own, which take only a request from this jobd's own page
carrying the token (page_signin.py), act as the caller (a user of --user-tokens reaches only
their own jobs, as on the API), and answer 303 to the job's page.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from urllib.parse import quote

from bottle import Bottle, HTTPResponse

from jobd.errors import Conflict
from jobd.http.auth import owner
from jobd.http.page_document import answer, badge, clock, html_errors, humane, page, relative
from jobd.http.page_jobs import attempt_note, duration, links
from jobd.http.page_signin import SignIn
from jobd.jobs.folder import Listing, listing, tail
from jobd.jobs.service import JobService
from jobd.models import Job, JobStatus, span

#: How much of each log the page shows: its end, where a person looks first.
TAIL_BYTES = 8192
#: The job page's root, relative to it (`/jobs/<ID>`).
BASE = "../"


def job_page(service: JobService, ref: str, has_token: bool) -> HTTPResponse:
    job = service.find(ref, owner=owner())
    now = time.time()
    sections = [_facts(job, now), _actions(job, has_token)]
    if job.expired:
        sections.append(
            "<p class='box'>Its files were removed after the retention period"
            " (see <code>--retention</code>).</p>"
        )
    elif job.status is not JobStatus.SKIPPED:
        sections += [_logs(service, job), _files(listing(service.layout.work_dir(job.id)))]
    title = f"jobd: {job.id} {job.status.value}"
    content = f"<h1 class='mono'>{html.escape(job.id)}</h1>{''.join(sections)}"
    busy = not job.status.terminal
    return answer(page(title, "", content, base=BASE, busy=busy, subject="this job"))


def _facts(job: Job, now: float) -> str:
    e = html.escape
    facts: list[tuple[str, str]] = [
        ("Status", f"{badge(job.status)}{attempt_note(job, now)}"),
        ("IntID", f"#{job.seq}"),
        ("Message", e(humane(job.message, now)) or "<span class='muted'>—</span>"),
        ("Exit code", "—" if job.exit_code is None else str(job.exit_code)),
        ("Created", _moment(job.created_at, now)),
        ("Started", _moment(job.started_at, now)),
        ("Finished", _moment(job.finished_at, now)),
        ("Duration", e(duration(job, now))),
        ("Attempts", _attempts(job, now)),
        ("Service", e(job.service)),
        ("User", "—" if job.user_id is None else str(job.user_id)),
        ("Env names", _env_names(job)),
        ("Timeout", "—" if job.timeout is None else e(span(job.timeout))),
    ]
    if job.schedule:
        facts.append(("Schedule", f"<a href='{BASE}schedules'>{e(job.schedule)}</a>"))
    if job.slurml:
        facts.append(("Slurm job", str(job.slurm_id or "not submitted yet")))
    items = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    downloads = "" if job.expired else f"<p>Downloads: {links(job, BASE)}</p>"
    return f"<dl class='facts'>{items}</dl>{downloads}"


def _moment(moment: float | None, now: float) -> str:
    if moment is None:
        return "—"
    ago = html.escape(relative(moment, now))
    return f"{html.escape(clock(moment))} UTC <span class='muted'>({ago})</span>"


def _attempts(job: Job, now: float) -> str:
    said = f"attempt {job.attempt} of {job.max_attempts}"
    if job.status is JobStatus.QUEUED and job.due_at is not None and job.due_at > now:
        said += f"; it starts {relative(job.due_at, now)} ({clock(job.due_at)} UTC)"
    return html.escape(said)


def _env_names(job: Job) -> str:
    """The names the upload set, never their values (they may be secrets)."""
    try:
        names = sorted(json.loads(job.env))
    except (ValueError, TypeError):
        names = []
    if not names:
        return "<span class='muted'>none</span>"
    return ", ".join(f"<code>{html.escape(name)}</code>" for name in names)


def _actions(job: Job, has_token: bool) -> str:
    """The forms that act on the job: cancel while it is unfinished, retry once it ended."""
    if job.expired:
        return ""
    field = (
        "<input name='token' type='password' autocomplete='current-password' required"
        " placeholder='token' aria-label='token'>"
        if has_token
        else ""
    )
    target = html.escape(quote(job.id, safe=""))
    if not job.status.terminal:
        return (
            f"<form class='act' method='post' action='{target}/cancel'>{field}"
            "<button class='danger' type='submit'>Cancel this job</button></form>"
        )
    if job.status is JobStatus.SKIPPED:  # never started: nothing to run again
        return ""
    return (
        f"<form class='act' method='post' action='{target}/retry'>{field}"
        "<button type='submit'>Run it again</button><span class='muted small'>a new job from"
        " the same input and settings</span></form>"
    )


def _logs(service: JobService, job: Job) -> str:
    found = []
    for stream in ("stdout", "stderr"):
        data, size = tail(service.log_path(job, stream), TAIL_BYTES)
        text = data.decode("utf-8", errors="replace")
        if size > len(data):
            text = text.partition("\n")[2]  # from the first whole line
            said = f"the last {len(data) // 1024} KB of {size:,} bytes"
        else:
            said = (
                f"{size:,} bytes"
                if size
                else "empty so far"
                if not job.status.terminal
                else "empty"
            )
        name = html.escape(quote(job.id, safe=""))
        extra = "" if stream == "stdout" else "?stream=stderr"
        shown = f"<pre>{html.escape(text)}</pre>" if text else ""
        found.append(
            f"<h2>{stream}</h2><p class='muted small'>{said} ·"
            f" <a href='{BASE}api/logs/{name}{extra}' target='_blank' rel='noopener'>all of"
            f" it</a></p>{shown}"
        )
    return "".join(found)


def _files(found: Listing) -> str:
    if not found.entries:
        return "<h2>Files</h2><p class='muted'>The job's folder is empty.</p>"
    rows = "".join(
        f"<tr><td class='mono'>{html.escape(entry.path)}</td><td class='code'>"
        f"{'—' if entry.size is None else f'{entry.size:,}'}</td><td>{entry.kind}</td></tr>"
        for entry in found.entries
    )
    more = (
        f"<p class='muted small'>Only the first {len(found.entries)} are listed; download the"
        " zip for all of them.</p>"
        if found.more
        else ""
    )
    return (
        "<h2>Files</h2><div class='scroll'><table class='files'><thead><tr><th>Path</th>"
        f"<th class='code'>Size (bytes)</th><th>Kind</th></tr></thead><tbody>{rows}</tbody>"
        f"</table></div>{more}<p class='muted small'>Links are listed, never followed.</p>"
    )


def _back_to(job: Job) -> HTTPResponse:
    """303 to a job's page, relative from `/jobs/<ref>/<action>`."""
    where = "../" + quote(job.id, safe="")
    return HTTPResponse("", 303, {"Location": where, "Cache-Control": "no-store"})


def job_routes(
    app: Bottle, service: JobService, signin: SignIn, skip: list[Callable[..., object]]
) -> None:
    """The job page reads like any page; its forms skip the bearer check (a browser sends no
    header) and pass the form's own (page_signin.SignIn.form_caller)."""
    has_token = signin.credentials.required

    @app.get("/jobs/<job_id>", page=True)
    @html_errors
    def show(job_id: str) -> HTTPResponse:
        return job_page(service, job_id, has_token)

    @app.post("/jobs/<job_id>/cancel", skip=skip)
    @html_errors
    def cancel(job_id: str) -> HTTPResponse:
        caller = signin.form_caller()
        try:
            job = service.cancel(job_id, owner=caller.owner)
        except Conflict as exc:
            raise Conflict(f"{exc.message}; there is nothing left to cancel") from None
        return _back_to(job)

    @app.post("/jobs/<job_id>/retry", skip=skip)
    @html_errors
    def retry(job_id: str) -> HTTPResponse:
        caller = signin.form_caller()
        return _back_to(service.retry(job_id, owner=caller.owner))
