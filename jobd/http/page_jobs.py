"""The list page: the newest jobs the caller may see, filtered by status, service and user
(a plain GET form), a page at a time (older and newer links), with their counts and Ocypod's
queues. `GET /` serves it to browsers (orchestrator.py); `GET /jobs` is it with filters.

A table on a wide screen; below 700 px each row is a card (CSS alone), so nothing scrolls
sideways on a phone.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from bottle import Bottle, FormsDict, HTTPResponse, request

from jobd.config.units import shown
from jobd.errors import BadRequest
from jobd.http.auth import owner
from jobd.http.page_document import answer, badge, clock, html_errors, humane, page, relative
from jobd.jobs.service import JobService
from jobd.models import SERVICE_PATTERN, Job, JobStatus, int_id, span

#: How many jobs a page lists.
PAGE_SIZE = 50
#: Statuses in the order the page counts them.
ORDER = (
    JobStatus.RUNNING,
    JobStatus.QUEUED,
    JobStatus.SUCCESS,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.SKIPPED,
)
#: Links to a log open a new tab: a page that the browser brings back from its back-forward
#: cache (Back, from a log) does not run its meta refresh again, and would stay stale.
NEW_TAB = " target='_blank' rel='noopener'"
_QUEUE_COLUMNS = ("queued", "running", "completed", "failed", "timed_out", "cancelled")


@dataclass(frozen=True)
class Filters:
    """What the list shows: the form's fields, checked; None is "any"."""

    status: JobStatus | None = None
    service: str | None = None
    user: int | None = None

    def query(self, **more: int) -> str:
        """The filters (and `more`, e.g. before=) as a query string, `?` included."""
        fields = {
            "status": self.status.value if self.status else None,
            "service": self.service,
            "user": self.user,
            **more,
        }
        given = {name: value for name, value in fields.items() if value is not None}
        return "?" + urlencode(given) if given else ""

    @property
    def any(self) -> bool:
        return self.status is not None or self.service is not None or self.user is not None


def _field(query: FormsDict, name: str) -> str | None:
    """A field as the form sends it: empty means "any"; given twice, a 400."""
    values = query.getall(name)
    if len(values) > 1:
        raise BadRequest(f"'{name}' is given {len(values)} times; give it once")
    return str(values[0]) or None if values else None


def _number(query: FormsDict, name: str) -> int | None:
    text = _field(query, name)
    if text is None:
        return None
    number = int_id(text)
    if number is None:
        raise BadRequest(f"'{name}' must be a whole number from 0 up, not {shown(text)}")
    return number


def filters_of(query: FormsDict) -> tuple[Filters, int | None]:
    """The filters and `before` the query asks for; a 400 naming the field if one is wrong."""
    status = _field(query, "status")
    if status is not None and status.upper() not in {s.value for s in JobStatus}:
        raise BadRequest(
            f"'status' must be one of {', '.join(s.value for s in JobStatus)}, not {shown(status)}"
        )
    service = _field(query, "service")
    if service is not None and not SERVICE_PATTERN.fullmatch(service):
        raise BadRequest(
            f"'service' must be a service's name (letters, digits, - and _, up to 64),"
            f" not {shown(service)}"
        )
    found = Filters(JobStatus(status.upper()) if status else None, service, _number(query, "user"))
    return found, _number(query, "before")


def list_page(service: JobService, query: FormsDict, base: str) -> HTTPResponse:
    """The jobs the caller may see (a user of --user-tokens: their own), as `query` asks."""
    filters, before = filters_of(query)
    mine = owner()
    if mine is not None and filters.user not in (None, mine):
        jobs, newer = [], []  # another user's jobs: none of them are this caller's
    else:
        who = mine if mine is not None else filters.user

        def newest(limit: int, before: int | None, after: int | None = None) -> list[Job]:
            return service.newest(
                filters.status, limit, before, owner=who, service=filters.service, after=after
            )

        jobs = newest(PAGE_SIZE + 1, before)
        newer = newest(PAGE_SIZE + 1, None, jobs[0].seq) if jobs and before is not None else []
    counts = service.counts(owner=mine)
    text = render(jobs, counts, time.time(), service.queues.counts(), filters, before, newer, base)
    return answer(text)


def render(
    jobs: list[Job],
    counts: dict[str, int],
    now: float,
    queues: dict[str, dict[str, int]] | None = None,
    filters: Filters = Filters(),
    before: int | None = None,
    newer: list[Job] | None = None,
    base: str = "",
) -> str:
    """The page for these jobs (newest first, one more than a page if there are older ones),
    the counts by status, Ocypod's queues, and links to the older and newer pages."""
    more = len(jobs) > PAGE_SIZE
    jobs = jobs[:PAGE_SIZE]
    running = counts.get(JobStatus.RUNNING.value, 0)
    queued = counts.get(JobStatus.QUEUED.value, 0)
    # the counts also see a queue longer than the page (or the store moved in between)
    busy = bool(running or queued or any(not job.status.terminal for job in jobs))
    total = sum(counts.values())
    listed = (
        "<div class='scroll'><table class='cards jobs'><thead><tr><th>Job</th><th>Status</th>"
        "<th>Created (UTC)</th><th>Duration</th><th class='code'>Exit code</th><th>Message</th>"
        f"<th>Output</th></tr></thead><tbody>{''.join(_row(job, now, base) for job in jobs)}"
        "</tbody></table></div>"
        if jobs
        else _empty(filters, before, base)
    )
    shown_now = f"{len(jobs)} job{'' if len(jobs) == 1 else 's'} shown of {total} kept" + (
        " (filtered)" if filters.any else ""
    )
    content = (
        f"<h1>jobd status</h1><p class='muted'>{shown_now}</p>{_counts(counts, base)}"
        f"{_filter_form(filters, base)}{listed}"
        f"{_pager(jobs, filters, before, more, newer or [], base)}"
        f"{queue_table(queues or {})}"
        "<p class='muted small'>Open a job for its output, files and actions. Logs open as"
        " text in a new tab; results download as zips of the job's folder.</p>"
    )
    title = f"jobd: {running} running, {queued} queued" if running or queued else "jobd: idle"
    return page(title, "Jobs", content, base=base, busy=busy)


def _empty(filters: Filters, before: int | None, base: str) -> str:
    if filters.any or before is not None:
        return (
            "<div class='empty'><p><b>No job matches.</b> "
            f"<a href='{base}jobs'>Show every job</a>.</p></div>"
        )
    return (
        "<div class='empty'><p><b>No jobs yet.</b> Put a <code>run.sh</code> and its input"
        " files in a folder, then submit it from a shell:</p><p><code>jobd submit myjob/"
        " --wait</code></p><p class='muted small'>Set <code>JOBD_URL</code> to this daemon's"
        " address (and <code>JOBD_TOKEN</code> if it has a token) first. Or upload a zip to"
        f" <code>POST /api/upload</code>: see the <a href='{base}docs'>API docs</a>.</p></div>"
    )


def _filter_form(filters: Filters, base: str) -> str:
    e = html.escape
    options = "".join(
        f"<option value='{s.value}'{' selected' if s is filters.status else ''}>{s.value}</option>"
        for s in ORDER
    )
    clear = f" <a href='{base}jobs'>Clear</a>" if filters.any else ""
    return (
        f"<form class='filters' method='get' action='{base}jobs' aria-label='filter the jobs'>"
        f"<label>Status<select name='status'><option value=''>any</option>{options}</select>"
        "</label><label>Service<input name='service' size='12' maxlength='64'"
        f" pattern='[A-Za-z0-9_\\-]{{1,64}}' value='{e(filters.service or '')}'></label>"
        "<label>User<input name='user' size='6' inputmode='numeric' pattern='[0-9]{1,19}'"
        f" value='{'' if filters.user is None else filters.user}'></label>"
        f"<button type='submit'>Filter</button>{clear}</form>"
    )


def _pager(
    jobs: list[Job],
    filters: Filters,
    before: int | None,
    more: bool,
    newer: list[Job],
    base: str,
) -> str:
    """Older and newer pages: `before` is the IntID the page starts below."""
    links = []
    if before is not None:
        if len(newer) > PAGE_SIZE:  # a full page above this one: it starts below its top
            target = filters.query(before=newer[-PAGE_SIZE].seq + 1)
            links.append(f"<a href='{base}jobs{html.escape(target)}' rel='prev'>Newer jobs</a>")
        links.append(f"<a href='{base}jobs{html.escape(filters.query())}'>Newest jobs</a>")
    if more:
        target = filters.query(before=jobs[-1].seq)
        links.append(f"<a href='{base}jobs{html.escape(target)}' rel='next'>Older jobs</a>")
    return f"<nav class='pager' aria-label='pages'>{''.join(links)}</nav>" if links else ""


def queue_table(queues: dict[str, dict[str, int]], heading: str = "Queues") -> str:
    """Ocypod's queues, if any: a row each, its jobs by status."""
    if not queues:
        return ""
    head = "".join(f"<th class='code'>{s.replace('_', ' ')}</th>" for s in _QUEUE_COLUMNS)
    rows = "".join(
        f"<tr><td class='mono'>{html.escape(name)}</td>"
        + "".join(
            f"<td class='code' data-label='{s.replace('_', ' ')}'>{counts.get(s, 0)}</td>"
            for s in _QUEUE_COLUMNS
        )
        + "</tr>"
        for name, counts in queues.items()
    )
    return (
        f"<h2>{heading}</h2><p class='muted small'>Ocypod's queue API: <code>/queue</code>,"
        " <code>/job</code>, <code>/info</code>.</p><div class='scroll'><table class='cards'>"
        f"<thead><tr><th>Queue</th>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _counts(counts: dict[str, int], base: str) -> str:
    items = "".join(
        f"<li><a href='{base}jobs?status={s.value}'>{badge(s)}</a> {counts[s.value]}</li>"
        for s in ORDER
        if counts.get(s.value)
    )
    return f"<ul class='counts' aria-label='jobs by status'>{items}</ul>" if items else ""


def job_href(job: Job, base: str) -> str:
    return f"{base}jobs/{html.escape(quote(job.id, safe=''))}"


def _row(job: Job, now: float, base: str) -> str:
    e = html.escape
    code = "—" if job.exit_code is None else str(job.exit_code)
    code_class = "code nonzero" if job.exit_code else "code"
    who = f"{e(job.service)}" + ("" if job.user_id is None else f" · user {job.user_id}")
    return (
        f"<tr id='job-{e(job.id)}'><td class='id'><a class='mono' href='{job_href(job, base)}'>"
        f"{e(job.id)}</a><div class='muted small'>#{job.seq} · {who}</div></td>"
        f"<td data-label='Status'>{badge(job.status)}{attempt_note(job, now)}</td>"
        f"<td class='when' data-label='Created'>{e(clock(job.created_at))}</td>"
        f"<td class='took' data-label='Duration'>{e(duration(job, now))}</td>"
        f"<td class='{code_class}' data-label='Exit code'>{e(code)}</td>"
        f"<td class='msg{'' if job.message else ' blank'}' data-label='Message'>"
        f"{e(humane(job.message, now))}</td>"
        f"<td class='files' data-label='Output'>{links(job, base)}</td></tr>"
    )


def attempt_note(job: Job, now: float) -> str:
    """`attempt 2 of 3`, and while a retry waits out its backoff, when it may start."""
    if job.max_attempts <= 1:
        return ""
    waiting = ""
    if job.status is JobStatus.QUEUED and job.due_at is not None and job.due_at > now:
        waiting = html.escape(f", starts {relative(job.due_at, now)}")
    return f"<div class='muted small'>attempt {job.attempt} of {job.max_attempts}{waiting}</div>"


def links(job: Job, base: str) -> str:
    """Where a person reads the logs and gets the files; a link never carries the token."""
    if job.status is JobStatus.SKIPPED:  # never started: no logs, no files
        return "<span class='muted'>—</span>"
    e, name = html.escape, quote(job.id, safe="")
    found = [
        f"<a href='{base}api/logs/{e(name)}'{NEW_TAB}>stdout</a>",
        f"<a href='{base}api/logs/{e(name)}?stream=stderr'{NEW_TAB}>stderr</a>",
    ]
    # /download names the file; the download attribute names the others' (same origin).
    if job.status is JobStatus.SUCCESS:
        target, label = f"download/{job.seq}", "result.zip"
    elif job.status is JobStatus.RUNNING:
        target, label = f"download_partial/{job.seq}", "files so far"
    elif job.status.terminal:
        target, label = f"download_partial/{job.seq}", "files.zip"
    else:
        return " · ".join(found)
    suffix = "partial" if job.status is JobStatus.RUNNING else "result"
    found.append(
        f"<a href='{base}{e(target)}' download='{e(f'{job.id}-{suffix}.zip')}'>{label}</a>"
    )
    return " · ".join(found)


def duration(job: Job, now: float) -> str:
    if job.status is JobStatus.QUEUED:
        return f"queued {span(now - job.created_at)}"
    if job.started_at is None:
        return "did not run" if job.status.terminal else "starting"
    if job.status is JobStatus.RUNNING:
        return f"running for {span(now - job.started_at)}"
    if job.finished_at is None:
        return "—"
    return span(job.finished_at - job.started_at)


def list_routes(app: Bottle, service: JobService) -> None:
    """`GET /jobs`: the list page with its filters and pages (`GET /` is it without them)."""

    @app.get("/jobs", page=True)
    @html_errors
    def jobs() -> HTTPResponse:
        return list_page(service, request.query, "")
