"""The one SQLite connection every store class shares: opened and checked whole, migrated, and
written only through `tx()`, under one lock, so a change that spans tables is one commit."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from jobd.errors import DataDirUnusable
from jobd.store.migrations import MIGRATIONS, SCHEMA_VERSION


def marks(values: Collection[object]) -> str:
    """`?, ?, ?`: one placeholder per value."""
    return ", ".join("?" * len(values))


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


class Database:
    """One connection behind one lock: SQLite serialises writers anyway, and this keeps it simple.

    WAL with synchronous=NORMAL: a committed change survives the daemon being killed (-9);
    only a power cut can lose the last few commits.
    """

    def __init__(self, path: Path) -> None:
        """Open the database, checked whole and for writing, so a bad one stops the start
        (with the files SQLite made for it removed again) rather than the first upload."""
        self._lock = threading.Lock()
        self.commits = 0  # write transactions committed since start (jobd_store_commits)
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
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back itself (SQLITE_FULL)
                    self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
                self.commits += 1
            except BaseException:
                # a COMMIT that fails (a full disk) may leave the transaction open: the next
                # BEGIN would fail for ever after the space is back
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def rows(self, sql: str, params: Iterable[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()
