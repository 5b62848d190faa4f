"""The status page's other sections, a page each: schedules (their next fire and last runs),
services (their settings, and queued and running jobs per user) and Ocypod's queues.

Each shows what the caller may see through the API: a user of --user-tokens sees their own
schedules and, in each service, their own load beside the totals.
"""

from __future__ import annotations

import html
import time

from bottle import Bottle, HTTPResponse

from jobd.config.units import format_size
from jobd.errors import NotFound
from jobd.formats import humantime
from jobd.http.auth import owner
from jobd.http.page_document import answer, badge, html_errors, humane, page
from jobd.http.page_jobs import job_href, queue_table
from jobd.jobs.schedules import wire
from jobd.jobs.service import JobService
from jobd.models import JobStatus, span

#: How many of a schedule's runs its row shows, newest first.
RUNS_SHOWN = 5
BASE = ""


def _busy(service: JobService) -> bool:
    counts = service.counts(owner=owner())
    return bool(counts[JobStatus.QUEUED.value] or counts[JobStatus.RUNNING.value])


def schedules_page(service: JobService) -> HTTPResponse:
    now, mine = time.time(), owner()
    rows = []
    for schedule in service.schedules.all(owner=mine):
        shown = wire(schedule)
        runs = service.schedules.runs(schedule.name, RUNS_SHOWN, owner=mine)
        last = " ".join(
            f"<a href='{job_href(run, BASE)}' title='{html.escape(run.id)}'>{badge(run.status)}</a>"
            for run in runs
        )
        nxt = str(shown["next_fire"] or "")
        reason = shown.get("disabled_reason")
        state = "yes" if schedule.enabled else "no" + (f": {reason}" if reason else "")
        rows.append(
            f"<tr><td class='mono'>{html.escape(schedule.name)}</td>"
            f"<td data-label='Schedule'><code>{html.escape(str(shown.get('schedule', '')))}</code>"
            f" <span class='muted small'>{html.escape(str(shown.get('timezone', '')))}</span></td>"
            f"<td data-label='Enabled'>{html.escape(state)}</td>"
            f"<td data-label='Next run'>{html.escape(humane(nxt, now)) if nxt else '—'}</td>"
            f"<td data-label='Last runs'>{last or '<span class=muted>none yet</span>'}</td></tr>"
        )
    table = (
        "<div class='scroll'><table class='cards'><thead><tr><th>Name</th><th>Schedule</th>"
        "<th>Enabled</th><th>Next run</th><th>Last runs (newest first)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
        if rows
        else "<div class='empty'><p><b>No schedules.</b> Make one with <code>jobd schedule"
        " create</code> or <code>POST /api/schedules</code>.</p></div>"
    )
    content = f"<h1>Schedules</h1>{table}"
    return answer(page("jobd: schedules", "Schedules", content, base=BASE, busy=_busy(service)))


def _limit(value: float | int | None, kind: str) -> str:
    if value is None:
        return "jobd's"
    if kind == "size":
        return format_size(int(value))
    if kind == "time":
        return span(float(value))
    return str(value)


def services_page(service: JobService) -> HTTPResponse:
    rows = []
    for found in service.services(owner=owner()):
        users = (
            "; ".join(
                f"{'anonymous' if u['user_id'] is None else 'user ' + str(u['user_id'])}:"
                f" {u['queued']} queued, {u['running']} running"
                for u in found["users"]
            )
            or "—"
        )
        rows.append(
            f"<tr><td class='mono'>{html.escape(found['name'])}"
            f"{'' if found['declared'] else ' <span class=muted>(built in)</span>'}</td>"
            f"<td data-label='Runner'>{html.escape(found['runner'])}</td>"
            f"<td data-label='Runs'>{found['max_runs']} at once, {found['runs_per_user']} per"
            " user</td>"
            f"<td data-label='Timeout'>{_limit(found['timeout'], 'time')}</td>"
            f"<td data-label='Retention'>{_limit(found['retention'], 'time')}</td>"
            f"<td data-label='Memory'>{_limit(found['memory'], 'size')}</td>"
            f"<td data-label='Processes'>{_limit(found['processes'], '')}</td>"
            f"<td data-label='Now'><a href='jobs?service={html.escape(found['name'])}'>"
            f"{found['queued']} queued, {found['running']} running</a></td>"
            f"<td data-label='Per user'>{html.escape(users)}</td></tr>"
        )
    content = (
        "<h1>Services</h1><p class='muted'>Each service's quotas and settings (\"jobd's\": the"
        " daemon's own setting applies), and its jobs now.</p><div class='scroll'>"
        "<table class='cards'><thead><tr><th>Service</th><th>Runner</th><th>Runs</th>"
        "<th>Timeout</th><th>Retention</th><th>Memory</th><th>Processes</th><th>Now</th>"
        f"<th>Per user</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
    return answer(page("jobd: services", "Services", content, base=BASE, busy=_busy(service)))


def queues_page(service: JobService) -> HTTPResponse:
    counts = service.queues.counts()
    rows = []
    for name in counts:
        try:
            settings = service.queues.settings(name)
        except NotFound:  # deleted meanwhile
            continue
        delays = ", ".join(humantime.show(d) for d in settings.retry_delays) or "—"
        rows.append(
            f"<tr><td class='mono'>{html.escape(name)}</td>"
            f"<td data-label='Timeout'>{humantime.show(settings.timeout)}</td>"
            f"<td data-label='Heartbeat'>{humantime.show(settings.heartbeat_timeout)}</td>"
            f"<td data-label='Expires after'>{humantime.show(settings.expires_after)}</td>"
            f"<td data-label='Retries'>{settings.retries}</td>"
            f"<td data-label='Retry delays'>{html.escape(delays)}</td></tr>"
        )
    content = "<h1>Queues</h1>" + (
        queue_table(counts, "Jobs by status")
        + "<h2>Settings</h2><div class='scroll'><table class='cards'><thead><tr>"
        "<th>Queue</th><th>Timeout</th><th>Heartbeat</th><th>Expires after</th>"
        f"<th>Retries</th><th>Retry delays</th></tr></thead><tbody>{''.join(rows)}"
        "</tbody></table></div>"
        if counts
        else "<div class='empty'><p><b>No queues.</b> Ocypod's API makes one with"
        " <code>PUT /queue/&lt;name&gt;</code>.</p></div>"
    )
    return answer(page("jobd: queues", "Queues", content, base=BASE, busy=_busy(service)))


def section_routes(app: Bottle, service: JobService) -> None:
    app.get("/schedules", page=True)(html_errors(lambda: schedules_page(service)))
    app.get("/services", page=True)(html_errors(lambda: services_page(service)))
    app.get("/queues", page=True)(html_errors(lambda: queues_page(service)))
