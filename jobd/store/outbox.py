"""Callbacks owed: a delivery is written in the same commit as the end of its job (`owe`), so
a crash between the two can neither lose a callback nor send one for a job that did not end."""

from __future__ import annotations

import dataclasses
import sqlite3

from jobd.models import Delivery, DeliveryState
from jobd.store.sqlite import Database

_FIELDS = tuple(field.name for field in dataclasses.fields(Delivery))


class Outbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    def owe(db: sqlite3.Connection, job_id: str, url: str, now: float) -> None:
        """Inside the transaction that ends the job."""
        db.execute(
            "INSERT INTO outbox (job_id, url, created_at, next_at) VALUES (?, ?, ?, ?)",
            (job_id, url, now, now),
        )

    def due(self, now: float) -> list[Delivery]:
        rows = self._db.rows(
            f"SELECT {', '.join(_FIELDS)} FROM outbox"
            " WHERE state = ? AND next_at <= ? ORDER BY next_at",
            (DeliveryState.PENDING.value, now),
        )
        return [Delivery(**{name: row[name] for name in _FIELDS}) for row in rows]

    def next_at(self) -> float | None:
        rows = self._db.rows(
            "SELECT MIN(next_at) FROM outbox WHERE state = ?", (DeliveryState.PENDING.value,)
        )
        return rows[0][0]

    def tried(self, delivery: Delivery, state: DeliveryState, next_at: float, error: str) -> None:
        with self._db.tx() as db:
            db.execute(
                "UPDATE outbox SET state = ?, next_at = ?, attempts = attempts + 1,"
                " last_error = ? WHERE id = ?",
                (state.value, next_at, error, delivery.id),
            )
