"""Retention: finished jobs are removed `--retention` after they finish (or their service's own
retention), leaving a tombstone."""

from __future__ import annotations

import logging

from jobd.config.services import Services
from jobd.loop import Loop
from jobd.store import Store
from jobd.store.layout import Layout

log = logging.getLogger("jobd")


class Retention(Loop):
    thread_name = "retention"

    def __init__(self, store: Store, layout: Layout, keep_for: float, services: Services) -> None:
        super().__init__()
        self._store = store
        self._layout = layout
        self.keep_for = keep_for
        #: services with a retention of their own, and theirs
        self._own = {
            name: settings.retention
            for name, settings in services.declared.items()
            if settings.retention is not None
        }
        #: a tenth of the shortest retention period, so a job outlives it by at most 10%
        shortest = min([keep_for, *self._own.values()])
        self.interval = min(max(shortest / 10, 0.2), 60.0)

    def tick(self, now: float) -> float:
        expired = self._store.jobs.expire_finished_before(
            now - self.keep_for, self._own, other_services=True
        )
        for name, keep_for in self._own.items():
            expired += self._store.jobs.expire_finished_before(now - keep_for, (name,))
        for job_id in expired:
            try:
                self._layout.remove_job(job_id)
            except ValueError as exc:  # a row no client could have made: its folder stays
                self.set_aside(f"job {job_id!r}", str(exc))
                continue
            log.info("job %s: removed after the retention period", job_id)
        return self.interval
