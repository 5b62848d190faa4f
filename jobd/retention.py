"""Retention: finished jobs are removed `--retention` after they finish, leaving a tombstone."""

from __future__ import annotations

import logging

from jobd.layout import Layout
from jobd.loop import Loop
from jobd.store import Store

log = logging.getLogger("jobd")


class Retention(Loop):
    thread_name = "retention"

    def __init__(self, store: Store, layout: Layout, keep_for: float) -> None:
        super().__init__()
        self._store = store
        self._layout = layout
        self.keep_for = keep_for
        #: a tenth of the retention period, so a job outlives it by at most 10%
        self.interval = min(max(keep_for / 10, 0.2), 60.0)

    def tick(self, now: float) -> float:
        for job_id in self._store.expire_finished_before(now - self.keep_for):
            self._layout.remove_job(job_id)
            log.info("job %s: removed after the retention period", job_id)
        return self.interval
