"""What every page of the status page shares: the document around it, its CSS, its headers,
its navigation, its error page and how it writes times for a person.

The pages are server-rendered and self-contained (no scripts, no files, no CDN), so the frozen
binary serves them as they are; the CSP forbids scripts outright. Every link is relative to
the page's own path, so the pages work behind a proxy that adds a path prefix.
"""

from __future__ import annotations

import functools
import html
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import ParamSpec

from bottle import HTTPResponse, request

from jobd import __version__
from jobd.errors import JobdError
from jobd.models import JobStatus, span

P = ParamSpec("P")

#: Seconds between reloads while a job is queued or running, and while none is.
BUSY_REFRESH = 5
IDLE_REFRESH = 20

HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    # No scripts at all, styles and the icon only inline, forms only back here, never framed.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:;"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with a
    # form's POST, and the forms' same-origin check needs the real origin
    "Referrer-Policy": "same-origin",
    "Vary": "Accept, Cookie",
}

#: The sections, each a page of its own: (path from the root, label).
SECTIONS = (
    ("./", "Jobs"),
    ("schedules", "Schedules"),
    ("services", "Services"),
    ("queues", "Queues"),
)

CSS = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;
--head:#f6f8fa;--link:#0550ae;--box:#f6f8fa;--bad:#cf222e}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;
--line:#3d444d;--head:#151b23;--link:#4493f8;--box:#151b23;--bad:#ff7b72}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",Arial,sans-serif}
main{max-width:84rem;margin:0 auto;padding:1rem 1.25rem 3rem}
main.narrow{max-width:30rem;padding-top:4rem}
h1{font-size:1.5rem;margin:.4rem 0 .2rem;overflow-wrap:anywhere}
h1.mono{font-size:1.3rem}
h2{font-size:1.15rem;margin:2rem 0 .4rem}
p{margin:.4rem 0}
a{color:var(--link)}
code,.mono,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",
monospace;font-size:.9em}
code{background:var(--box);padding:.1em .35em;border-radius:4px;overflow-wrap:anywhere}
.mono{overflow-wrap:anywhere}
.muted{color:var(--muted)}
.small{font-size:.85rem}
nav ul{display:flex;flex-wrap:wrap;gap:.25rem 1rem;list-style:none;margin:0;padding:0 0 .6rem;
border-bottom:1px solid var(--line)}
nav a{text-decoration:none;font-weight:600}
nav a[aria-current]{color:var(--fg);border-bottom:2px solid var(--fg)}
.counts{display:flex;flex-wrap:wrap;gap:.5rem 1.25rem;list-style:none;margin:1rem 0;padding:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.5rem .65rem;border-bottom:1px solid var(--line);
vertical-align:top}
th{background:var(--head);font-size:.8rem;font-weight:600;color:var(--muted);
white-space:nowrap}
tbody tr:hover{background:var(--head)}
td.id{min-width:14rem;overflow-wrap:anywhere}
.nowrap,td.when,td.took{white-space:nowrap}
.code{text-align:right;font-variant-numeric:tabular-nums}
td.msg{max-width:28rem;color:var(--muted);font-size:.9rem;overflow-wrap:anywhere}
.nonzero{color:var(--bad);font-weight:600}
.badge{display:inline-block;padding:.1rem .55rem;border-radius:1rem;font-size:.78rem;
font-weight:700;letter-spacing:.03em;white-space:nowrap}
.QUEUED{background:#eaeef2;color:#383f47}
.RUNNING{background:#ddf4ff;color:#0550ae}
.SUCCESS{background:#dafbe1;color:#116329}
.FAILED{background:#ffebe9;color:#a40e26}
.CANCELLED{background:#fff1c2;color:#6e4600}
.SKIPPED{background:#eaeef2;color:#59636e}
@media (prefers-color-scheme:dark){.QUEUED,.SKIPPED{background:#2a313c;color:#d1d7e0}
.RUNNING{background:#0c2d6b;color:#a5d6ff}.SUCCESS{background:#0f3d1f;color:#7ee2a8}
.FAILED{background:#5c1116;color:#ffb1ab}.CANCELLED{background:#4a3500;color:#f2cc60}}
.empty,.box{background:var(--box);border:1px solid var(--line);border-radius:8px;
padding:1rem 1.25rem}
.error{color:var(--bad);font-weight:600}
form.signin{display:flex;flex-direction:column;gap:.5rem;margin-top:1.25rem}
form.filters{display:flex;flex-wrap:wrap;gap:.5rem .75rem;align-items:end;margin:1rem 0}
form.filters label{display:flex;flex-direction:column;font-size:.8rem;color:var(--muted)}
form.act{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.5rem 0}
input,select{font:inherit;padding:.45rem .6rem;border:1px solid var(--line);border-radius:6px;
background:var(--bg);color:var(--fg);max-width:100%}
button{font:inherit;font-weight:600;padding:.45rem .9rem;border:0;border-radius:6px;
background:#1f883d;color:#fff;cursor:pointer}
button.danger{background:#cf222e}
.pager{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;margin:1rem 0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1.25rem;margin:1rem 0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0;overflow-wrap:anywhere;min-width:0}
table.files td{padding:.3rem .5rem}
pre{background:var(--box);border:1px solid var(--line);border-radius:6px;padding:.75rem;
margin:.4rem 0 1rem;white-space:pre-wrap;overflow-wrap:anywhere;max-height:28rem;
overflow-y:auto}
footer{margin-top:1.5rem}
@media (max-width:700px){
main{padding:.75rem .75rem 2rem}
table.cards thead{display:none}
table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:100%}
table.cards tr{border:1px solid var(--line);border-radius:8px;margin:0 0 .75rem;
padding:.4rem .75rem}
table.cards td{border:0;padding:.2rem 0;min-width:0;max-width:none;text-align:left;
white-space:normal}
table.cards td[data-label]::before{content:attr(data-label) ": ";color:var(--muted);
font-size:.85rem}
table.cards td.blank{display:none}
dl.facts{grid-template-columns:minmax(5.5rem,max-content) minmax(0,1fr);gap:.3rem .75rem}
}
"""


def wants_page() -> bool:
    """Whether the request's Accept names text/html (a browser): then `/` is the list page.
    `text/html;q=0` says the opposite, so it does not count."""
    for item in request.get_header("Accept", "").lower().split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        if kind == "text/html":
            weights = [p.partition("=")[2].strip() for p in params if p.startswith("q=")]
            return not weights or weights[0].strip("0.") != ""  # q=0, q=0.000: refused
    return False


def root() -> str:
    """The daemon's root relative to this request's path (``, `../`, ...), to put before a
    path: links built on it keep working behind a proxy that adds a path prefix."""
    return "../" * (request.path.count("/") - 1)


def document(
    title: str, body: str, *, refresh: int | None = None, colour: str = "%2359636e"
) -> str:
    """A whole page; its icon is a dot (blue while jobs run), so the tab says it too, and the
    browser asks for no /favicon.ico."""
    icon = (
        "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>"
        f"<circle cx='8' cy='8' r='7' fill='{colour}'/></svg>"
    )
    head = f"<meta http-equiv='refresh' content='{refresh}'>" if refresh else ""
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f'{head}<link rel="icon" href="{icon}"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>{body}</body></html>\n"
    )


def answer(text: str, status: int = 200) -> HTTPResponse:
    return HTTPResponse(text, status, dict(HEADERS))


def nav(current: str, base: str) -> str:
    """The sections' links (`base`: the root, relative to the page); the current one marked
    for the eye and for screen readers."""
    items = "".join(
        f"<li><a href='{(base or './') if path == './' else base + path}'"
        f"{' aria-current=page' if label == current else ''}>{label}</a></li>"
        for path, label in SECTIONS
    )
    return f"<nav aria-label='sections'><ul>{items}</ul></nav>"


def page(
    title: str,
    current: str,
    content: str,
    *,
    base: str,
    busy: bool,
    colour: str | None = None,
    subject: str = "a job",
) -> str:
    """A section's page: the navigation, its content and a footer that says how it refreshes.
    It always refreshes (new jobs appear), faster while something is queued or running."""
    seconds = BUSY_REFRESH if busy else IDLE_REFRESH
    body = (
        f"<main>{nav(current, base)}{content}<footer class='muted small'>"
        f"<p>This page refreshes itself every {seconds} s now ({BUSY_REFRESH} s while"
        f" {subject} is queued or running, {IDLE_REFRESH} s otherwise) and keeps your place on it."
        " Times are UTC.</p>"
        f"<p>jobd {html.escape(__version__)} · the API: <a href='{base}docs'>docs</a>,"
        f" <a href='{base}openapi.json'>openapi.json</a>,"
        f" <a href='{base}health'>health</a>.</p></footer></main>"
    )
    dot = colour or ("%230969da" if busy else "%231f883d")
    return document(title, body, refresh=seconds, colour=dot)


def error_page(status: int, message: str) -> HTTPResponse:
    """An error as a page a person reads, with the way back to the jobs."""
    body = (
        f"<main>{nav('', root())}<h1>{status}: {html.escape(_REASONS.get(status, 'error'))}</h1>"
        f"<p class='error' role='alert'>{html.escape(message)}</p>"
        f"<p><a href='{root() or './'}'>Back to the jobs</a></p></main>"
    )
    return answer(document(f"jobd: {status}", body), status)


_REASONS = {
    400: "bad request",
    401: "sign-in needed",
    403: "refused",
    404: "not found",
    409: "conflict",
    410: "gone",
    413: "too large",
    503: "not available",
    507: "disk full",
}


def html_errors(route: Callable[P, HTTPResponse]) -> Callable[P, HTTPResponse]:
    """A page route's errors as a page, not the API's JSON: a person reads them."""

    @functools.wraps(route)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> HTTPResponse:
        try:
            return route(*args, **kwargs)
        except JobdError as exc:
            return error_page(exc.status, exc.message)

    return wrapper


# --------------------------------------------------------------------------- times and states


def clock(moment: float | None) -> str:
    """A moment as a person reads it: `2026-12-06 02:10:05` (UTC, as the footer says)."""
    if moment is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


def relative(moment: float, now: float) -> str:
    """`in 4.0 s` or `12 s ago`."""
    gap = moment - now
    return f"in {span(gap)}" if gap > 0 else f"{span(-gap)} ago"


_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z")


def humane(message: str, now: float) -> str:
    """A job's Message with its RFC 3339 times (a retry's "attempt 2 at ...") written as a
    person reads them: `02:10:09 UTC (in 4.0 s)`."""

    def spoken(found: re.Match[str]) -> str:
        try:
            moment = datetime.fromisoformat(found.group(0).replace("Z", "+00:00")).timestamp()
        except ValueError:
            return found.group(0)
        return f"{time.strftime('%H:%M:%S', time.gmtime(moment))} UTC ({relative(moment, now)})"

    return _STAMP.sub(spoken, message)


def badge(status: JobStatus) -> str:
    return f"<span class='badge {status.value}'>{status.value}</span>"
