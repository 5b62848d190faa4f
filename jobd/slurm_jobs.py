"""Slurm jobs from submission to their end: submit once, follow them all with one squeue per
poll, re-attach after a restart, cancel with scancel.

A Slurm job never uses a local worker slot and is never re-run locally.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from jobd.errors import Unavailable
from jobd.executors.slurm import EXIT_FILE, WRAPPER, SlurmError, SlurmExecutor, SlurmJob
from jobd.layout import Layout
from jobd.loop import Loop
from jobd.models import Job, JobStatus
from jobd.store import Store

log = logging.getLogger("jobd")

#: Poll intervals: fast right after a change or a submission, slower while nothing moves.
FASTEST, SLOWEST = 0.2, 5.0
#: How long polling stays fastest after a submission or a change.
FAST_FOR = 3.0
_UNFINISHED = [JobStatus.QUEUED, JobStatus.RUNNING]

#: The service's one way to change a job's state: (job_id, to, message, from, exit code).
Transition = Callable[[str, JobStatus, str, list[JobStatus], int | None], Job | None]


class SlurmJobs(Loop):
    thread_name = "slurm"

    def __init__(
        self,
        store: Store,
        layout: Layout,
        executor: SlurmExecutor,
        transition: Transition,
        zip_result: Callable[[str], None],
    ) -> None:
        self.store = store
        self.layout = layout
        self.executor = executor
        self._transition = transition
        self._zip_result = zip_result
        super().__init__()

    def check_available(self) -> None:
        why = self.executor.missing()
        if why:
            raise Unavailable(f"this jobd cannot submit Slurm jobs: {why}")

    def submit(self, job: Job, options: tuple[str, ...]) -> Job:
        """sbatch the accepted job; raises Unavailable (and submits nothing) if Slurm refuses."""
        jobdir, workdir = self.layout.job_dir(job.id), self.layout.work_dir(job.id)
        self.executor.prepare(jobdir, workdir, options)
        try:
            slurm_id = self.executor.submit(job.id, jobdir, workdir)
        except SlurmError as exc:
            raise Unavailable(f"Slurm did not take the job: {exc}") from None
        self._submitted(job, slurm_id)
        return self.store.get(job.id) or job

    def _submitted(self, job: Job, slurm_id: int) -> None:
        self.store.set_slurm_id(job.id, slurm_id, f"submitted to Slurm as job {slurm_id}")
        log.info("job %s: submitted to Slurm as job %d", job.id, slurm_id)
        self.kick()

    def recover(self) -> None:
        """Re-attach to every unfinished Slurm job; finish submissions a stop interrupted."""
        for job in self.store.unfinished_slurm():
            if job.slurm_id:
                continue  # the tracker follows it from here
            try:
                found = self.executor.find(job.id)
                if found is not None:  # sbatch went through before the daemon stopped
                    self._submitted(job, found)
                elif (self.layout.job_dir(job.id) / WRAPPER).is_file():
                    jobdir = self.layout.job_dir(job.id)
                    slurm_id = self.executor.submit(job.id, jobdir, self.layout.work_dir(job.id))
                    self._submitted(job, slurm_id)
                else:
                    self._end(job, JobStatus.FAILED, "jobd stopped before it could submit", None)
            except SlurmError as exc:
                log.error("job %s: cannot re-attach to Slurm yet: %s", job.id, exc)

    # -- tracking ---------------------------------------------------------------------------

    def _run(self) -> None:
        """Follow every tracked job, one squeue per poll."""
        interval, busy_until = FASTEST, 0.0
        while not self._stopping.is_set():
            jobs = [job for job in self.store.unfinished_slurm() if job.slurm_id]
            if not jobs:
                self._kick.wait()  # nothing to follow: sleep until a submission
            else:
                try:
                    states = self.executor.states(job.slurm_id for job in jobs)
                    changed = any([self._apply(job, states.get(job.slurm_id)) for job in jobs])
                except SlurmError as exc:
                    log.warning("cannot ask Slurm about its jobs: %s", exc)
                    changed = False
                if changed:
                    busy_until = time.monotonic() + FAST_FOR
                quiet = time.monotonic() > busy_until
                interval = min(interval * 1.5, SLOWEST) if quiet else FASTEST
                self._kick.wait(interval)
            if self._kick.is_set():  # a submission: short jobs end within seconds
                self._kick.clear()
                interval, busy_until = FASTEST, time.monotonic() + FAST_FOR

    def _apply(self, job: Job, seen: SlurmJob | None) -> bool:
        """Bring the job up to what Slurm says; True if anything changed."""
        if seen is None:
            return self._forgotten(job)
        if seen.finished:
            return self._finish(job, seen)
        if seen.running:
            if job.status is JobStatus.QUEUED:
                message = f"running in Slurm as job {job.slurm_id}"
                return (
                    self._transition(job.id, JobStatus.RUNNING, message, _UNFINISHED, None)
                    is not None
                )
            return False
        message = f"pending in Slurm as job {job.slurm_id} (reason: {seen.reason})"
        if message != job.message:
            self.store.set_message(job.id, message)
            return True
        return False

    def _forgotten(self, job: Job) -> bool:
        """Slurm no longer lists the job (it ended long ago): its exit file says how, if it can."""
        exit_file = self.layout.job_dir(job.id) / EXIT_FILE
        try:
            code = int(exit_file.read_text().strip())
        except (OSError, ValueError):
            message = f"Slurm no longer knows job {job.slurm_id}; how it ended is unknown"
            return self._end(job, JobStatus.FAILED, message, None)
        status = JobStatus.SUCCESS if code == 0 else JobStatus.FAILED
        return self._end(job, status, f"run.sh exited with code {code}", code)

    def _finish(self, job: Job, seen: SlurmJob) -> bool:
        code, signal_number = seen.status >> 8, seen.status & 0x7F
        if seen.state == "COMPLETED":
            return self._end(job, JobStatus.SUCCESS, "run.sh exited with code 0", 0)
        if seen.state == "FAILED" and seen.reason == "NonZeroExitCode" and not signal_number:
            return self._end(job, JobStatus.FAILED, f"run.sh exited with code {code}", code)
        reason = f" (reason: {seen.reason})" if seen.reason not in ("", "None") else ""
        status = JobStatus.CANCELLED if seen.state == "CANCELLED" else JobStatus.FAILED
        return self._end(job, status, seen.ending() + reason, None)

    def _end(self, job: Job, status: JobStatus, message: str, exit_code: int | None) -> bool:
        self._zip_result(job.id)
        return self._transition(job.id, status, message, _UNFINISHED, exit_code) is not None

    # -- cancel -----------------------------------------------------------------------------

    def cancel(self, job: Job) -> Job:
        """scancel, then wait until Slurm reports the job ended (pending or running alike)."""
        try:
            self.executor.cancel(job.slurm_id)
            deadline = time.monotonic() + 60
            delay = 0.05
            while time.monotonic() < deadline:
                seen = self.executor.states([job.slurm_id]).get(job.slurm_id)
                if seen is None or seen.finished:
                    self._apply(job, seen)
                    break
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        except SlurmError as exc:
            raise Unavailable(f"Slurm did not cancel job {job.slurm_id}: {exc}") from None
        return self.store.get(job.id) or job
