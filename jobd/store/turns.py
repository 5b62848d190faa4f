"""Whose turn is next: when each user of a service was last served, as a counter that grows
with every job started (no clock, so turns survive a clock jump)."""

from __future__ import annotations

import sqlite3

from jobd.store.sqlite import Database


class Turns:
    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    def serve(db: sqlite3.Connection, service: str, user_key: int) -> None:
        """Make this the user's latest turn, inside the transaction that starts their job."""
        db.execute(
            "INSERT INTO turns (service, user_key, served)"
            " VALUES (?, ?, (SELECT COALESCE(MAX(served), 0) + 1 FROM turns))"
            " ON CONFLICT (service, user_key) DO UPDATE SET served = excluded.served",
            (service, user_key),
        )

    def all(self) -> dict[tuple[str, int], int]:
        """When each user was last served, by (service, user key): higher is more recent."""
        rows = self._db.rows("SELECT service, user_key, served FROM turns")
        return {(row[0], row[1]): row[2] for row in rows}
