"""Ocypod's queues: what its routes ask for, checked whole before anything is stored, and the
steps of a job's life (dequeue, heartbeat, PATCH, time-out, retry, expiry) as Ocypod takes
them. Each step is a function of the stored job, applied by the store in one transaction."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from jobd.errors import BadRequest, Conflict, NotFound
from jobd.formats import humantime
from jobd.jobs.upload import unknown_field
from jobd.models import QueueJob, QueueSettings, QueueStatus, rfc3339
from jobd.store.queues import Change, QueueGone, QueueStore, Step

QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
SETTINGS = ("timeout", "heartbeat_timeout", "expires_after", "retries", "retry_delays")
JOB_BODY = ("input", "tags", *SETTINGS)
MOST_RETRIES = 1_000_000
MOST_DELAYS = 100
MOST_TAGS, LONGEST_TAG = 100, 256
#: Ocypod's status changes by PATCH: from (now, asked).
_ENDING = {QueueStatus.COMPLETED, QueueStatus.FAILED, QueueStatus.TIMED_OUT}
_CANCELLABLE = {
    QueueStatus.QUEUED,
    QueueStatus.RUNNING,
    QueueStatus.FAILED,
    QueueStatus.TIMED_OUT,
}
_REQUEUEABLE = {QueueStatus.CANCELLED, QueueStatus.FAILED, QueueStatus.TIMED_OUT}
_STAT = {
    QueueStatus.COMPLETED: "jobs_completed",
    QueueStatus.FAILED: "jobs_failed",
    QueueStatus.TIMED_OUT: "jobs_timed_out",
    QueueStatus.CANCELLED: "jobs_cancelled",
    QueueStatus.QUEUED: "jobs_retried",
}


def queue_name(name: str) -> str:
    if not QUEUE_NAME.fullmatch(name) or not name.strip("."):
        raise BadRequest(
            f"{name[:60]!r} is not a queue name: use 1-128 of a-z A-Z 0-9 _ . - (Ocypod's rule),"
            " not dots alone"
        )
    return name


def job_id(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise BadRequest(f"{text[:40]!r} is not a job id: queue jobs have whole-number ids")
    if len(text) > 18:
        raise NotFound(f"there is no job {text[:24]}…")
    return int(text)


class Queues:
    """The queue routes' service. `note_due` tells the queue monitor of a new due time;
    `managed` names the queues of pull services, whose jobs only jobd changes (workers
    dequeue them and beat; jobs/pulled.py does the rest)."""

    def __init__(
        self,
        store: QueueStore,
        note_due: Callable[[float], None],
        managed: Callable[[str], bool] = lambda name: False,
    ) -> None:
        self._store = store
        self._note_due = note_due
        self._managed = managed
        # a dequeue that waits is woken when a job is queued (and looks again each second,
        # for retries the monitor queues)
        self._arrived = threading.Condition()
        self._stopping = False

    def notify(self) -> None:
        """A job was queued: dequeues that wait look again."""
        with self._arrived:
            self._arrived.notify_all()

    def stop(self) -> None:
        """Shutdown: dequeues that wait answer now."""
        with self._arrived:
            self._stopping = True
            self._arrived.notify_all()

    def _unmanaged(self, name: str) -> None:
        if self._managed(name):
            raise Conflict(
                f"queue {name!r} carries the jobs of the pull service {name!r}: jobd keeps it"
                " (change the service with --service, cancel its jobs with /api/cancel)"
            )

    # -- queues ------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return self._store.names()

    def settings(self, name: str) -> QueueSettings:
        found = self._store.get(queue_name(name))
        if found is None:
            raise NotFound(f"there is no queue {name!r}; create it with PUT /queue/{name}")
        return found

    def put(self, name: str, body: object) -> bool:
        """Create or replace the queue; a setting left out takes its default (Ocypod's way)."""
        name = queue_name(name)
        self._unmanaged(name)
        given = _object(body, SETTINGS, "the queue's settings")
        return self._store.put(_settings(given, QueueSettings(name)), time.time())

    def delete(self, name: str) -> None:
        self._unmanaged(queue_name(name))
        if not self._store.delete(name):
            raise NotFound(f"there is no queue {name!r}")

    def size(self, name: str) -> int:
        self.settings(name)
        return self._store.size(name)

    def job_ids(self, name: str) -> dict[str, list[int]]:
        self.settings(name)
        return self._store.ids_by_status(name)

    def counts(self) -> dict[str, dict[str, int]]:
        """Each queue's jobs by status."""
        return self._store.counts()

    def info(self) -> dict[str, object]:
        stats = self._store.statistics()
        names = ("created", "completed", "retried", "failed", "timed_out", "cancelled")
        return {
            "queues": self._store.counts(),
            "statistics": {f"total_jobs_{n}": stats.get(f"jobs_{n}", 0) for n in names},
        }

    # -- jobs --------------------------------------------------------------------------------

    def add(self, name: str, body: object) -> int:
        queue = self.settings(name)
        self._unmanaged(name)
        given = _object(body, JOB_BODY, "the job")
        own = _settings(given, queue)
        tags = _tags(given.get("tags"))
        job = QueueJob(
            id=0,
            queue=queue.name,
            status=QueueStatus.QUEUED,
            tags=tags,
            input=json.dumps(given.get("input")),
            output=None,
            created_at=time.time(),
            started_at=None,
            ended_at=None,
            last_heartbeat=None,
            timeout=own.timeout,
            heartbeat_timeout=own.heartbeat_timeout,
            expires_after=own.expires_after,
            retries=own.retries,
            retries_attempted=0,
            retry_delays=own.retry_delays,
            due_at=None,
        )
        new = self._store.add(job)
        if new is None:
            raise NotFound(f"there is no queue {name!r} (it was deleted)")
        self.notify()
        return new

    def dequeue(self, name: str, wait: float = 0.0) -> QueueJob | None:
        """The queue's next job, now running; with `wait`, waits up to that many seconds for
        one to be queued (jobd's addition: a worker need not poll)."""
        self.settings(name)
        deadline = time.monotonic() + wait
        with self._arrived:
            while True:
                started = self._store.next_queued(name, functools.partial(_start, now=time.time()))
                left = deadline - time.monotonic()
                if started is not None or left <= 0 or self._stopping:
                    break
                self._arrived.wait(min(left, 1.0))
        if started is not None and started.due_at is not None:
            self._note_due(started.due_at)
        return started

    def job(self, ref: str) -> QueueJob:
        found = self._store.job(job_id(ref))
        if found is None:
            raise NotFound(f"there is no job {ref}")
        return found

    def output(self, ref: str) -> str:
        exists, output = self._store.output(job_id(ref))
        if not exists:
            raise NotFound(f"there is no job {ref}")
        return "null" if output is None else output

    def patch(self, ref: str, body: object) -> None:
        given = _object(body, ("status", "output"), "the change")
        asked = given.get("status")
        status = None
        if "status" in given:
            values = [s.value for s in QueueStatus]
            if asked not in values:
                raise BadRequest(f"'status' {asked!r} is not one of {', '.join(values)}")
            status = QueueStatus(asked)
        output = json.dumps(given["output"]) if "output" in given else None
        now = time.time()

        def step(job: QueueJob) -> Change:
            self._unmanaged(job.queue)
            if output is not None:
                job = _with_output(job, output)
            if status is None:
                return job, None
            return move(job, status, now)

        self._change(ref, step)
        if status is QueueStatus.QUEUED:
            self.notify()

    def set_output(self, ref: str, body: object) -> None:
        output = json.dumps(body)

        def step(job: QueueJob) -> Change:
            self._unmanaged(job.queue)
            return _with_output(job, output), None

        self._change(ref, step)

    def heartbeat(self, ref: str) -> None:
        now = time.time()

        def beat(job: QueueJob) -> Change:
            if job.status is not QueueStatus.RUNNING:
                raise Conflict(f"job {job.id} is {job.status.value}: only a running job beats")
            return _running_due(dataclasses.replace(job, last_heartbeat=now), now), None

        self._change(ref, beat)

    def delete_job(self, ref: str) -> None:
        found = self._store.job(job_id(ref))
        if found is not None:
            self._unmanaged(found.queue)
        if not self._store.delete_job(job_id(ref)):
            raise NotFound(f"there is no job {ref}")

    def tagged(self, tag: str) -> list[int]:
        return self._store.tagged(tag)

    def _change(self, ref: str, step: Step) -> None:
        try:
            changed = self._store.change(job_id(ref), step)
        except QueueGone as exc:
            raise Conflict(
                f"job {ref} cannot be queued again: its queue {exc} was deleted"
            ) from None
        if changed is None:
            raise NotFound(f"there is no job {ref}")
        if changed.due_at is not None:
            self._note_due(changed.due_at)


# -- a job's steps ---------------------------------------------------------------------------


def _start(job: QueueJob, now: float) -> Change:
    started = dataclasses.replace(job, status=QueueStatus.RUNNING, started_at=now)
    return _running_due(started, now), None


def _running_due(job: QueueJob, beat_from: float) -> QueueJob:
    """A running job is due at its time-out, or when a heartbeat is missed (counted from
    `beat_from`: its last beat, or a restart, so that a restart times out no one)."""
    assert job.started_at is not None
    ends = []
    if job.timeout:
        ends.append(job.started_at + job.timeout)
    if job.heartbeat_timeout:
        ends.append(beat_from + job.heartbeat_timeout)
    return dataclasses.replace(job, due_at=min(ends) if ends else None)


def rebased(job: QueueJob, now: float) -> Change:
    """At a restart: a running job's missed-heartbeat time counts again from now."""
    if job.status is not QueueStatus.RUNNING or not job.heartbeat_timeout:
        return job, None
    beat = max(job.last_heartbeat or job.started_at or now, now)
    return _running_due(job, beat), None


def _with_output(job: QueueJob, output: str) -> QueueJob:
    if job.status is not QueueStatus.RUNNING:
        raise Conflict(f"job {job.id} is {job.status.value}: only a running job's output is set")
    return dataclasses.replace(job, output=output)


def move(job: QueueJob, to: QueueStatus, now: float) -> Change:
    was = job.status
    if was is QueueStatus.RUNNING and to in _ENDING:
        return _end(job, to, now), _STAT[to]
    if was in _CANCELLABLE and to is QueueStatus.CANCELLED:
        return _end(job, to, now), _STAT[to]
    if was in _REQUEUEABLE and to is QueueStatus.QUEUED:
        return _requeued(job, counted=False), _STAT[to]
    raise Conflict(f"job {job.id} cannot change from {was.value} to {to.value}")


def _end(job: QueueJob, status: QueueStatus, now: float) -> QueueJob:
    ended = dataclasses.replace(job, status=status, ended_at=now)
    if not ended.ended:  # failed or timed out with a retry left: back after its delay
        delays = job.retry_delays or (0,)
        delay = delays[min(job.retries_attempted, len(delays) - 1)]
        return dataclasses.replace(ended, due_at=now + delay)
    return _expiring(ended)


def _expiring(job: QueueJob) -> QueueJob:
    ends = job.ended_at or time.time()
    return dataclasses.replace(job, due_at=ends + job.expires_after if job.expires_after else None)


def _requeued(job: QueueJob, counted: bool) -> QueueJob:
    return dataclasses.replace(
        job,
        status=QueueStatus.QUEUED,
        started_at=None,
        ended_at=None,
        last_heartbeat=None,
        output=None,
        due_at=None,
        retries_attempted=job.retries_attempted + counted,
    )


def on_due(job: QueueJob, now: float) -> Change:
    """What the queue monitor does to a job whose due time came: time it out, queue it again
    (a retry; the store raises QueueGone if its queue was deleted) or remove it (expiry). One
    whose due time moved on is left as it is."""
    if job.due_at is None or job.due_at > now:
        return job, None
    if job.status is QueueStatus.RUNNING:
        return _end(job, QueueStatus.TIMED_OUT, now), _STAT[QueueStatus.TIMED_OUT]
    if job.status is QueueStatus.QUEUED:
        return dataclasses.replace(job, due_at=None), None
    if not job.ended:
        return _requeued(job, counted=True), _STAT[QueueStatus.QUEUED]
    return None, None


def orphaned(job: QueueJob, now: float) -> Change:
    """A retry whose queue was deleted: as in Ocypod, it stays failed (or timed out) and
    expires as an ended job would."""
    if job.due_at is None or job.due_at > now:
        return job, None
    return _expiring(job), None


# -- what a client sends ---------------------------------------------------------------------


def _object(body: object, known: tuple[str, ...], where: str) -> dict[str, object]:
    if not isinstance(body, dict):
        raise BadRequest(f"{where} must be a JSON object, with any of: {', '.join(known)}")
    for name in body:
        if name not in known:
            raise BadRequest(unknown_field(name, known, where))
    return body


def _settings(given: dict[str, object], base: QueueSettings) -> QueueSettings:
    """The settings given, checked; the others from `base`."""
    found: dict[str, Any] = {}
    for field in ("timeout", "heartbeat_timeout", "expires_after"):
        value = given.get(field)
        found[field] = getattr(base, field) if value is None else humantime.parse(value, field)
    retries = given.get("retries")
    if retries is None:
        found["retries"] = base.retries
    elif type(retries) is not int or not 0 <= retries <= MOST_RETRIES:
        raise BadRequest(f"'retries' must be a whole number from 0 to {MOST_RETRIES}")
    else:
        found["retries"] = retries
    delays = given.get("retry_delays")
    if delays is None:
        found["retry_delays"] = base.retry_delays
    elif not isinstance(delays, list) or len(delays) > MOST_DELAYS:
        raise BadRequest(
            f"'retry_delays' must be a list of at most {MOST_DELAYS} durations, e.g. "
            '["10s", "1m", "5m"]'
        )
    else:
        found["retry_delays"] = tuple(humantime.parse(d, "retry_delays") for d in delays)
    return dataclasses.replace(base, **found)


def _tags(tags: object) -> tuple[str, ...] | None:
    if tags is None:
        return None
    if (
        not isinstance(tags, list)
        or len(tags) > MOST_TAGS
        or not all(isinstance(tag, str) and 0 < len(tag) <= LONGEST_TAG for tag in tags)
    ):
        raise BadRequest(
            f"'tags' must be a list of at most {MOST_TAGS} strings of 1-{LONGEST_TAG}"
            ' characters, e.g. ["user3", "batch-7"]'
        )
    return tuple(dict.fromkeys(tags))


# -- how a job looks -------------------------------------------------------------------------


#: Each field of a job as Ocypod shows it.
_SHOW: dict[str, Callable[[QueueJob], object]] = {
    "id": lambda j: j.id,
    "queue": lambda j: j.queue,
    "status": lambda j: j.status.value,
    "tags": lambda j: None if j.tags is None else list(j.tags),
    "created_at": lambda j: _time(j.created_at),
    "started_at": lambda j: _time(j.started_at),
    "ended_at": lambda j: _time(j.ended_at),
    "last_heartbeat": lambda j: _time(j.last_heartbeat),
    "input": lambda j: json.loads(j.input),
    "output": lambda j: None if j.output is None else json.loads(j.output),
    "timeout": lambda j: humantime.show(j.timeout),
    "heartbeat_timeout": lambda j: humantime.show(j.heartbeat_timeout),
    "expires_after": lambda j: humantime.show(j.expires_after),
    "retries": lambda j: j.retries,
    "retries_attempted": lambda j: j.retries_attempted,
    "retry_delays": lambda j: (
        None if j.retry_delays is None else [humantime.show(d) for d in j.retry_delays]
    ),
    "ended": lambda j: j.ended,
}


#: A job's fields, in Ocypod's order (`?fields=` names some of them).
FIELDS = tuple(_SHOW)


def view(job: QueueJob, fields: tuple[str, ...] = FIELDS) -> dict[str, object]:
    return {field: _SHOW[field](job) for field in fields}


def settings_view(settings: QueueSettings) -> dict[str, object]:
    return {
        "timeout": humantime.show(settings.timeout),
        "heartbeat_timeout": humantime.show(settings.heartbeat_timeout),
        "expires_after": humantime.show(settings.expires_after),
        "retries": settings.retries,
        "retry_delays": [humantime.show(d) for d in settings.retry_delays],
    }


def fields(text: str) -> tuple[str, ...]:
    """`?fields=id,status`: each one of FIELDS, exactly."""
    asked = tuple(text.split(","))
    for name in asked:
        if name not in FIELDS:
            raise BadRequest(
                f"{name[:40]!r} in 'fields' is not a job field; use a comma-separated list of:"
                f" {', '.join(FIELDS)}"
            )
    return asked


def _time(ts: float | None) -> str | None:
    return rfc3339(ts, "microseconds")
