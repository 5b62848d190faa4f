"""Ocypod's queues and their jobs: one row a queue, one a job, one a (tag, job) pair, and the
running totals /info shows. The next job of a queue and the next job the monitor must look at
are each found by an index, never by a scan.

A job changes only through `change`: its row is read and written back in one transaction, so a
step (dequeue, heartbeat, a PATCH, a time-out) decides on what is stored, never on a stale copy.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable

from jobd.models import QueueJob, QueueSettings, QueueStatus
from jobd.store.sqlite import Database, marks

_FIELDS = tuple(field.name for field in dataclasses.fields(QueueJob))
_COLUMNS = ", ".join(_FIELDS)
_WRITTEN = tuple(name for name in _FIELDS if name != "id")
_QUEUE_FIELDS = tuple(field.name for field in dataclasses.fields(QueueSettings))
_STATUSES = tuple(status.value for status in QueueStatus)


class QueueGone(Exception):
    """A job cannot go back to its queue: the queue was deleted (its name is the message)."""


#: What a step does to a job: the job as it is to be stored (None: delete it), and the
#: statistic it counts (jobs_completed, ...), if any.
Change = tuple[QueueJob | None, str | None]
Step = Callable[[QueueJob], Change]


def _tuple(text: str | None) -> tuple | None:
    return None if text is None else tuple(json.loads(text))


def _json(values: tuple | None) -> str | None:
    return None if values is None else json.dumps(list(values))


def _job(row: sqlite3.Row) -> QueueJob:
    values = {name: row[name] for name in _FIELDS}
    values["status"] = QueueStatus(values["status"])
    values["tags"] = _tuple(values["tags"])
    values["retry_delays"] = _tuple(values["retry_delays"])
    return QueueJob(**values)


def _row(job: QueueJob) -> tuple[object, ...]:
    values = {name: getattr(job, name) for name in _WRITTEN}
    values["status"] = job.status.value
    values["tags"] = _json(job.tags)
    values["retry_delays"] = _json(job.retry_delays)
    return tuple(values[name] for name in _WRITTEN)


def _settings(row: sqlite3.Row) -> QueueSettings:
    values = {name: row[name] for name in _QUEUE_FIELDS}
    values["retry_delays"] = tuple(json.loads(values["retry_delays"]))
    return QueueSettings(**values)


class QueueStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- queues ------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return [row[0] for row in self._db.rows("SELECT name FROM queues ORDER BY name")]

    def get(self, name: str) -> QueueSettings | None:
        rows = self._db.rows("SELECT * FROM queues WHERE name = ?", (name,))
        return _settings(rows[0]) if rows else None

    def put(self, settings: QueueSettings, now: float) -> bool:
        """Create or replace the queue; True if it is new."""
        values = (*dataclasses.astuple(settings)[:-1], json.dumps(list(settings.retry_delays)))
        with self._db.tx() as db:
            new = db.execute("SELECT 1 FROM queues WHERE name = ?", (settings.name,)).fetchone()
            db.execute(
                f"INSERT INTO queues ({', '.join(_QUEUE_FIELDS)}, created_at)"
                f" VALUES ({marks(_QUEUE_FIELDS)}, ?) ON CONFLICT (name) DO UPDATE SET"
                + ", ".join(f" {name} = excluded.{name}" for name in _QUEUE_FIELDS[1:]),
                (*values, now),
            )
        return new is None

    def delete(self, name: str) -> bool:
        """The queue and its queued jobs go; its running and ended jobs stay."""
        with self._db.tx() as db:
            if db.execute("DELETE FROM queues WHERE name = ?", (name,)).rowcount == 0:
                return False
            queued = "SELECT id FROM qjobs WHERE queue = ? AND status = 'queued'"
            db.execute(f"DELETE FROM qjob_tags WHERE job_id IN ({queued})", (name,))
            db.execute("DELETE FROM qjobs WHERE queue = ? AND status = 'queued'", (name,))
        return True

    def size(self, name: str) -> int:
        sql = "SELECT COUNT(*) FROM qjobs WHERE queue = ? AND status = 'queued'"
        return int(self._db.rows(sql, (name,))[0][0])

    def ids_by_status(self, name: str) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {status: [] for status in _STATUSES}
        sql = "SELECT status, id FROM qjobs WHERE queue = ? ORDER BY status, position, id"
        for status, job_id in self._db.rows(sql, (name,)):
            found[status].append(job_id)
        return found

    def counts(self) -> dict[str, dict[str, int]]:
        """Each queue's jobs by status (every status, every queue, zeros included)."""
        found = {name: dict.fromkeys(_STATUSES, 0) for name in self.names()}
        sql = "SELECT queue, status, COUNT(*) FROM qjobs GROUP BY queue, status"
        for queue, status, count in self._db.rows(sql):
            if queue in found:
                found[queue][status] = count
        return found

    def statistics(self) -> dict[str, int]:
        return {name: count for name, count in self._db.rows("SELECT * FROM queue_stats")}

    # -- jobs --------------------------------------------------------------------------------

    def add(self, job: QueueJob) -> int | None:
        """Store a new job at the back of its queue; its id, or None if the queue is gone
        (looked at in the same transaction: a job never lands in a deleted queue)."""
        with self._db.tx() as db:
            return QueueStore.insert(db, job)

    @staticmethod
    def insert(db: sqlite3.Connection, job: QueueJob) -> int | None:
        """`add`, inside the caller's transaction (a pull service's job and its queue job
        are stored together)."""
        if db.execute("SELECT 1 FROM queues WHERE name = ?", (job.queue,)).fetchone() is None:
            return None
        cursor = db.execute(
            f"INSERT INTO qjobs ({', '.join(_WRITTEN)}, position)"
            f" VALUES ({marks(_WRITTEN)}, {_BACK})",
            (*_row(job), job.queue),
        )
        job_id = int(cursor.lastrowid or 0)
        db.executemany(
            "INSERT OR IGNORE INTO qjob_tags (tag, job_id) VALUES (?, ?)",
            [(tag, job_id) for tag in job.tags or ()],
        )
        _count(db, "jobs_created")
        return job_id

    def job(self, job_id: int) -> QueueJob | None:
        rows = self._db.rows(f"SELECT {_COLUMNS} FROM qjobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def output(self, job_id: int) -> tuple[bool, str | None]:
        rows = self._db.rows("SELECT output FROM qjobs WHERE id = ?", (job_id,))
        return (True, rows[0][0]) if rows else (False, None)

    def change(self, job_id: int, step: Step) -> QueueJob | None:
        """Apply `step` to the stored job in one transaction; the job as stored after it, or
        None if there is no such job (or the step deleted it). Whatever the step raises
        leaves the job as it was."""
        with self._db.tx() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM qjobs WHERE id = ?", (job_id,)).fetchall()
            if not rows:
                return None
            return _apply(db, _job(rows[0]), step)

    def next_queued(self, queue: str, step: Step) -> QueueJob | None:
        """Apply `step` to the queue's first queued job, in one transaction: a job is handed
        to one caller only."""
        with self._db.tx() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM qjobs WHERE queue = ? AND status = 'queued'"
                " ORDER BY position LIMIT 1",
                (queue,),
            ).fetchall()
            return _apply(db, _job(rows[0]), step) if rows else None

    def delete_job(self, job_id: int) -> bool:
        with self._db.tx() as db:
            db.execute("DELETE FROM qjob_tags WHERE job_id = ?", (job_id,))
            return db.execute("DELETE FROM qjobs WHERE id = ?", (job_id,)).rowcount > 0

    def tagged(self, tag: str) -> list[int]:
        sql = "SELECT job_id FROM qjob_tags WHERE tag = ? ORDER BY job_id"
        return [row[0] for row in self._db.rows(sql, (tag,))]

    # -- for the monitor ---------------------------------------------------------------------

    def due(self, now: float, most: int) -> list[int]:
        """Jobs whose due time has come, soonest first."""
        sql = "SELECT id FROM qjobs WHERE due_at <= ? ORDER BY due_at LIMIT ?"
        return [row[0] for row in self._db.rows(sql, (now, most))]

    def forget_due(self, job_id: int) -> None:
        """The monitor cannot use this row: it stops looking at it (the row is not read)."""
        with self._db.tx() as db:
            db.execute("UPDATE qjobs SET due_at = NULL WHERE id = ?", (job_id,))

    def next_due(self) -> float | None:
        rows = self._db.rows("SELECT MIN(due_at) FROM qjobs WHERE due_at IS NOT NULL")
        return rows[0][0]

    def running(self, ids_after: int, most: int) -> list[int]:
        """Running jobs' ids, a page at a time."""
        sql = "SELECT id FROM qjobs WHERE status = 'running' AND id > ? ORDER BY id LIMIT ?"
        return [row[0] for row in self._db.rows(sql, (ids_after, most))]


#: The position after the last queued job of the queue (the `?` is the queue's name).
_BACK = "(SELECT COALESCE(MAX(position), 0) + 1 FROM qjobs WHERE queue = ? AND status = 'queued')"


def _apply(db: sqlite3.Connection, job: QueueJob, step: Step) -> QueueJob | None:
    changed, counted = step(job)
    if changed is None:
        db.execute("DELETE FROM qjob_tags WHERE job_id = ?", (job.id,))
        db.execute("DELETE FROM qjobs WHERE id = ?", (job.id,))
    else:
        sets = ", ".join(f"{name} = ?" for name in _WRITTEN)
        back = changed.status is QueueStatus.QUEUED and job.status is not QueueStatus.QUEUED
        if back and not db.execute("SELECT 1 FROM queues WHERE name = ?", (job.queue,)).fetchone():
            raise QueueGone(job.queue)
        position = f", position = {_BACK}" if back else ""
        db.execute(
            f"UPDATE qjobs SET {sets}{position} WHERE id = ?",
            (*_row(changed), *([changed.queue] if back else []), job.id),
        )
    if counted:
        _count(db, counted)
    return changed


def _count(db: sqlite3.Connection, name: str) -> None:
    db.execute(
        "INSERT INTO queue_stats (name, count) VALUES (?, 1)"
        " ON CONFLICT (name) DO UPDATE SET count = count + 1",
        (name,),
    )
