"""Recurring jobs' definitions: one row a schedule, its settings kept as JSON. Their runs are
ordinary jobs (JobStore), so deleting a schedule leaves them; the one query of them that only
the schedules loop asks (which runs are unfinished) lives here."""

from __future__ import annotations

import dataclasses
import sqlite3

from jobd.models import UNFINISHED, Schedule
from jobd.store.sqlite import Database, marks

_FIELDS = tuple(field.name for field in dataclasses.fields(Schedule))
_COLUMNS = ", ".join(_FIELDS)


class Full(Exception):
    """There are as many schedules as this jobd keeps (--max-schedules)."""


def _schedule(row: sqlite3.Row) -> Schedule:
    values = {name: row[name] for name in _FIELDS}
    values["enabled"] = bool(values["enabled"])
    return Schedule(**values)


class ScheduleStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self, owner: int | None = None) -> list[Schedule]:
        """Every schedule, or with `owner` only that user's."""
        where, params = ("WHERE user_id = ?", (owner,)) if owner is not None else ("", ())
        rows = self._db.rows(f"SELECT {_COLUMNS} FROM schedules {where} ORDER BY name", params)
        return [_schedule(row) for row in rows]

    def get(self, name: str) -> Schedule | None:
        rows = self._db.rows(f"SELECT {_COLUMNS} FROM schedules WHERE name = ?", (name,))
        return _schedule(rows[0]) if rows else None

    def count(self) -> int:
        return int(self._db.rows("SELECT COUNT(*) FROM schedules")[0][0])

    def insert(self, schedule: Schedule, most: int | None = None) -> bool:
        """False if the name is taken; Full if there are `most` schedules already (counted in
        the same transaction, so two racing creates cannot both pass)."""
        try:
            with self._db.tx() as db:
                if most is not None:
                    (count,) = db.execute("SELECT COUNT(*) FROM schedules").fetchone()
                    if count >= most:
                        raise Full(f"{count} schedules")
                db.execute(
                    f"INSERT INTO schedules ({_COLUMNS}) VALUES ({marks(_FIELDS)})",
                    dataclasses.astuple(schedule),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def update(self, schedule: Schedule) -> None:
        with self._db.tx() as db:
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

    def set_last_fire(self, name: str, slot: float, created_at: float) -> None:
        """Only for the schedule the loop read: one deleted and made again starts afresh."""
        with self._db.tx() as db:
            db.execute(
                "UPDATE schedules SET last_fire = ? WHERE name = ? AND created_at = ?",
                (slot, name, created_at),
            )

    def disable(self, name: str, read_body: str, body: str, now: float) -> bool:
        """Disable a schedule with a new body, unless it changed since `read_body` was read
        (a fix that raced the loop wins); True if it did."""
        with self._db.tx() as db:
            cursor = db.execute(
                "UPDATE schedules SET enabled = 0, body = ?, updated_at = ?"
                " WHERE name = ? AND body = ?",
                (body, now, name, read_body),
            )
        return cursor.rowcount > 0

    def unfinished_runs(self, name: str, owner: int | None) -> list[tuple[str, str]]:
        """(ID, status) of every run of `name` not yet finished, newest first, however many
        finished or skipped runs came after them. `+schedule` keeps SQLite on the status
        index: unfinished jobs are few, a schedule's runs may be millions."""
        statuses = sorted(status.value for status in UNFINISHED)
        where = f"+schedule = ? AND status IN ({marks(statuses)})"
        params: list[object] = [name, *statuses]
        if owner is not None:
            where += " AND user_id = ?"
            params.append(owner)
        rows = self._db.rows(f"SELECT id, status FROM jobs WHERE {where} ORDER BY seq DESC", params)
        return [(row[0], row[1]) for row in rows]

    def delete(self, name: str) -> None:
        """The schedule goes; its runs stay jobs like any other."""
        with self._db.tx() as db:
            db.execute("DELETE FROM schedules WHERE name = ?", (name,))
