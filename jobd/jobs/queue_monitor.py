"""The loop that keeps Ocypod's promises over time: running jobs past their time-out or a
missed heartbeat become timed_out, failed ones go back to their queue after their retry delay,
ended ones go `expires_after` later. It sleeps until the soonest due time in the store (an
index away) and is woken when a sooner one is made, so each is seen within moments of it."""

from __future__ import annotations

import threading
from collections.abc import Callable

from jobd.errors import is_full
from jobd.jobs.queues import on_due, orphaned, rebased
from jobd.loop import Loop
from jobd.models import QueueJob, QueueStatus
from jobd.store.queues import QueueGone, QueueStore

#: Jobs handled per round (a round is one transaction each); more are due: another round.
ROUND = 500


class QueueMonitor(Loop):
    thread_name = "queues"
    stop_wait = 10.0

    def __init__(
        self, store: QueueStore, timed_out: Callable[[QueueJob], None] = lambda job: None
    ) -> None:
        super().__init__()
        self._store = store
        self._timed_out = timed_out  # told of each job it timed out (a pull run is lost)
        self._wake_at: float | None = None
        self._lock = threading.Lock()
        self._rebased = False

    def note_due(self, at: float) -> None:
        """A job is due at `at`: wake sooner if the loop sleeps past it."""
        with self._lock:
            if self._wake_at is not None and at >= self._wake_at:
                return
            self._wake_at = at
        self.kick()

    def tick(self, now: float) -> float | None:
        if not self._rebased:
            self._rebase(now)
        with self._lock:
            self._wake_at = None  # a due time noted from here on kicks the next round
        due = self._store.due(now, ROUND)
        for job_id in due:
            self._one(job_id, now)
        if len(due) == ROUND:
            return 0.0
        soonest = self._store.next_due()
        if soonest is None:
            return None
        with self._lock:
            if self._wake_at is None or soonest < self._wake_at:
                self._wake_at = soonest
        return max(0.0, soonest - self.clock())

    def _one(self, job_id: int, now: float) -> None:
        try:
            try:
                changed = self._store.change(job_id, lambda job: on_due(job, now))
                if changed is not None and changed.status is QueueStatus.TIMED_OUT:
                    self._timed_out(changed)
            except QueueGone:
                self._store.change(job_id, lambda job: orphaned(job, now))
        except Exception as exc:  # one bad row never holds up the others
            if is_full(exc):
                raise  # not the row's fault: the round is tried again
            self.set_aside(f"queue job {job_id}", f"{exc}; it is no longer timed out or expired")
            self._store.forget_due(job_id)

    def _rebase(self, now: float) -> None:
        """After a start, missed heartbeats count from now: a worker that kept beating while
        jobd was down keeps its job."""
        after = 0
        while ids := self._store.running(after, ROUND):
            for job_id in ids:
                self._store.change(job_id, lambda job: rebased(job, now))
            after = ids[-1]
        self._rebased = True
