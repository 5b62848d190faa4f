"""Jobs that run on this machine: `--workers` threads claim queued jobs, run them in their own
process group, end them on cancel, timeout or shutdown, and recover them after a restart."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass, field

from jobd.formats.archive import Limits, extract
from jobd.logs import Once
from jobd.loop import Loop
from jobd.models import Job, JobLimits, JobSpec, JobStatus
from jobd.run import procs
from jobd.run.dispatch import Policy
from jobd.run.executors.local import LocalExecutor, Run, StartError
from jobd.run.lifecycle import Lifecycle
from jobd.run.outcome import Ending, Stop, settle
from jobd.store import Store
from jobd.store.layout import Layout

log = logging.getLogger("jobd")

_once = Once(log)
_RUNNING = frozenset({JobStatus.RUNNING})
#: A worker that cannot claim a job (the store fails) tries again after this, doubling.
CLAIM_RETRY_FIRST, CLAIM_RETRY_LAST = 0.1, 5.0
_QUEUED = frozenset({JobStatus.QUEUED})
#: Runs of one job that jobd's own stop may interrupt before it stops re-running it.
MAX_RUNS = 3


@dataclass
class _Active:
    """A job a worker has claimed: the run once started, and why jobd is ending it, if it is."""

    job: Job
    run: Run | None = None
    stop: Stop | None = None
    done: threading.Event = field(default_factory=threading.Event)


class LocalRunner:
    def __init__(
        self,
        workers: int,
        rerun_on_restart: bool,
        store: Store,
        layout: Layout,
        executor: LocalExecutor,
        lifecycle: Lifecycle,
        policy: Policy,
        limits: Limits,
    ) -> None:
        self._workers = workers
        self._rerun = rerun_on_restart
        self._store = store
        self._layout = layout
        self._executor = executor
        self._lifecycle = lifecycle
        self._policy = policy
        self._limits = limits
        # guards _active together with claiming, so a cancel finds every claimed job
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._active: dict[str, _Active] = {}
        self._stopping = False
        self._threads: list[threading.Thread] = []

    # -- start and stop ---------------------------------------------------------------------

    def recover(self) -> None:
        """Jobs that were RUNNING when the daemon stopped: end what is left of their last run,
        then queue them again (or fail them, with --on-restart fail)."""
        for job in self._store.jobs.with_status(JobStatus.RUNNING):
            if not (job.slurml or job.pulled):  # they ran on elsewhere: their runner knows
                self._recover(job)

    def _recover(self, job: Job) -> None:
        left = procs.leftovers(
            job.pgid, job.pgid_start, procs.mark_for(self._layout.work_dir(job.id))
        )
        if procs.end_all([left], 0):
            log.info("job %s: ended what was left running of its last run", job.id)
        if self._rerun and job.attempts >= MAX_RUNS:
            self._lifecycle.finish(
                job.id,
                JobStatus.FAILED,
                f"jobd stopped during each of this job's {job.attempts} runs; not run again"
                " (a job that brings jobd down, e.g. by filling its disk, would do it again)",
                expect=_RUNNING,
            )
        elif self._rerun:
            self._lifecycle.requeue(
                job.id,
                "jobd restarted while this job was running; it runs again from its input",
                expect=_RUNNING,
            )
        else:
            self._lifecycle.finish(
                job.id,
                JobStatus.FAILED,
                "jobd restarted while this job was running; not re-run (--on-restart fail)",
                expect=_RUNNING,
            )

    def start(self) -> None:
        with self._lock:
            self._policy.load()
        for number in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"worker-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop_dispatch(self) -> None:
        """No job starts from now on."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()

    def stop(self) -> str | None:
        """Stop dispatching and end running jobs; they stay RUNNING and run again on restart.
        Returns what was not clean about it (None: every run and worker ended)."""
        self.stop_dispatch()
        with self._lock:
            runs = []
            for active in self._active.values():
                active.stop = Stop.SHUTDOWN
                if active.run is not None:
                    runs.append(active.run)
        self._executor.terminate(*runs)
        for thread in self._threads:
            thread.join(timeout=30)
        left = sum(1 for run in runs if run.tree.members())
        stuck = sum(1 for thread in self._threads if thread.is_alive())
        if left or stuck:
            return f"{left} runs still had processes and {stuck} workers had not ended"
        return None

    def alive(self) -> int:
        """Worker threads that still take jobs (none should ever be lost: /health checks)."""
        return sum(thread.is_alive() for thread in self._threads)

    def lost(self) -> int:
        """Workers started and since ended; none before they start (after recovery)."""
        return sum(not thread.is_alive() for thread in list(self._threads))

    def launch(self, job: Job, spec: JobSpec) -> Job:
        """A new job is queued: a free worker takes it at once, if the policy lets it."""
        with self._lock:
            self._policy.add(job)
            self._wake.notify()
        return job

    # -- cancel -----------------------------------------------------------------------------

    def cancel(self, job: Job) -> bool:
        """Cancel a queued or running job; returns once its process group is gone, False if
        the job had already ended."""
        if job.status is JobStatus.QUEUED:
            cancelled = self._lifecycle.finish(  # its inputs are its result
                job.id, JobStatus.CANCELLED, "cancelled before it started", expect=_QUEUED
            )
            if cancelled is not None:
                return True
        with self._lock:
            active = self._active.get(job.id)
            if active is not None:
                active.stop = active.stop or Stop.CANCEL
                run = active.run
            elif self._stranded(job.id):
                return self._end_stranded(job.id, JobStatus.CANCELLED, "cancelled")
        if active is None:
            return False
        if run is not None:
            self._executor.terminate(run)
        active.done.wait()
        return True

    # -- run --------------------------------------------------------------------------------

    def _claim(self) -> tuple[Job, _Active] | None:
        with self._lock:
            while not self._stopping:
                chosen = self._policy.next_job(active.job for active in self._active.values())
                if chosen is None:
                    due = self._policy.next_due()  # a retry's backoff ends then
                    self._wake.wait(None if due is None else max(0.0, due - time.time()))
                    continue
                job = self._lifecycle.claim(chosen)
                if job is None:
                    self._policy.drop(chosen)
                    continue
                self._policy.started(job)
                active = self._active[job.id] = _Active(job)
                return job, active
        return None

    def _work(self) -> None:
        """A worker outlives anything one job, or the store, does to it."""
        delay = CLAIM_RETRY_FIRST
        while True:
            try:
                claimed = self._claim()
            except Exception as exc:
                _once.failed("claim", "a worker cannot take a job: %s", exc, exc=exc)
                with self._lock:
                    self._wake.wait(delay)
                delay = min(delay * 2, CLAIM_RETRY_LAST)
                continue
            _once.recovered("claim", "workers take jobs again")
            delay = CLAIM_RETRY_FIRST
            if claimed is None:
                return
            job, active = claimed
            try:
                self._run(job, active)
            except Exception as exc:
                log.exception("job %s: jobd failed while running it", job.id)
                message = f"jobd failed while running it: {exc}"
                self._lifecycle.finish(job.id, JobStatus.FAILED, message, expect=_RUNNING)
            finally:
                with self._lock:
                    del self._active[job.id]
                active.done.set()

    # -- stranded jobs ----------------------------------------------------------------------

    def reconcile(self) -> list[tuple[str, Exception]]:
        """End every job the store says is RUNNING here that no worker runs (its end could
        not be stored): it never stays RUNNING with nothing running it. Returns the jobs
        that could not be looked at, and why; the others are not held up by them."""
        failed: list[tuple[str, Exception]] = []
        for job in self._store.jobs.with_status(JobStatus.RUNNING):
            try:
                with self._lock:
                    stranded = self._stranded(job.id)
                if stranded:
                    self._end_stranded(job.id, JobStatus.FAILED, "ended FAILED")
            except (ValueError, OSError) as exc:
                failed.append((job.id, exc))
        return failed

    def _stranded(self, job_id: str) -> bool:
        """Held under the lock: no worker owns the job, yet the store says it runs here."""
        if job_id in self._active or self._stopping:
            return False
        job = self._store.jobs.get(job_id)
        return (
            job is not None and job.status is JobStatus.RUNNING and not (job.slurml or job.pulled)
        )

    def _end_stranded(self, job_id: str, status: JobStatus, how: str) -> bool:
        log.warning("job %s: RUNNING with no worker running it; it is %s", job_id, how)
        message = f"{how} after its run was lost (jobd could not store how it ended)"
        return self._lifecycle.finish(job_id, status, message, expect=_RUNNING) is not None

    def _run(self, job: Job, active: _Active) -> None:
        workdir = self._layout.work_dir(job.id)
        if job.attempts > 1 or job.attempt > 1:  # a re-run, a retry: from the input again
            shutil.rmtree(workdir, ignore_errors=True)
            extract(self._layout.input_zip(job.id), workdir, self._limits)
            self._layout.restore_attempts(job.id)
        try:
            run = self._executor.start(
                workdir, job.environment, JobLimits(job.memory_limit, job.process_limit)
            )
        except StartError as exc:
            self._lifecycle.finish(job.id, JobStatus.FAILED, str(exc), expect=_RUNNING)
            return
        self._lifecycle.record_process(job.id, run.pgid, run.start_time)
        with self._lock:
            active.run = run
            stopping = active.stop
        if stopping:
            self._executor.terminate(run)
        if not self._executor.wait(run, job.timeout):
            with self._lock:
                active.stop = active.stop or Stop.TIMEOUT
            self._executor.terminate(run)
        code = self._executor.reap(run)
        if active.stop is Stop.SHUTDOWN:
            log.info("job %s: stopped by shutdown; it runs again on restart", job.id)
            return
        self._finish(job, code, active.stop, run)

    def _finish(self, job: Job, code: int, stop: Stop | None, run: Run) -> None:
        memory = run.cell.limits.memory if run.out_of_memory else None
        again = settle(self._lifecycle, job, Ending(code, stop, memory))
        if again is not None:
            with self._lock:
                self._policy.add(again)


class Reconciler(Loop):
    """Now and then: looks for stranded local jobs, and collects orphans that ended."""

    thread_name = "reconcile"
    interval = 5.0

    def __init__(self, runner: LocalRunner) -> None:
        super().__init__()
        self._runner = runner

    def tick(self, now: float) -> float:
        for job_id, exc in self._runner.reconcile():
            self.set_aside(f"job {job_id!r}", str(exc))
        procs.reap_adopted()  # orphans of jobs that ended on their own since
        return self.interval
