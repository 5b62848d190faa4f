"""The one place an accepted job changes state: claim, requeue, finish.

Every finisher (the local runner, the Slurm runner, recovery after a restart) ends a job
through `finish`, which stores the result zip first and then the final state, so nobody
ever sees a finished job without its result. Whoever waits for a job's end is woken here,
and the metrics and callbacks hear of it here.

A state change is stored or retried until it is: a full disk or a failing store must never
leave a job RUNNING with nothing running it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import zipfile
from collections.abc import Callable, Collection

from jobd.errors import is_full
from jobd.formats.archive import zip_directory
from jobd.logs import Once
from jobd.metrics import Metrics
from jobd.models import Job, JobStatus, rfc3339
from jobd.run.executors.runsh import STDERR, STDOUT
from jobd.store import Store
from jobd.store.disk import Disk
from jobd.store.layout import Layout

log = logging.getLogger("jobd")
_once = Once(log)

#: Gaps between tries of a state change the store refused, doubling up to the last.
RETRY_FIRST, RETRY_LAST = 0.05, 5.0


class Lifecycle:
    def __init__(
        self,
        store: Store,
        layout: Layout,
        disk: Disk,
        metrics: Metrics,
        callback_owed: Callable[[], None],
    ) -> None:
        self._store = store
        self._layout = layout
        self._disk = disk
        self._metrics = metrics
        self._callback_owed = callback_owed
        #: while a state change waits for the store (a full disk): why, for /health
        self.store_problem: str | None = None
        # held across a state change and the check before a wait, so no end goes unseen
        self._lock = threading.Lock()
        self._ended: dict[str, threading.Event] = {}
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Give up retrying (what was not stored is settled by recovery at the next start)
        and wake everyone waiting for an end: they answer with what they have."""
        with self._lock:
            self._stopping.set()
            for ended in self._ended.values():
                ended.set()
            self._ended.clear()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def claim(self, job_id: str) -> Job | None:
        """QUEUED -> RUNNING as a new attempt; None if the job is no longer queued."""
        job = self._store.jobs.claim(job_id)
        if job is not None:
            log.info("job %s: RUNNING", job_id)
        return job

    def record_process(self, job_id: str, pgid: int, start_time: int | None) -> None:
        """The running job's process group, so a restart can end what is left of it."""
        self._store.jobs.set_process(job_id, pgid, start_time)

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
        """Zip the job's directory as its result, then end it; None if another change won.
        A result that cannot be stored ends the job FAILED, keeping what fits."""
        assert status.terminal, status
        try:
            self._zip_result(job_id)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            log.error("job %s: its result could not be stored: %s", job_id, reason)
            self._keep_logs(job_id)
            status, message = (
                JobStatus.FAILED,
                f"the result could not be stored: {reason}; {message}",
            )
        return self._change(job_id, status, message, expect, exit_code)

    def wait_for_end(self, job_id: str, timeout: float) -> None:
        """Return once the job has ended, or after `timeout` seconds."""
        with self._lock:
            job = self._store.jobs.get(job_id)
            if job is None or job.status.terminal or self._stopping.is_set():
                return
            ended = self._ended.setdefault(job_id, threading.Event())
        ended.wait(timeout)

    def _zip_result(self, job_id: str) -> None:
        """Written aside and renamed into place: a reader never sees half a zip, and one
        already reading keeps the zip it opened."""
        workdir = self._layout.work_dir(job_id)
        workdir.mkdir(parents=True, exist_ok=True)  # gone only if a re-run's unpacking failed
        for name in (STDOUT, STDERR):  # every result has both, even if run.sh never ran
            os.close(os.open(workdir / name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666))
        result = self._layout.result_zip(job_id)
        part = result.with_name(result.name + ".part")
        try:
            zip_directory(workdir, part)
            os.replace(part, result)
        finally:
            part.unlink(missing_ok=True)

    def _keep_logs(self, job_id: str) -> None:
        """The job's output alone, if that still fits; else no result file at all (it reads
        as an empty zip)."""
        workdir, result = self._layout.work_dir(job_id), self._layout.result_zip(job_id)
        try:
            with zipfile.ZipFile(result, "w", zipfile.ZIP_DEFLATED) as archive:
                for name in (STDOUT, STDERR):
                    if (workdir / name).is_file():
                        archive.write(workdir / name, name)
        except OSError:
            result.unlink(missing_ok=True)

    def retry(self, job: Job, how: str) -> Job | None:
        """A FAILED attempt with attempts left: its output kept as attempt-N.stdout and
        .stderr (the next attempts find them in their folder, so they reach the result), and
        the next attempt queued, due after the backoff; None if another change won."""
        due = time.time() + job.retry.delay(job.attempt)
        self._keep_attempt_output(job)
        message = (
            f"attempt {job.attempt} of {job.max_attempts}: {how};"
            f" attempt {job.attempt + 1} at {rfc3339(due)}"
        )
        return self._stored(
            job.id, JobStatus.QUEUED, message, lambda: self._store.jobs.retry(job.id, due, message)
        )

    def _keep_attempt_output(self, job: Job) -> None:
        workdir, kept = self._layout.work_dir(job.id), self._layout.attempts_dir(job.id)
        try:
            kept.mkdir(exist_ok=True)
            for name, suffix in ((STDOUT, "stdout"), (STDERR, "stderr")):
                if (workdir / name).is_file():
                    os.replace(workdir / name, kept / f"attempt-{job.attempt}.{suffix}")
        except OSError as exc:  # the retry matters more than its predecessor's logs
            log.warning("job %s: attempt %d's output not kept: %s", job.id, job.attempt, exc)

    def _change(
        self,
        job_id: str,
        to: JobStatus,
        message: str,
        expect: Collection[JobStatus],
        exit_code: int | None,
    ) -> Job | None:
        return self._stored(
            job_id,
            to,
            message,
            lambda: self._store.jobs.transition(job_id, to, expect, message, exit_code),
        )

    def _stored(
        self, job_id: str, to: JobStatus, message: str, apply: Callable[[], Job | None]
    ) -> Job | None:
        """Apply a state change to the store, trying again until it is stored."""
        delay = RETRY_FIRST
        while True:
            try:
                with self._lock:
                    job = apply()
                    if job is not None and to.terminal:
                        ended = self._ended.pop(job_id, None)
                        if ended is not None:
                            ended.set()
                break
            except sqlite3.Error as exc:
                if is_full(exc) and self._disk.release_ballast():
                    log.warning("the disk is full: gave the store the room jobd kept for it")
                    continue
                _once.failed("store", "job %s: cannot store %s: %s", job_id, to.value, exc, exc=exc)
                self.store_problem = f"job states cannot be stored: {exc} (retrying)"
                if self._stopping.wait(delay):
                    return None
                delay = min(delay * 2, RETRY_LAST)
        if self.store_problem is not None:
            self.store_problem = None
            _once.recovered("store", "the store takes state changes again")
        if job is None:
            return None
        log.info("job %s: %s (%s)", job_id, to.value, message)
        if to.terminal:
            self._metrics.finished(job)
            if job.callback_url:
                self._callback_owed()
        return job
