"""The one place an accepted job changes state: claim, requeue, finish.

Every finisher (the local runner, the Slurm runner, recovery after a restart) ends a job
through `finish`, which stores the result zip first and then the final state, so nobody
ever sees a finished job without its result. Whoever waits for a job's end is woken here,
and the metrics and callbacks hear of it here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection

from jobd.archive import zip_directory
from jobd.executors.runsh import STDERR, STDOUT
from jobd.layout import Layout
from jobd.metrics import Metrics
from jobd.models import Job, JobStatus
from jobd.store import Store

log = logging.getLogger("jobd")


class Lifecycle:
    def __init__(
        self, store: Store, layout: Layout, metrics: Metrics, callback_owed: Callable[[], None]
    ) -> None:
        self._store = store
        self._layout = layout
        self._metrics = metrics
        self._callback_owed = callback_owed
        # held across a state change and the check before a wait, so no end goes unseen
        self._lock = threading.Lock()
        self._ended: dict[str, threading.Event] = {}

    def claim(self, job_id: str) -> Job | None:
        """QUEUED -> RUNNING as a new attempt; None if the job is no longer queued."""
        job = self._store.claim(job_id)
        if job is not None:
            log.info("job %s: RUNNING", job_id)
        return job

    def record_process(self, job_id: str, pgid: int, start_time: int | None) -> None:
        """The running job's process group, so a restart can end what is left of it."""
        self._store.set_process(job_id, pgid, start_time)

    def running(self, job_id: str, message: str, *, expect: Collection[JobStatus]) -> Job | None:
        """A job someone else started (Slurm) is now running."""
        return self._change(job_id, JobStatus.RUNNING, message, expect, None)

    def requeue(self, job_id: str, message: str, *, expect: Collection[JobStatus]) -> Job | None:
        """Back to QUEUED, to run again from its input."""
        return self._change(job_id, JobStatus.QUEUED, message, expect, None)

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        message: str,
        *,
        expect: Collection[JobStatus],
        exit_code: int | None = None,
    ) -> Job | None:
        """Zip the job's directory as its result, then end it; None if another change won."""
        assert status.terminal, status
        self.zip_result(job_id)
        return self._change(job_id, status, message, expect, exit_code)

    def fail(self, job_id: str, message: str, *, expect: Collection[JobStatus]) -> Job | None:
        """End a job FAILED because jobd itself failed: its result is zipped if it can be."""
        try:
            self.zip_result(job_id)
        except OSError:
            log.exception("job %s: could not zip its directory", job_id)
        return self._change(job_id, JobStatus.FAILED, message, expect, None)

    def zip_result(self, job_id: str) -> None:
        workdir = self._layout.work_dir(job_id)
        workdir.mkdir(parents=True, exist_ok=True)  # gone only if a re-run's unpacking failed
        for name in (STDOUT, STDERR):  # every result has both, even if run.sh never ran
            open(workdir / name, "ab").close()
        zip_directory(workdir, self._layout.result_zip(job_id))

    def wait_for_end(self, job_id: str, timeout: float) -> None:
        """Return once the job has ended, or after `timeout` seconds."""
        with self._lock:
            job = self._store.get(job_id)
            if job is None or job.status.terminal:
                return
            ended = self._ended.setdefault(job_id, threading.Event())
        ended.wait(timeout)

    def _change(
        self,
        job_id: str,
        to: JobStatus,
        message: str,
        expect: Collection[JobStatus],
        exit_code: int | None,
    ) -> Job | None:
        with self._lock:
            job = self._store.transition(job_id, to, expect, message, exit_code)
            if job is not None and to.terminal:
                ended = self._ended.pop(job_id, None)
                if ended is not None:
                    ended.set()
        if job is None:
            return None
        log.info("job %s: %s (%s)", job_id, to.value, message)
        if to.terminal:
            self._metrics.finished(job)
            if job.callback_url:
                self._callback_owed()
        return job
