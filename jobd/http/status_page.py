"""The status page: `GET /` from a browser (`Accept: text/html`) lists the newest jobs.

One self-contained page: its HTML and CSS live in this module (no files, no scripts, no CDN),
so the frozen binary serves it as it is. It reloads itself with a meta refresh, and only while
a job is queued or running. When the daemon has a token, a form signs the browser in:
the token is posted once, the answer is a cookie and a 303 back to the page, and the token is
never put in a link, an address bar or the access log (which records query strings).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from bottle import Bottle, HTTPResponse, request

from jobd import __version__
from jobd.errors import BadRequest
from jobd.http.auth import Caller, Credentials, owner
from jobd.http.responses import refuse_large_body
from jobd.models import Job, JobStatus, span

if TYPE_CHECKING:
    from jobd.jobs.service import JobService

#: How many of the newest jobs the page lists.
PAGE_SIZE = 50
#: Seconds between reloads while a job is queued or running.
REFRESH_SECONDS = 5
#: The sign-in form's body holds one field; anything larger is not that form.
MAX_FORM = 8192
#: Statuses in the order the page counts them.
_ORDER = (
    JobStatus.RUNNING,
    JobStatus.QUEUED,
    JobStatus.SUCCESS,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.SKIPPED,
)
#: Links that leave the page open a new tab: a page that the browser brings back from its
#: back-forward cache (Back, from a log) does not run its meta refresh again, and would stay stale.
_NEW_TAB = " target='_blank' rel='noopener'"
_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    # No scripts at all, styles and the icon only inline, forms only back here, never framed.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:;"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Vary": "Accept, Cookie",
}


def wants_page() -> bool:
    """Whether the request's Accept names text/html (a browser): then `/` is this page.
    `text/html;q=0` says the opposite, so it does not count."""
    for item in request.get_header("Accept", "").lower().split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        if kind == "text/html":
            weights = [p.partition("=")[2].strip() for p in params if p.startswith("q=")]
            return not weights or weights[0].strip("0.") != ""  # q=0, q=0.000: refused
    return False


class SignIn:
    """The browser's credential when a token is set: a cookie holding an HMAC of the token
    (the operator's or a user's) under a key made at start-up. It is not the token (a copied
    cookie does not give the token away, nor the POST routes), and a restart ends every
    sign-in."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self._key = os.urandom(32)
        self._cookies = tuple(
            (caller, self._cookie_of(token)) for caller, token in credentials.tokens()
        )

    def _cookie_of(self, token: bytes) -> bytes:
        return hmac.new(self._key, token, hashlib.sha256).hexdigest().encode()

    @staticmethod
    def cookie_name() -> str:
        """Cookies do not tell ports apart: one name per port keeps two daemons on one host
        from signing each other out."""
        return f"jobd-{request.environ.get('SERVER_PORT') or 'session'}"

    def cookie_caller(self) -> Caller | None:
        """Whose sign-in cookie the request carries, if it only reads: a page on another
        site can make a browser POST here with its cookies, so the cookie never cancels."""
        if not self._credentials.required or request.method not in ("GET", "HEAD"):
            return None
        given = (request.get_cookie(self.cookie_name()) or "").encode()
        found = None
        for caller, cookie in self._cookies:  # each compared, in constant time
            if hmac.compare_digest(given, cookie):
                found = caller
        return found

    def form_instead(self) -> HTTPResponse | None:
        """For a browser asking for the page without a credential: the sign-in form, as a
        401; None for any other request (it gets the usual JSON 401)."""
        if request.method in ("GET", "HEAD") and request.path == "/" and wants_page():
            return sign_in_page()
        return None

    def submit(self) -> HTTPResponse:
        """POST /: the form's token. Right: the cookie and 303 to the page; else the form."""
        if not self._credentials.required:
            return _see_other()  # nothing to sign in to
        refuse_large_body(MAX_FORM)
        if "token" not in request.forms:  # not the form, which always sends the field
            raise BadRequest("the sign-in form needs a 'token' field, e.g. -d token=...")
        given = request.forms.getunicode("token")  # None: not UTF-8, so not the token
        if given == "":
            return sign_in_page("Enter the token to see the jobs.")
        if given is None or self._credentials.match(given.encode()) is None:
            return sign_in_page("That token is wrong. Check it and try again.")
        answer = _see_other()
        cookie = self._cookie_of(given.encode()).decode()
        answer.set_header(
            "Set-Cookie", f"{self.cookie_name()}={cookie}; Path=/; HttpOnly; SameSite=Strict"
        )
        return answer


def status_routes(app: Bottle, signin: SignIn, skip: list[Callable[..., object]]) -> None:
    """POST / (the sign-in form) needs no token: it is how a browser gives it. GET / is the
    ping's route (jobd/orchestrator.py), which serves `status_page` to browsers."""
    app.post("/", skip=skip)(signin.submit)


def _see_other() -> HTTPResponse:
    # Relative, like every link of the page: it works behind a proxy that adds a path prefix.
    return HTTPResponse("", 303, {"Location": "./", "Cache-Control": "no-store"})


# --------------------------------------------------------------------------- the pages

_CSS = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;
--head:#f6f8fa;--link:#0550ae;--box:#f6f8fa}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;
--line:#3d444d;--head:#151b23;--link:#4493f8;--box:#151b23}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",Arial,sans-serif}
main{max-width:84rem;margin:0 auto;padding:1.5rem 1.25rem 3rem}
main.narrow{max-width:30rem;padding-top:4rem}
h1{font-size:1.5rem;margin:0 0 .2rem}
h2{font-size:1.15rem;margin:2rem 0 .2rem}
p{margin:.4rem 0}
a{color:var(--link)}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;
font-size:.9em}
code{background:var(--box);padding:.1em .35em;border-radius:4px}
.muted{color:var(--muted)}
.small{font-size:.85rem}
.counts{display:flex;flex-wrap:wrap;gap:.5rem 1.25rem;list-style:none;margin:1rem 0;padding:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.5rem .65rem;border-bottom:1px solid var(--line);
vertical-align:top}
th{background:var(--head);font-size:.8rem;font-weight:600;color:var(--muted);
white-space:nowrap}
tbody tr:hover{background:var(--head)}
td.id{min-width:15rem;overflow-wrap:break-word}
.nowrap{white-space:nowrap}
td.when,td.took,td.files{white-space:nowrap}
.code{text-align:right;font-variant-numeric:tabular-nums}
td.msg{max-width:28rem;color:var(--muted);font-size:.9rem}
.nonzero{color:#cf222e;font-weight:600}
.badge{display:inline-block;padding:.1rem .55rem;border-radius:1rem;font-size:.78rem;
font-weight:700;letter-spacing:.03em;white-space:nowrap}
.QUEUED{background:#eaeef2;color:#383f47}
.RUNNING{background:#ddf4ff;color:#0550ae}
.SUCCESS{background:#dafbe1;color:#116329}
.FAILED{background:#ffebe9;color:#a40e26}
.CANCELLED{background:#fff1c2;color:#6e4600}
.SKIPPED{background:#eaeef2;color:#59636e}
.empty{background:var(--box);border:1px solid var(--line);border-radius:8px;padding:1rem 1.25rem}
.error{color:#cf222e;font-weight:600}
form{display:flex;flex-direction:column;gap:.5rem;margin-top:1.25rem}
input{font:inherit;padding:.5rem .6rem;border:1px solid var(--line);border-radius:6px;
background:var(--bg);color:var(--fg)}
button{font:inherit;font-weight:600;padding:.5rem;border:0;border-radius:6px;
background:#1f883d;color:#fff;cursor:pointer}
footer{margin-top:1.5rem}
"""


def _document(title: str, body: str, head: str = "", colour: str = "%2359636e") -> str:
    """A whole page; its icon is a dot (blue while jobs run), so the tab says it too, and the
    browser asks for no /favicon.ico."""
    icon = (
        "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>"
        f"<circle cx='8' cy='8' r='7' fill='{colour}'/></svg>"
    )
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f'{head}<link rel="icon" href="{icon}"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )


def sign_in_page(problem: str | None = None) -> HTTPResponse:
    """The form that posts the token to `/`; a 401, as any request without the token."""
    said = f"<p class='error' role='alert'>{html.escape(problem)}</p>" if problem else ""
    body = (
        "<main class='narrow'><h1>jobd</h1>"
        "<p>This jobd has a token. Enter it to see its jobs: your browser then keeps a cookie"
        " for this daemon until you close the browser or jobd restarts.</p>"
        f"{said}<form method='post' action='./'>"
        "<label for='token'>Token</label>"
        "<input id='token' name='token' type='password' autocomplete='current-password'"
        " required autofocus>"
        "<button type='submit'>Show the jobs</button></form>"
        f"<p class='muted small'>jobd {html.escape(__version__)}</p></main>"
    )
    return HTTPResponse(_document("jobd: sign in", body), 401, _HEADERS)


def status_page(service: JobService) -> HTTPResponse:
    """The newest jobs the caller may see, and their counts (a user's: their own)."""
    jobs = service.newest(None, PAGE_SIZE, None, owner=owner())
    counts = service.counts(owner=owner())
    queues = service.queues.counts()
    return HTTPResponse(render(jobs, counts, time.time(), queues), 200, _HEADERS)


def render(
    jobs: list[Job],
    counts: dict[str, int],
    now: float,
    queues: dict[str, dict[str, int]] | None = None,
) -> str:
    """The page for these jobs (newest first), the daemon's counts by status, and the queues
    of Ocypod's API with their jobs by status."""
    running = counts.get(JobStatus.RUNNING.value, 0)
    queued = counts.get(JobStatus.QUEUED.value, 0)
    # the counts also see a queue longer than the page (or the store moved in between)
    busy = running or queued or any(not job.status.terminal for job in jobs)
    total = sum(counts.values())
    head = f"<meta http-equiv='refresh' content='{REFRESH_SECONDS}'>" if busy else ""
    shown = (
        f"the newest {len(jobs)} of {total} jobs (older ones:"
        f" <a href='api/jobs?before={jobs[-1].seq}'{_NEW_TAB}>api/jobs?before={jobs[-1].seq}</a>)"
        if jobs and total > len(jobs)
        else f"{len(jobs)} job{'' if len(jobs) == 1 else 's'}"
    )
    refresh = (
        f"This page refreshes every {REFRESH_SECONDS} s while a job is queued or running."
        if busy
        else "No job is queued or running: reload the page to see new ones."
    )
    listed = (
        "<div class='scroll'><table><thead><tr><th>Job</th><th>Status</th>"
        "<th>Created (UTC)</th><th>Duration</th><th class='code'>Exit code</th><th>Message</th>"
        f"<th>Output</th></tr></thead><tbody>{''.join(_row(job, now) for job in jobs)}"
        "</tbody></table></div>"
        if jobs
        else _EMPTY
    )
    body = (
        f"<main><h1>jobd status</h1><p class='muted'>jobd {html.escape(__version__)} ·"
        f" {shown} · times in UTC</p>{_counts(counts)}{listed}{_queues(queues or {})}"
        f"<footer class='muted small'><p>{refresh}</p><p>Logs open as text; results download"
        f" as zips of the job's folder. The API: <a href='docs'{_NEW_TAB}>docs</a>,"
        f" <a href='openapi.json'{_NEW_TAB}>openapi.json</a>,"
        f" <a href='health'{_NEW_TAB}>health</a>.</p>"
        "</footer></main>"
    )
    title = f"jobd: {running} running, {queued} queued" if running or queued else "jobd: idle"
    return _document(title, body, head, "%230969da" if busy else "%231f883d")


_EMPTY = (
    "<div class='empty'><p><b>No jobs yet.</b> Put a <code>run.sh</code> and its input files"
    " in a folder, then submit it from a shell:</p><p><code>jobd submit myjob/ --wait</code>"
    "</p><p class='muted small'>Set <code>JOBD_URL</code> to this daemon's address (and"
    " <code>JOBD_TOKEN</code> if it has a token) first. Or upload a zip to"
    " <code>POST /api/upload</code>: see the <a href='docs'>API docs</a>.</p></div>"
)


def _queues(queues: dict[str, dict[str, int]]) -> str:
    """Ocypod's queues, if any: a row each, its jobs by status."""
    if not queues:
        return ""
    head = "".join(f"<th class='code'>{s.replace('_', ' ')}</th>" for s in _QUEUE_COLUMNS)
    rows = "".join(
        f"<tr><td class='mono'>{html.escape(name)}</td>"
        + "".join(f"<td class='code'>{counts.get(s, 0)}</td>" for s in _QUEUE_COLUMNS)
        + "</tr>"
        for name, counts in queues.items()
    )
    return (
        "<h2>Queues</h2><p class='muted small'>Ocypod's queue API: <code>/queue</code>,"
        " <code>/job</code>, <code>/info</code>.</p><div class='scroll'><table><thead><tr>"
        f"<th>Queue</th>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
    )


_QUEUE_COLUMNS = ("queued", "running", "completed", "failed", "timed_out", "cancelled")


def _counts(counts: dict[str, int]) -> str:
    items = "".join(
        f"<li><span class='badge {s.value}'>{s.value}</span> {counts[s.value]}</li>"
        for s in _ORDER
        if counts.get(s.value)
    )
    return f"<ul class='counts' aria-label='jobs by status'>{items}</ul>" if items else ""


def _row(job: Job, now: float) -> str:
    e = html.escape
    attempt = (
        f"<div class='muted small nowrap'>attempt {job.attempt} of {job.max_attempts}</div>"
        if job.max_attempts > 1
        else ""
    )
    code = "—" if job.exit_code is None else str(job.exit_code)
    code_class = "code nonzero" if job.exit_code else "code"
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(job.created_at))
    return (
        f"<tr id='job-{e(job.id)}'><td class='id'><span class='mono'>{e(job.id)}</span>"
        f"<div class='muted small'>#{job.seq}</div></td>"
        f"<td><span class='badge {e(job.status.value)}'>{e(job.status.value)}</span>"
        f"{attempt}</td><td class='when'>{e(created)}</td>"
        f"<td class='took'>{e(_duration(job, now))}</td><td class='{code_class}'>{e(code)}</td>"
        f"<td class='msg'>{e(job.message)}</td><td class='files'>{_links(job)}</td></tr>"
    )


def _links(job: Job) -> str:
    """Where a person reads the logs and gets the files; a link never carries the token."""
    if job.status is JobStatus.SKIPPED:  # never started: no logs, no files
        return "<span class='muted'>—</span>"
    e, name = html.escape, quote(job.id, safe="")
    links = [
        f"<a href='api/logs/{e(name)}'{_NEW_TAB}>stdout</a>",
        f"<a href='api/logs/{e(name)}?stream=stderr'{_NEW_TAB}>stderr</a>",
    ]
    # /download names the file; the download attribute names the others' (same origin).
    if job.status is JobStatus.SUCCESS:
        target, label = f"download/{job.seq}", "result.zip"
    elif job.status is JobStatus.RUNNING:
        target, label = f"download_partial/{job.seq}", "files so far"
    elif job.status.terminal:
        target, label = f"download_partial/{job.seq}", "files.zip"
    else:
        return " · ".join(links)
    suffix = "partial" if job.status is JobStatus.RUNNING else "result"
    links.append(f"<a href='{e(target)}' download='{e(f'{job.id}-{suffix}.zip')}'>{label}</a>")
    return " · ".join(links)


def _duration(job: Job, now: float) -> str:
    if job.status is JobStatus.QUEUED:
        return f"queued {span(now - job.created_at)}"
    if job.started_at is None:
        return "did not run" if job.status.terminal else "starting"
    if job.status is JobStatus.RUNNING:
        return f"running for {span(now - job.started_at)}"
    if job.finished_at is None:
        return "—"
    return span(job.finished_at - job.started_at)
