"""The SQLite job store: every SQL statement of jobd lives here."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from jobd.errors import IdTaken
from jobd.models import Job, JobStatus

#: Each step takes the schema from its index to the next version; a new jobd migrates old data.
MIGRATIONS = (
    """
CREATE TABLE IF NOT EXISTS jobs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    status      TEXT    NOT NULL,
    message     TEXT    NOT NULL DEFAULT '',
    exit_code   INTEGER,
    slurml      INTEGER NOT NULL DEFAULT 0,
    slurm_id    INTEGER NOT NULL DEFAULT 0,
    timeout     REAL,
    created_at  REAL    NOT NULL,
    started_at  REAL,
    finished_at REAL,
    updated_at  REAL    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    pgid        INTEGER,
    pgid_start  INTEGER,
    expired     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
""",
    """
ALTER TABLE jobs ADD COLUMN callback_url TEXT;
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    created_at REAL    NOT NULL,
    next_at    REAL    NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT    NOT NULL DEFAULT '',
    state      TEXT    NOT NULL DEFAULT 'pending'  -- pending, delivered, abandoned
);
CREATE INDEX outbox_due ON outbox (state, next_at);
""",
)
SCHEMA_VERSION = len(MIGRATIONS)
_COLUMNS = (
    "seq, id, status, message, exit_code, slurml, slurm_id, timeout, created_at, started_at,"
    " finished_at, updated_at, attempts, pgid, pgid_start, expired, callback_url"
)


def _row_to_job(row: tuple) -> Job:
    (
        seq,
        job_id,
        status,
        message,
        exit_code,
        slurml,
        slurm_id,
        timeout,
        created_at,
        started_at,
        finished_at,
        updated_at,
        attempts,
        pgid,
        pgid_start,
        expired,
        callback_url,
    ) = row
    return Job(
        id=job_id,
        status=JobStatus(status),
        seq=seq,
        message=message,
        exit_code=exit_code,
        slurml=bool(slurml),
        slurm_id=slurm_id,
        timeout=timeout,
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        updated_at=updated_at,
        attempts=attempts,
        pgid=pgid,
        pgid_start=pgid_start,
        expired=bool(expired),
        callback_url=callback_url,
    )


class Store:
    """One connection behind one lock: SQLite serialises writers anyway, and this keeps it simple.

    WAL with synchronous=NORMAL: a committed job survives the daemon being killed (-9);
    only a power cut can lose the last few commits.
    """

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{path} was written by a newer jobd (schema {version}); upgrade jobd"
            )
        for step in range(version, SCHEMA_VERSION):
            self._db.executescript(
                f"BEGIN; {MIGRATIONS[step]}; PRAGMA user_version={step + 1}; COMMIT;"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Iterable[object] = ()) -> list[Job]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM jobs {sql}", tuple(params)).fetchall()
        return [_row_to_job(row) for row in rows]

    def insert(self, job: Job) -> Job:
        try:
            with self._tx() as db:
                cursor = db.execute(
                    "INSERT INTO jobs (id, status, message, slurml, timeout, created_at,"
                    " updated_at, callback_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.id,
                        job.status.value,
                        job.message,
                        job.slurml,
                        job.timeout,
                        job.created_at,
                        job.updated_at,
                        job.callback_url,
                    ),
                )
        except sqlite3.IntegrityError:
            raise IdTaken(job.id) from None
        job.seq = cursor.lastrowid or 0
        return job

    def get(self, job_id: str) -> Job | None:
        jobs = self._query("WHERE id = ?", (job_id,))
        return jobs[0] if jobs else None

    def get_by_seq(self, seq: int) -> Job | None:
        jobs = self._query("WHERE seq = ?", (seq,))
        return jobs[0] if jobs else None

    def exists(self, job_id: str) -> bool:
        with self._lock:
            return (
                self._db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone()
                is not None
            )

    def with_status(self, status: JobStatus) -> list[Job]:
        return self._query("WHERE status = ? AND expired = 0 ORDER BY seq", (status.value,))

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT status, COUNT(*) FROM jobs WHERE expired = 0 GROUP BY status"
            ).fetchall()
        return {status.value: 0 for status in JobStatus} | dict(rows)

    def claim_next_local(self) -> Job | None:
        """Move the oldest queued local job to RUNNING; the one place a job is started."""
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "SELECT seq FROM jobs WHERE status = 'QUEUED' AND slurml = 0 ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'RUNNING', started_at = ?, updated_at = ?,"
                " attempts = attempts + 1, pgid = NULL, pgid_start = NULL, message = ''"
                " WHERE seq = ?",
                (now, now, row[0]),
            )
            found = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE seq = ?", row).fetchone()
        return _row_to_job(found)

    def set_process(self, job_id: str, pgid: int, start: int | None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET pgid = ?, pgid_start = ? WHERE id = ?", (pgid, start, job_id)
            )

    def transition(
        self,
        job_id: str,
        to: JobStatus,
        allowed_from: Iterable[JobStatus],
        message: str,
        exit_code: int | None = None,
    ) -> Job | None:
        """Change a job's state only from an allowed one; None when another change won the race."""
        now = time.time()
        sources = [status.value for status in allowed_from]
        finished = now if to.terminal else None
        started = now if to is JobStatus.RUNNING else None
        with self._tx() as db:
            cursor = db.execute(
                f"UPDATE jobs SET status = ?, message = ?, exit_code = ?, finished_at = ?,"
                f" started_at = COALESCE(?, started_at), updated_at = ?"
                f" WHERE id = ? AND status IN ({','.join('?' * len(sources))})",
                (to.value, message, exit_code, finished, started, now, job_id, *sources),
            )
            if cursor.rowcount == 0:
                return None
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            job = _row_to_job(row)
            if to.terminal and job.callback_url:  # owed in the same commit as the end
                db.execute(
                    "INSERT INTO outbox (job_id, url, created_at, next_at) VALUES (?, ?, ?, ?)",
                    (job_id, job.callback_url, now, now),
                )
        return job

    def set_slurm_id(self, job_id: str, slurm_id: int, message: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET slurm_id = ?, message = ?, updated_at = ? WHERE id = ?",
                (slurm_id, message, time.time(), job_id),
            )

    def set_message(self, job_id: str, message: str) -> None:
        """A new Message for a job that stays in its state (e.g. Slurm's pending reason)."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET message = ?, updated_at = ? WHERE id = ? AND message != ?",
                (message, time.time(), job_id, message),
            )

    def delete(self, job_id: str) -> None:
        """Forget a job that was never accepted (its submission to Slurm failed)."""
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def unfinished_slurm(self) -> list[Job]:
        return self._query(
            "WHERE slurml = 1 AND status IN ('QUEUED', 'RUNNING') AND expired = 0 ORDER BY seq"
        )

    def due_callbacks(self, now: float) -> list[tuple[int, str, str, float, int]]:
        """(id, job_id, url, created_at, attempts) of deliveries due by `now`."""
        with self._lock:
            return self._db.execute(
                "SELECT id, job_id, url, created_at, attempts FROM outbox"
                " WHERE state = 'pending' AND next_at <= ? ORDER BY next_at",
                (now,),
            ).fetchall()

    def next_callback_at(self) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_at) FROM outbox WHERE state = 'pending'"
            ).fetchone()
        return row[0]

    def callback_tried(self, delivery: int, state: str, next_at: float, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET state = ?, next_at = ?, attempts = attempts + 1,"
                " last_error = ? WHERE id = ?",
                (state, next_at, error, delivery),
            )

    def expire_finished_before(self, cutoff: float) -> list[str]:
        """Turn finished jobs older than `cutoff` into tombstones; their files go next."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE expired = 0 AND finished_at < ?"
                " AND status IN ('SUCCESS', 'FAILED', 'CANCELLED')",
                (cutoff,),
            ).fetchall()
            db.executemany("UPDATE jobs SET expired = 1 WHERE id = ?", rows)
        return [row[0] for row in rows]

    def live_ids(self) -> set[str]:
        """IDs whose files should exist on disk."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM jobs WHERE expired = 0").fetchall()
        return {row[0] for row in rows}
