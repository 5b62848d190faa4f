"""Recurring jobs' definitions: one row a schedule, its settings kept as JSON. Their runs are
ordinary jobs (JobStore), so deleting a schedule leaves them."""

from __future__ import annotations

import dataclasses
import sqlite3

from jobd.models import Schedule
from jobd.store.sqlite import Database, marks

_FIELDS = tuple(field.name for field in dataclasses.fields(Schedule))
_COLUMNS = ", ".join(_FIELDS)


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

    def insert(self, schedule: Schedule) -> bool:
        """False if the name is taken."""
        try:
            with self._db.tx() as db:
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

    def set_last_fire(self, name: str, slot: float) -> None:
        with self._db.tx() as db:
            db.execute("UPDATE schedules SET last_fire = ? WHERE name = ?", (slot, name))

    def delete(self, name: str) -> None:
        """The schedule goes; its runs stay jobs like any other."""
        with self._db.tx() as db:
            db.execute("DELETE FROM schedules WHERE name = ?", (name,))
