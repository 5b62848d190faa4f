"""The SQLite job store: every SQL statement of jobd lives here."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from jobd.errors import DataDirUnusable, IdTaken
from jobd.models import (
    TERMINAL,
    UNFINISHED,
    Delivery,
    DeliveryState,
    Job,
    JobStatus,
    Schedule,
)

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
    """
ALTER TABLE jobs ADD COLUMN user_id INTEGER;
ALTER TABLE jobs ADD COLUMN service TEXT NOT NULL DEFAULT 'default';
CREATE TABLE turns (
    service  TEXT    NOT NULL,
    user_key INTEGER NOT NULL,  -- user_id, or -1 for jobs sent without one
    served   INTEGER NOT NULL,  -- when one of the user's jobs last started: a counter
    PRIMARY KEY (service, user_key)
);
""",
    """
ALTER TABLE jobs ADD COLUMN env TEXT NOT NULL DEFAULT '{}';
""",
    """
ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN retry_initial REAL NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN retry_max REAL NOT NULL DEFAULT 60;
ALTER TABLE jobs ADD COLUMN retry_multiplier REAL NOT NULL DEFAULT 2;
ALTER TABLE jobs ADD COLUMN due_at REAL;
ALTER TABLE jobs ADD COLUMN callback_auth TEXT;
""",
    """
ALTER TABLE jobs ADD COLUMN schedule TEXT;
CREATE INDEX jobs_by_schedule ON jobs (schedule, seq);
CREATE TABLE schedules (
    name       TEXT PRIMARY KEY,
    body       TEXT    NOT NULL,  -- JSON: when, zone, concurrency and the runs' settings
    enabled    INTEGER NOT NULL,
    last_fire  REAL    NOT NULL,  -- the slot it last fired for (at first: its creation)
    created_at REAL    NOT NULL,
    updated_at REAL    NOT NULL
);
""",
)
SCHEMA_VERSION = len(MIGRATIONS)
#: The job table's columns are the Job dataclass's fields, by name.
_FIELDS = tuple(field.name for field in dataclasses.fields(Job))
_COLUMNS = ", ".join(_FIELDS)
_DELIVERY_FIELDS = tuple(field.name for field in dataclasses.fields(Delivery))
_INSERTED = tuple(name for name in _FIELDS if name != "seq")  # seq is the store's to give


_SCHEDULE_FIELDS = tuple(field.name for field in dataclasses.fields(Schedule))
_SCHEDULE = ", ".join(_SCHEDULE_FIELDS)


def _schedule(row: sqlite3.Row) -> Schedule:
    values = {name: row[name] for name in _SCHEDULE_FIELDS}
    values["enabled"] = bool(values["enabled"])
    return Schedule(**values)


def _row_to_job(row: sqlite3.Row) -> Job:
    job = Job(**{name: row[name] for name in _FIELDS})
    job.status = JobStatus(job.status)
    job.slurml, job.expired = bool(job.slurml), bool(job.expired)
    return job


def _marks(values: Collection[object]) -> str:
    return ", ".join("?" * len(values))


def _values(statuses: Iterable[JobStatus]) -> list[str]:
    return sorted(status.value for status in statuses)


def _side_files(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def _unusable(path: Path, exc: sqlite3.Error) -> str:
    kind = getattr(exc, "sqlite_errorname", "")
    if kind == "SQLITE_READONLY":
        return f"{path} cannot be written ({exc}); make it writable or point --data-dir elsewhere"
    what = {
        "SQLITE_NOTADB": "is not a jobd database",
        "SQLITE_CANTOPEN": "cannot be opened as a database (is it a folder?)",
    }.get(kind, "is damaged")
    return (
        f"{path} {what} ({exc}); move it away (jobd then starts an empty one) or point"
        " --data-dir at another folder"
    )


class Store:
    """One connection behind one lock: SQLite serialises writers anyway, and this keeps it simple.

    WAL with synchronous=NORMAL: a committed job survives the daemon being killed (-9);
    only a power cut can lose the last few commits.
    """

    def __init__(self, path: Path) -> None:
        """Open the database, checked whole and for writing, so a bad one stops the start
        (with the files SQLite made for it removed again) rather than the first upload."""
        self._lock = threading.Lock()
        made = [side for side in _side_files(path) if not side.exists()]
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._open(path)
        except (sqlite3.Error, DataDirUnusable) as exc:
            if hasattr(self, "_db"):
                self._db.close()
            for side in made:
                side.unlink(missing_ok=True)
            if isinstance(exc, DataDirUnusable):
                raise
            raise DataDirUnusable(_unusable(path, exc)) from None

    def _open(self, path: Path) -> None:
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DataDirUnusable(
                f"{path} was written by a newer jobd (schema {version}); upgrade jobd"
            )
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("; ".join(problems))
        self._db.execute("BEGIN IMMEDIATE")  # can it be written? (a change, rolled back)
        try:
            self._db.execute(f"PRAGMA user_version={version}")
        finally:
            self._db.execute("ROLLBACK")
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

    def _rows(self, sql: str, params: Iterable[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def _query(self, sql: str, params: Iterable[object] = ()) -> list[Job]:
        rows = self._rows(f"SELECT {_COLUMNS} FROM jobs {sql}", params)
        return [_row_to_job(row) for row in rows]

    @staticmethod
    def _reread(db: sqlite3.Connection, job_id: str) -> Job:
        row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row)

    def insert(self, job: Job) -> Job:
        values = [getattr(job, name) for name in _INSERTED]
        values[_INSERTED.index("status")] = job.status.value
        try:
            with self._tx() as db:
                cursor = db.execute(
                    f"INSERT INTO jobs ({', '.join(_INSERTED)}) VALUES ({_marks(values)})", values
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
        return bool(self._rows("SELECT 1 FROM jobs WHERE id = ?", (job_id,)))

    def with_status(self, status: JobStatus) -> list[Job]:
        return self._query("WHERE status = ? AND expired = 0 ORDER BY seq", (status.value,))

    def counts(self) -> dict[str, int]:
        rows = self._rows("SELECT status, COUNT(*) FROM jobs WHERE expired = 0 GROUP BY status")
        return {status.value: 0 for status in JobStatus} | {row[0]: row[1] for row in rows}

    def oldest_queued(self) -> Job | None:
        """The job that has waited longest, here or for Slurm."""
        jobs = self._query("WHERE status = ? ORDER BY seq LIMIT 1", (JobStatus.QUEUED.value,))
        return jobs[0] if jobs else None

    def claim(self, job_id: str) -> Job | None:
        """Move a queued job to RUNNING as a new attempt, and make it its user's latest turn
        in its service, in one commit; None if it is no longer queued."""
        now = time.time()
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, started_at = ?, updated_at = ?,"
                " attempts = attempts + 1, pgid = NULL, pgid_start = NULL, message = ''"
                " WHERE id = ? AND status = ?",
                (JobStatus.RUNNING.value, now, now, job_id, JobStatus.QUEUED.value),
            )
            if not cursor.rowcount:
                return None
            job = self._reread(db, job_id)
            db.execute(
                "INSERT INTO turns (service, user_key, served)"
                " VALUES (?, ?, (SELECT COALESCE(MAX(served), 0) + 1 FROM turns))"
                " ON CONFLICT (service, user_key) DO UPDATE SET served = excluded.served",
                (job.service, job.user_key),
            )
            return job

    def unfinished_by_user(self) -> list[tuple[str, int, str, int]]:
        """(service, user key, status, count) of the queued and running jobs."""
        statuses = _values(UNFINISHED)
        rows = self._rows(
            "SELECT service, COALESCE(user_id, -1), status, COUNT(*) FROM jobs"
            f" WHERE expired = 0 AND status IN ({_marks(statuses)})"
            " GROUP BY service, COALESCE(user_id, -1), status",
            statuses,
        )
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    # -- schedules ------------------------------------------------------------------------------

    def schedules(self) -> list[Schedule]:
        return [
            _schedule(row) for row in self._rows(f"SELECT {_SCHEDULE} FROM schedules ORDER BY name")
        ]

    def get_schedule(self, name: str) -> Schedule | None:
        rows = self._rows(f"SELECT {_SCHEDULE} FROM schedules WHERE name = ?", (name,))
        return _schedule(rows[0]) if rows else None

    def insert_schedule(self, schedule: Schedule) -> bool:
        """False if the name is taken."""
        try:
            with self._tx() as db:
                db.execute(
                    f"INSERT INTO schedules ({_SCHEDULE}) VALUES (?, ?, ?, ?, ?, ?)",
                    dataclasses.astuple(schedule),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def update_schedule(self, schedule: Schedule) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE schedules SET body = ?, enabled = ?, last_fire = ?, updated_at = ?"
                " WHERE name = ?",
                (
                    schedule.body,
                    schedule.enabled,
                    schedule.last_fire,
                    schedule.updated_at,
                    schedule.name,
                ),
            )

    def set_last_fire(self, name: str, slot: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE schedules SET last_fire = ? WHERE name = ?", (slot, name))

    def delete_schedule(self, name: str) -> None:
        """The schedule goes; its runs stay jobs like any other."""
        with self._tx() as db:
            db.execute("DELETE FROM schedules WHERE name = ?", (name,))

    def newest(self, status: JobStatus | None, limit: int, before: int | None) -> list[Job]:
        """Jobs newest first, from below `before` (an IntID): one index range, so the cost
        follows `limit`, not how many jobs are stored."""
        where, params = ["expired = 0"], list[object]()
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        sql = f"WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"
        return self._query(sql, (*params, limit))

    def runs_of(self, name: str, limit: int) -> list[Job]:
        """A schedule's runs, newest first (an index, not a scan)."""
        return self._query("WHERE schedule = ? ORDER BY seq DESC LIMIT ?", (name, limit))

    def insert_skipped(self, job_id: str, schedule: str, message: str) -> Job:
        """A run the concurrency policy did not start: recorded as a SKIPPED job."""
        now = time.time()
        job = Job(
            job_id,
            JobStatus.SKIPPED,
            message=message,
            created_at=now,
            updated_at=now,
            finished_at=now,
            schedule=schedule,
        )
        return self.insert(job)

    def callback_auth(self, job_id: str) -> str | None:
        """A job's callback auth, even after retention removed it (the row stays)."""
        rows = self._rows("SELECT callback_auth FROM jobs WHERE id = ?", (job_id,))
        return rows[0][0] if rows else None

    def turns(self) -> dict[tuple[str, int], int]:
        """When each user was last served, by (service, user key): higher is more recent."""
        rows = self._rows("SELECT service, user_key, served FROM turns")
        return {(row[0], row[1]): row[2] for row in rows}

    def queued_local(self) -> list[Job]:
        """Every queued job that runs here, oldest first: read once, at start."""
        return self._query(
            "WHERE status = ? AND slurml = 0 ORDER BY seq", (JobStatus.QUEUED.value,)
        )

    def retry(self, job_id: str, due_at: float, message: str) -> Job | None:
        """An unfinished job's attempt failed: queue the next attempt, due at `due_at` (for
        Slurm, not yet submitted); None if another change won."""
        now = time.time()
        statuses = _values(UNFINISHED)
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, attempt = attempt + 1, attempts = 0, due_at = ?,"
                " message = ?, exit_code = NULL, started_at = NULL, pgid = NULL,"
                " pgid_start = NULL, slurm_id = 0, updated_at = ?"
                f" WHERE id = ? AND status IN ({_marks(statuses)})",
                (JobStatus.QUEUED.value, due_at, message, now, job_id, *statuses),
            )
            return self._reread(db, job_id) if cursor.rowcount else None

    def set_process(self, job_id: str, pgid: int, start: int | None) -> None:
        with self._tx() as db:
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
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, message = ?, exit_code = ?, finished_at = ?,"
                " started_at = COALESCE(?, started_at), updated_at = ?"
                f" WHERE id = ? AND status IN ({_marks(sources)})",
                (to.value, message, exit_code, finished, started, now, job_id, *sources),
            )
            if cursor.rowcount == 0:
                return None
            job = self._reread(db, job_id)
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
        statuses = _values(UNFINISHED)
        return self._query(
            f"WHERE slurml = 1 AND status IN ({_marks(statuses)}) AND expired = 0 ORDER BY seq",
            statuses,
        )

    def due_callbacks(self, now: float) -> list[Delivery]:
        rows = self._rows(
            f"SELECT {', '.join(_DELIVERY_FIELDS)} FROM outbox"
            " WHERE state = ? AND next_at <= ? ORDER BY next_at",
            (DeliveryState.PENDING.value, now),
        )
        return [Delivery(**{name: row[name] for name in _DELIVERY_FIELDS}) for row in rows]

    def next_callback_at(self) -> float | None:
        rows = self._rows(
            "SELECT MIN(next_at) FROM outbox WHERE state = ?", (DeliveryState.PENDING.value,)
        )
        return rows[0][0]

    def callback_tried(
        self, delivery: Delivery, state: DeliveryState, next_at: float, error: str
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET state = ?, next_at = ?, attempts = attempts + 1,"
                " last_error = ? WHERE id = ?",
                (state.value, next_at, error, delivery.id),
            )

    def expire_finished_before(
        self, cutoff: float, services: Collection[str] = (), *, other_services: bool = False
    ) -> list[str]:
        """Turn finished jobs older than `cutoff` into tombstones; their files go next. Only
        those of `services`, or with `other_services`, those of every service but those."""
        statuses = _values(TERMINAL)
        names = sorted(services)
        which = f"service {'NOT ' if other_services else ''}IN ({_marks(names)})"
        with self._tx() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE expired = 0 AND finished_at < ?"
                f" AND status IN ({_marks(statuses)}) AND {which}",
                (cutoff, *statuses, *names),
            ).fetchall()
            db.executemany("UPDATE jobs SET expired = 1 WHERE id = ?", [(row[0],) for row in rows])
        return [row[0] for row in rows]

    def live_ids(self) -> set[str]:
        """IDs whose files should exist on disk."""
        return {row[0] for row in self._rows("SELECT id FROM jobs WHERE expired = 0")}
