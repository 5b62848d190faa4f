"""The data dir: SQLite (one connection, one lock, one transaction helper; one class per table
it keeps) and the files beside it. Imports only the shared modules (errors, models, config).

`Store` opens the database once and hands each aggregate the same connection."""

from __future__ import annotations

from pathlib import Path

from jobd.store.jobs import JobStore
from jobd.store.outbox import Outbox
from jobd.store.pulls import PullStore
from jobd.store.queues import QueueStore
from jobd.store.schedules import ScheduleStore
from jobd.store.sqlite import Database
from jobd.store.turns import Turns


class Store:
    """Jobs, schedules, the callback outbox, turns, Ocypod's queues and the pull services'
    jobs on them, over one `Database`."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path)
        self.jobs = JobStore(self._db)
        self.schedules = ScheduleStore(self._db)
        self.outbox = Outbox(self._db)
        self.turns = Turns(self._db)
        self.queues = QueueStore(self._db)
        self.pulls = PullStore(self._db, self.jobs)

    def commits(self) -> int:
        """Write transactions committed since start: what a job costs the store."""
        return self._db.commits

    def close(self) -> None:
        self._db.close()
