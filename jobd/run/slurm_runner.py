"""Jobs that run in Slurm: submit once per attempt, follow them all with one squeue per poll,
re-attach after a restart, cancel with scancel, submit a retry once its backoff is over.

A Slurm job never uses a local worker slot and is never re-run locally.
"""

from __future__ import annotations

import logging
import shutil
import time

from jobd.errors import InsufficientStorage, Unavailable, is_full
from jobd.formats.archive import Limits, extract
from jobd.logs import Once
from jobd.loop import Loop
from jobd.models import UNFINISHED, Job, JobSpec, JobStatus
from jobd.run.executors.runsh import ending
from jobd.run.executors.slurm import EXIT_FILE, WRAPPER, SlurmError, SlurmExecutor, SlurmJob
from jobd.run.lifecycle import Lifecycle
from jobd.store import Store
from jobd.store.layout import Layout

log = logging.getLogger("jobd")
_once = Once(log)

#: Poll intervals: fast right after a change or a submission, slower while nothing moves.
FASTEST, SLOWEST = 0.2, 5.0
#: How long polling stays fastest after a submission or a change.
FAST_FOR = 3.0


class SlurmRunner(Loop):
    thread_name = "slurm"

    def __init__(
        self,
        store: Store,
        layout: Layout,
        executor: SlurmExecutor,
        lifecycle: Lifecycle,
        limits: Limits,
    ) -> None:
        super().__init__()
        self._store = store
        self._layout = layout
        self.executor = executor
        self._lifecycle = lifecycle
        self._limits = limits
        self._interval, self._busy_until = FASTEST, 0.0

    def check_available(self) -> None:
        why = self.executor.missing()
        if why:
            raise Unavailable(f"this jobd cannot submit Slurm jobs: {why}")

    def launch(self, job: Job, spec: JobSpec) -> Job:
        """sbatch the accepted job; raises Unavailable (and submits nothing) if Slurm refuses."""
        jobdir, workdir = self._layout.job_dir(job.id), self._layout.work_dir(job.id)
        try:
            self.executor.prepare(jobdir, workdir, spec.slurm_options, job.environment)
        except OSError as exc:  # nothing is submitted yet: the upload is refused whole
            if is_full(exc):
                raise InsufficientStorage(
                    f"the Slurm job script cannot be written: {exc}"
                ) from None
            raise Unavailable(f"the Slurm job script cannot be written: {exc}") from None
        try:
            slurm_id = self.executor.submit(slurm_name(job), jobdir, workdir, job.attempt)
        except SlurmError as exc:
            raise Unavailable(f"Slurm did not take the job: {exc}") from None
        except OSError as exc:
            if is_full(exc):
                raise InsufficientStorage(f"the Slurm job cannot be recorded: {exc}") from None
            raise Unavailable(f"the Slurm job cannot be recorded: {exc}") from None
        self._submitted(job, slurm_id)
        return self._store.jobs.get(job.id) or job

    def _submitted(self, job: Job, slurm_id: int) -> None:
        self._store.jobs.set_slurm_id(job.id, slurm_id, f"submitted to Slurm as job {slurm_id}")
        log.info("job %s: submitted to Slurm as job %d", job.id, slurm_id)
        self.kick()

    def recover(self) -> None:
        """Re-attach to every unfinished Slurm job; finish submissions a stop interrupted."""
        for job in self._store.jobs.unfinished_slurm():
            if job.slurm_id or (job.due_at or 0) > time.time():
                continue  # the tracker follows it from here, or submits it when it is due
            try:
                found = self.executor.find(slurm_name(job))
                if found is not None:  # sbatch went through before the daemon stopped
                    self._submitted(job, found)
                elif job.attempt > 1:  # a retry that came due while jobd was down
                    self._resubmit(job)
                elif (self._layout.job_dir(job.id) / WRAPPER).is_file():
                    self._submit(job)
                else:
                    self._end(job, JobStatus.FAILED, "jobd stopped before it could submit", None)
            except SlurmError as exc:
                log.error("job %s: cannot re-attach to Slurm yet: %s", job.id, exc)

    # -- tracking ---------------------------------------------------------------------------

    def kick(self) -> None:
        """A submission: short jobs end within seconds, so poll fast for a while."""
        self._interval, self._busy_until = FASTEST, self.clock() + FAST_FOR
        super().kick()

    def tick(self, now: float) -> float | None:
        """Submit the retries that are due; follow every tracked job, one squeue per poll."""
        unfinished = self._store.jobs.unfinished_slurm()
        waiting = [job for job in unfinished if not job.slurm_id and job.due_at is not None]
        for job in waiting:
            if job.due_at is not None and job.due_at <= time.time():
                self._resubmit(job)
        due = [job.due_at for job in waiting if job.due_at and job.due_at > time.time()]
        jobs = [job for job in unfinished if job.slurm_id]
        if not jobs:
            # nothing to follow: sleep until a submission or the next retry
            return None if not due else max(0.0, min(due) - time.time())
        try:
            states = self.executor.states(job.slurm_id for job in jobs)
            changed = any([self._apply_one(job, states.get(job.slurm_id)) for job in jobs])
        except SlurmError as exc:
            log.warning("cannot ask Slurm about its jobs: %s", exc)
            changed = False
        if changed:
            self._busy_until = now + FAST_FOR
        quiet = now > self._busy_until
        self._interval = min(self._interval * 1.5, SLOWEST) if quiet else FASTEST
        return self._interval

    def _apply_one(self, job: Job, seen: SlurmJob | None) -> bool:
        """One job's update; a job that cannot be updated never holds up the others."""
        try:
            return self._apply(job, seen)
        except Exception as exc:
            _once.failed(f"slurm {job.id}", "job %s: cannot update it: %s", job.id, exc, exc=exc)
            return False

    def _apply(self, job: Job, seen: SlurmJob | None) -> bool:
        """Bring the job up to what Slurm says; True if anything changed."""
        if seen is None:
            return self._forgotten(job)
        if seen.finished:
            return self._finish(job, seen)
        if seen.running:
            if job.status is JobStatus.QUEUED:
                message = f"running in Slurm as job {job.slurm_id}"
                return self._lifecycle.running(job.id, message, expect=UNFINISHED) is not None
            return False
        message = f"pending in Slurm as job {job.slurm_id} (reason: {seen.reason})"
        if message != job.message:
            self._store.jobs.set_message(job.id, message)
            return True
        return False

    def _forgotten(self, job: Job) -> bool:
        """Slurm no longer lists the job (it ended long ago): its exit file says how, if it can."""
        exit_file = self._layout.job_dir(job.id) / EXIT_FILE
        try:
            code = int(exit_file.read_text().strip())
        except (OSError, ValueError):
            message = f"Slurm no longer knows job {job.slurm_id}; how it ended is unknown"
            return self._end(job, JobStatus.FAILED, message, None)
        return self._exited(job, code)

    def _finish(self, job: Job, seen: SlurmJob) -> bool:
        code, signal_number = seen.status >> 8, seen.status & 0x7F
        if seen.state == "COMPLETED":
            return self._exited(job, 0)
        if seen.state == "FAILED" and seen.reason == "NonZeroExitCode" and not signal_number:
            return self._exited(job, code)
        reason = f" (reason: {seen.reason})" if seen.reason not in ("", "None") else ""
        status = JobStatus.CANCELLED if seen.state == "CANCELLED" else JobStatus.FAILED
        return self._end(job, status, seen.ending() + reason, None)

    def _exited(self, job: Job, code: int) -> bool:
        status = JobStatus.SUCCESS if code == 0 else JobStatus.FAILED
        return self._end(job, status, ending(code), code)

    def _end(self, job: Job, status: JobStatus, message: str, exit_code: int | None) -> bool:
        if status is JobStatus.FAILED and job.attempt < job.max_attempts:
            return self._lifecycle.retry(job, message) is not None  # submitted when due
        if job.max_attempts > 1:
            message = f"attempt {job.attempt} of {job.max_attempts}: {message}"
        ended = self._lifecycle.finish(
            job.id, status, message, expect=UNFINISHED, exit_code=exit_code
        )
        return ended is not None

    def _resubmit(self, job: Job) -> None:
        """A retry whose backoff is over: a fresh folder from the input (with the earlier
        attempts' output), then sbatch; a refusal is tried again at the next poll."""
        try:
            self._prepare_attempt(job)
            self._submit(job)
        except (SlurmError, OSError) as exc:
            _once.failed(f"slurm {job.id}", "job %s: cannot submit its retry: %s", job.id, exc)

    def _prepare_attempt(self, job: Job) -> None:
        workdir = self._layout.work_dir(job.id)
        shutil.rmtree(workdir, ignore_errors=True)
        extract(self._layout.input_zip(job.id), workdir, self._limits)
        kept = self._layout.attempts_dir(job.id)
        for earlier in sorted(kept.iterdir()) if kept.is_dir() else ():
            shutil.copyfile(earlier, workdir / earlier.name)

    def _submit(self, job: Job) -> None:
        jobdir, workdir = self._layout.job_dir(job.id), self._layout.work_dir(job.id)
        self._submitted(job, self.executor.submit(slurm_name(job), jobdir, workdir, job.attempt))

    # -- cancel -----------------------------------------------------------------------------

    def cancel(self, job: Job) -> bool:
        """scancel, then wait until Slurm reports the job ended (pending or running alike)."""
        if not job.slurm_id and job.due_at is not None:  # waiting out a retry's backoff
            message = "cancelled while waiting to be tried again"
            ended = self._lifecycle.finish(job.id, JobStatus.CANCELLED, message, expect=UNFINISHED)
            return ended is not None
        if not job.slurm_id:
            raise Unavailable(f"job {job.id!r} is being submitted to Slurm; try again")
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
        return True


def slurm_name(job: Job) -> str:
    """The Slurm job's name: one per attempt, so a restart finds this attempt's, not an
    earlier one's."""
    return f"jobd-{job.id}" if job.attempt == 1 else f"jobd-{job.id}-attempt-{job.attempt}"
