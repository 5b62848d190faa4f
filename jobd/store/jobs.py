"""Jobs: their rows, every state change as one conditional UPDATE (so of two changes that race,
one wins and the other sees None), and the queries the daemon and its routes ask."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Collection, Iterable

from jobd.errors import IdTaken
from jobd.models import TERMINAL, UNFINISHED, Job, JobStatus
from jobd.store.outbox import Outbox
from jobd.store.sqlite import Database, marks
from jobd.store.turns import Turns

#: The job table's columns are the Job dataclass's fields, by name.
_FIELDS = tuple(field.name for field in dataclasses.fields(Job))
_COLUMNS = ", ".join(_FIELDS)
_INSERTED = tuple(name for name in _FIELDS if name != "seq")  # seq is the store's to give


def _row_to_job(row: sqlite3.Row) -> Job:
    job = Job(*row)  # selected as _COLUMNS: the fields in order (by name is 6x slower)
    job.status = JobStatus(job.status)
    job.slurml, job.expired, job.pulled = bool(job.slurml), bool(job.expired), bool(job.pulled)
    return job


def _values(statuses: Iterable[JobStatus]) -> list[str]:
    return sorted(status.value for status in statuses)


class JobStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        # every job's counts, and the commit they were read after: no commit, no change
        self._counted: tuple[int, dict[str, int]] | None = None
        self._oldest: tuple[int, float | None] | None = None

    def query(self, sql: str, params: Iterable[object] = ()) -> list[Job]:
        """Jobs `WHERE ...` (`sql` follows FROM jobs)."""
        rows = self._db.rows(f"SELECT {_COLUMNS} FROM jobs {sql}", params)
        return [_row_to_job(row) for row in rows]

    @staticmethod
    def reread(db: sqlite3.Connection, job_id: str) -> Job:
        """The job as stored now, inside the caller's transaction."""
        row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row)

    def insert(self, job: Job) -> Job:
        values = [getattr(job, name) for name in _INSERTED]
        values[_INSERTED.index("status")] = job.status.value
        try:
            with self._db.tx() as db:
                cursor = db.execute(
                    f"INSERT INTO jobs ({', '.join(_INSERTED)}) VALUES ({marks(values)})", values
                )
        except sqlite3.IntegrityError:
            raise IdTaken(job.id) from None
        job.seq = cursor.lastrowid or 0
        return job

    def get(self, job_id: str) -> Job | None:
        jobs = self.query("WHERE id = ?", (job_id,))
        return jobs[0] if jobs else None

    def get_by_seq(self, seq: int) -> Job | None:
        jobs = self.query("WHERE seq = ?", (seq,))
        return jobs[0] if jobs else None

    def exists(self, job_id: str) -> bool:
        return bool(self._db.rows("SELECT 1 FROM jobs WHERE id = ?", (job_id,)))

    def with_status(self, status: JobStatus) -> list[Job]:
        return self.query("WHERE status = ? AND expired = 0 ORDER BY seq", (status.value,))

    def counts(self, owner: int | None = None) -> dict[str, int]:
        """Kept jobs by status: every job's, or with `owner` only that user's. Every job's
        are read again only after a commit (a scan of the table: /health asks often)."""
        commits = self._db.commits
        if owner is None and self._counted is not None and self._counted[0] == commits:
            return dict(self._counted[1])
        mine, params = ("AND user_id = ?", (owner,)) if owner is not None else ("", ())
        rows = self._db.rows(
            f"SELECT status, COUNT(*) FROM jobs WHERE expired = 0 {mine} GROUP BY status", params
        )
        counts = {status.value: 0 for status in JobStatus} | {row[0]: row[1] for row in rows}
        if owner is None:
            self._counted = (commits, dict(counts))
        return counts

    def oldest_queued(self) -> float | None:
        """When the job that has waited longest, here or for Slurm, was created; read again
        only after a commit, as counts are."""
        commits = self._db.commits
        if self._oldest is None or self._oldest[0] != commits:
            rows = self._db.rows(
                "SELECT created_at FROM jobs WHERE status = ? ORDER BY seq LIMIT 1",
                (JobStatus.QUEUED.value,),
            )
            self._oldest = (commits, rows[0][0] if rows else None)
        return self._oldest[1]

    def claim(self, job_id: str) -> Job | None:
        """Move a queued job to RUNNING as a new attempt, and make it its user's latest turn
        in its service, in one commit; None if it is no longer queued."""
        now = time.time()
        with self._db.tx() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, started_at = ?, updated_at = ?,"
                " attempts = attempts + 1, pgid = NULL, pgid_start = NULL, message = ''"
                " WHERE id = ? AND status = ?",
                (JobStatus.RUNNING.value, now, now, job_id, JobStatus.QUEUED.value),
            )
            if not cursor.rowcount:
                return None
            job = self.reread(db, job_id)
            Turns.serve(db, job.service, job.user_key)
            return job

    def unfinished_by_user(self) -> list[tuple[str, int, str, int]]:
        """(service, user key, status, count) of the queued and running jobs."""
        statuses = _values(UNFINISHED)
        rows = self._db.rows(
            "SELECT service, COALESCE(user_id, -1), status, COUNT(*) FROM jobs"
            f" WHERE expired = 0 AND status IN ({marks(statuses)})"
            " GROUP BY service, COALESCE(user_id, -1), status",
            statuses,
        )
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    def newest(
        self,
        status: JobStatus | None,
        limit: int,
        before: int | None,
        owner: int | None = None,
        service: str | None = None,
        after: int | None = None,
    ) -> list[Job]:
        """Jobs newest first, from below `before` (an IntID), with `owner` only that user's,
        with `service` only that service's: one index range, so the cost follows `limit`,
        not how many jobs are stored. With `after`, the `limit` oldest above that IntID
        (the page before this one), still newest first."""
        where, params = ["expired = 0"], list[object]()
        if owner is not None:
            where.append("user_id = ?")
            params.append(owner)
        if service is not None:
            where.append("service = ?")
            params.append(service)
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        if after is not None:
            where.append("seq > ?")
            params.append(after)
        order = "ASC" if after is not None else "DESC"
        sql = f"WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?"
        found = self.query(sql, (*params, limit))
        return found[::-1] if after is not None else found

    def runs_of(self, name: str, limit: int, owner: int | None = None) -> list[Job]:
        """A schedule's runs, newest first (an index, not a scan); with `owner` only that
        user's (a name freed by a delete may have served someone else)."""
        if owner is None:
            return self.query("WHERE schedule = ? ORDER BY seq DESC LIMIT ?", (name, limit))
        return self.query(
            "WHERE schedule = ? AND user_id = ? ORDER BY seq DESC LIMIT ?", (name, owner, limit)
        )

    def insert_skipped(
        self, job_id: str, schedule: str, message: str, user_id: int | None = None
    ) -> Job:
        """A run the concurrency policy did not start: recorded as a SKIPPED job of the
        schedule's user."""
        now = time.time()
        job = Job(
            job_id,
            JobStatus.SKIPPED,
            message=message,
            created_at=now,
            updated_at=now,
            finished_at=now,
            schedule=schedule,
            user_id=user_id,
        )
        return self.insert(job)

    def callback_auth(self, job_id: str) -> str | None:
        """A job's callback auth, even after retention removed it (the row stays)."""
        rows = self._db.rows("SELECT callback_auth FROM jobs WHERE id = ?", (job_id,))
        return rows[0][0] if rows else None

    def queued_local(self) -> list[Job]:
        """Every queued job that runs here, oldest first: read once, at start."""
        return self.query(
            "WHERE status = ? AND slurml = 0 AND pulled = 0 ORDER BY seq",
            (JobStatus.QUEUED.value,),
        )

    def retry(self, job_id: str, due_at: float, message: str) -> Job | None:
        """An unfinished job's attempt failed: queue the next attempt, due at `due_at` (for
        Slurm, not yet submitted); None if another change won."""
        now = time.time()
        statuses = _values(UNFINISHED)
        with self._db.tx() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, attempt = attempt + 1, attempts = 0, due_at = ?,"
                " message = ?, exit_code = NULL, started_at = NULL, pgid = NULL,"
                " pgid_start = NULL, slurm_id = 0, lease = NULL, updated_at = ?"
                f" WHERE id = ? AND status IN ({marks(statuses)})",
                (JobStatus.QUEUED.value, due_at, message, now, job_id, *statuses),
            )
            return self.reread(db, job_id) if cursor.rowcount else None

    def set_process(self, job_id: str, pgid: int, start: int | None) -> None:
        with self._db.tx() as db:
            db.execute(
                "UPDATE jobs SET pgid = ?, pgid_start = ? WHERE id = ?", (pgid, start, job_id)
            )

    def transition(
        self,
        job_id: str,
        to: JobStatus,
        expect: Collection[JobStatus],
        message: str,
        exit_code: int | None = None,
    ) -> Job | None:
        """Change a job's state only from an expected one; None when another change won."""
        now = time.time()
        sources = _values(expect)
        finished = now if to.terminal else None
        started = now if to is JobStatus.RUNNING else None
        with self._db.tx() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, message = ?, exit_code = ?, finished_at = ?,"
                " started_at = COALESCE(?, started_at), updated_at = ?"
                f" WHERE id = ? AND status IN ({marks(sources)})",
                (to.value, message, exit_code, finished, started, now, job_id, *sources),
            )
            if cursor.rowcount == 0:
                return None
            job = self.reread(db, job_id)
            if to.terminal and job.callback_url:  # owed in the same commit as the end
                Outbox.owe(db, job_id, job.callback_url, now)
        return job

    def set_slurm_id(self, job_id: str, slurm_id: int, message: str) -> None:
        with self._db.tx() as db:
            db.execute(
                "UPDATE jobs SET slurm_id = ?, message = ?, updated_at = ? WHERE id = ?",
                (slurm_id, message, time.time(), job_id),
            )

    def set_message(self, job_id: str, message: str) -> None:
        """A new Message for a job that stays in its state (e.g. Slurm's pending reason)."""
        with self._db.tx() as db:
            db.execute(
                "UPDATE jobs SET message = ?, updated_at = ? WHERE id = ? AND message != ?",
                (message, time.time(), job_id, message),
            )

    def delete(self, job_id: str) -> None:
        """Forget a job that was never accepted (its submission to Slurm failed)."""
        with self._db.tx() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def unfinished_slurm(self) -> list[Job]:
        statuses = _values(UNFINISHED)
        return self.query(
            f"WHERE slurml = 1 AND status IN ({marks(statuses)}) AND expired = 0 ORDER BY seq",
            statuses,
        )

    def expire_finished_before(
        self, cutoff: float, services: Collection[str] = (), *, other_services: bool = False
    ) -> list[str]:
        """Turn finished jobs older than `cutoff` into tombstones; their files go next. Only
        those of `services`, or with `other_services`, those of every service but those."""
        statuses = _values(TERMINAL)
        names = sorted(services)
        which = f"service {'NOT ' if other_services else ''}IN ({marks(names)})"
        with self._db.tx() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE expired = 0 AND finished_at < ?"
                f" AND status IN ({marks(statuses)}) AND {which}",
                (cutoff, *statuses, *names),
            ).fetchall()
            db.executemany("UPDATE jobs SET expired = 1 WHERE id = ?", [(row[0],) for row in rows])
        return [row[0] for row in rows]

    def live_ids(self) -> set[str]:
        """IDs whose files should exist on disk."""
        return {row[0] for row in self._db.rows("SELECT id FROM jobs WHERE expired = 0")}
