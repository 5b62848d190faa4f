"""The jobs of runner=pull services and the queue jobs that carry them to `jobd worker`s. A job
and its carrier (its `lease`) change in one commit, so a worker that takes the carrier takes
the job, and a carrier that is lost or handed back is replaced, never doubled.

A lease names the one run that may report: once the job has a new lease (its worker was lost),
a result sent under the old one finds no job and is refused."""

from __future__ import annotations

import time

from jobd.models import Job, JobStatus, QueueJob
from jobd.store.jobs import JobStore
from jobd.store.queues import QueueStore
from jobd.store.sqlite import Database, marks
from jobd.store.turns import Turns

_UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class PullStore:
    def __init__(self, db: Database, jobs: JobStore) -> None:
        self._db = db
        self._jobs = jobs

    def offer(self, job_id: str, carrier: QueueJob) -> Job | None:
        """Queue `carrier` for the workers as the lease of a QUEUED job that has none; the job
        as stored, or None if it has one, is no longer queued or the queue is gone."""
        try:
            with self._db.tx() as db:
                lease = QueueStore.insert(db, carrier)
                cursor = db.execute(
                    "UPDATE jobs SET lease = ? WHERE id = ? AND status = ? AND lease IS NULL",
                    (lease, job_id, JobStatus.QUEUED.value),
                )
                if lease is None or not cursor.rowcount:
                    raise _NotOffered  # the carrier goes too
                return JobStore.reread(db, job_id)
        except _NotOffered:
            return None

    def reoffer(self, lost: int, carrier: QueueJob, message: str, *, count_run: bool) -> Job | None:
        """The run under lease `lost` is over without a result (its worker was lost or handed
        it back): the job is QUEUED again under `carrier`, its attempt not used up. A run
        handed back does not count (`count_run`) towards the runs jobd's own faults may
        interrupt. None if the job no longer has that lease or has ended."""
        now = time.time()
        with self._db.tx() as db:
            row = db.execute(
                f"SELECT id FROM jobs WHERE lease = ? AND status IN ({marks(_UNFINISHED)})",
                (lost, *_UNFINISHED),
            ).fetchone()
            lease = QueueStore.insert(db, carrier) if row else None
            if lease is None:  # nothing inserted: nothing to roll back
                return None
            db.execute(
                "UPDATE jobs SET status = ?, lease = ?, message = ?, started_at = NULL,"
                " pgid = NULL, pgid_start = NULL, updated_at = ?,"
                " attempts = attempts - (? AND status = ?) WHERE id = ?",
                (
                    JobStatus.QUEUED.value,
                    lease,
                    message,
                    now,
                    not count_run,
                    JobStatus.RUNNING.value,
                    row[0],
                ),
            )
            return JobStore.reread(db, row[0])

    def claim(self, lease: int) -> Job | None:
        """A worker took the carrier `lease` (it is running): its job goes QUEUED -> RUNNING
        as a new run, its user served, in one commit; None if the job is not queued under
        that lease any more."""
        now = time.time()
        with self._db.tx() as db:
            running = db.execute(
                "SELECT 1 FROM qjobs WHERE id = ? AND status = 'running'", (lease,)
            ).fetchone()
            row = db.execute(
                "SELECT id FROM jobs WHERE lease = ? AND status = ?",
                (lease, JobStatus.QUEUED.value),
            ).fetchone()
            if not running or not row:
                return None
            db.execute(
                "UPDATE jobs SET status = ?, started_at = ?, updated_at = ?, message = '',"
                " attempts = attempts + 1, pgid = NULL, pgid_start = NULL WHERE id = ?",
                (JobStatus.RUNNING.value, now, now, row[0]),
            )
            job = JobStore.reread(db, row[0])
            Turns.serve(db, job.service, job.user_key)
            return job

    def by_lease(self, lease: int) -> Job | None:
        jobs = self._jobs.query("WHERE lease = ?", (lease,))
        return jobs[0] if jobs else None

    def unleased(self, most: int) -> list[Job]:
        """QUEUED pull jobs not yet offered to workers, soonest due first (an index)."""
        return self._jobs.query(
            "WHERE pulled = 1 AND lease IS NULL AND status = 'QUEUED' ORDER BY due_at LIMIT ?",
            (most,),
        )

    def unfinished(self) -> list[Job]:
        """Every queued or running pull job: read once, at start."""
        return self._jobs.query(
            f"WHERE pulled = 1 AND status IN ({marks(_UNFINISHED)}) ORDER BY seq", _UNFINISHED
        )


class _NotOffered(Exception):
    """Rolls an offer back: its job changed meanwhile."""
