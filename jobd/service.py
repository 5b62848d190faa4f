"""The job lifecycle: accept, queue, dispatch, finish, cancel, recover, expire.

One lock guards the in-memory state (running jobs, long-poll waiters) together with the
store calls that must agree with it, so a job is claimed once, and a cancel or a waiter
never misses the change it is waiting for.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from jobd import __version__, procs
from jobd.archive import CHUNK, Base64Writer, Limits, extract, write_files, zip_directory
from jobd.callbacks import Callbacks, check_callback_url
from jobd.config import Config
from jobd.errors import Conflict, Gone, IdTaken, JobdError, NotFound, Unavailable
from jobd.executors.local import STDERR, STDOUT, LocalExecutor, Run, StartError
from jobd.executors.slurm import SlurmExecutor
from jobd.layout import Layout
from jobd.metrics import Metrics
from jobd.models import TERMINAL, Job, JobStatus, valid_job_id
from jobd.slurm_jobs import SlurmJobs
from jobd.store import Store
from jobd.upload import Upload, read_upload

log = logging.getLogger("jobd")

#: How often a followed log is read again while its job runs (files give no wake-up).
FOLLOW_POLL = 0.1

#: Why jobd itself ended a run; decides the final state.
CANCELLED, TIMED_OUT, SHUTDOWN = "cancelled", "timed out", "shutdown"


@dataclass
class _Active:
    """A job a worker has claimed: the run once started, and why jobd is ending it, if it is."""

    run: Run | None = None
    reason: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class JobService:
    def __init__(
        self,
        config: Config,
        store: Store,
        layout: Layout,
        executor: LocalExecutor,
        slurm: SlurmExecutor,
    ) -> None:
        self.config = config
        self.store = store
        self.layout = layout
        self.executor = executor
        self.slurm = SlurmJobs(store, layout, slurm, self._transition, self._zip_result)
        self.metrics = Metrics(store.counts)
        self.callbacks = Callbacks(
            store, self.get, config.callback_retry_for, self.metrics.callback
        )
        self.limits = Limits(config.max_unpacked, config.max_files)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._active: dict[str, _Active] = {}
        self._finished: dict[str, threading.Event] = {}
        self._poll_slots = threading.BoundedSemaphore(max(1, config.threads - 4))
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- start and stop ---------------------------------------------------------------------

    def recover(self) -> None:
        """Bring the data dir back to a consistent state after any kind of stop."""
        self.layout.prepare()
        self.layout.remove_orphans(self.store.live_ids())
        for job in self.store.with_status(JobStatus.RUNNING):
            if not job.slurml:  # Slurm jobs ran on in Slurm: the tracker re-attaches
                self._recover_running(job)
        self.slurm.recover()

    def _recover_running(self, job: Job) -> None:
        if job.pgid and procs.end_leftover_group(job.pgid, job.pgid_start):
            log.info(
                "job %s: ended the leftover process group %d of its last run", job.id, job.pgid
            )
        if self.config.on_restart == "fail":
            self._zip_result(job.id)
            self._transition(
                job.id,
                JobStatus.FAILED,
                "jobd restarted while this job was running; not re-run (--on-restart fail)",
                allowed_from=[JobStatus.RUNNING],
            )
        else:
            self._transition(
                job.id,
                JobStatus.QUEUED,
                "jobd restarted while this job was running; it runs again from its input",
                allowed_from=[JobStatus.RUNNING],
            )

    def start(self) -> None:
        for number in range(self.config.workers):
            self._spawn(self._work, f"worker-{number}")
        self._spawn(self._expire_loop, "retention")
        self.slurm.start()
        self.callbacks.start()

    def _spawn(self, target: object, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop dispatching and end running jobs; they stay RUNNING and run again on restart."""
        self._stopping.set()
        self.slurm.stop()
        self.callbacks.stop()
        with self._lock:
            self._wake.notify_all()
            runs = []
            for active in self._active.values():
                active.reason = SHUTDOWN
                runs.append(active.run)
        for run in runs:
            if run is not None:
                self.executor.terminate(run)
        for thread in self._threads:
            thread.join(timeout=30)

    # -- accept -----------------------------------------------------------------------------

    def submit(self, body: BinaryIO, limit: int) -> Job:
        """Stage the upload in tmp/, check it whole, then move it into place in one rename."""
        staging = self.layout.staging()
        try:
            with open(staging / "input.zip", "wb") as kept:
                decoder = Base64Writer(kept)
                upload = read_upload(body, limit, decoder.write)
                decoder.close()
            if upload.callback_url is not None:
                check_callback_url(upload.callback_url, self.config.callback_allow)
            job_id = upload.job_id or str(uuid.uuid4())
            if self.store.exists(job_id):
                raise IdTaken(job_id)
            extract(staging / "input.zip", staging / "work", self.limits)
            if upload.slurml:
                self.slurm.check_available()
            job = self._accept(staging, job_id, upload)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if upload.slurml:
            try:
                return self.slurm.submit(job, upload.slurm_options)
            except Unavailable:
                self.store.delete(job_id)
                self.layout.remove_job(job_id)
                raise
        return job

    def submit_files(self, parts: list[tuple[str, BinaryIO]]) -> Job:
        """A job from separate files (job-orchestrator's /submit): run locally, ID generated.
        The files are zipped as the kept input, so a restart can run the job again."""
        staging = self.layout.staging()
        try:
            write_files(parts, staging / "work", self.limits)
            zip_directory(staging / "work", staging / "input.zip")
            upload = Upload(None, False, None, (), {})
            return self._accept(staging, str(uuid.uuid4()), upload)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def get_by_number(self, number: int) -> Job:
        """The job with this small integer ID (job-orchestrator's routes use it)."""
        job = self.store.get_by_seq(number)
        if job is None:
            raise NotFound(f"there is no job number {number}")
        return job

    def workdir(self, job: Job) -> str:
        return str(self.layout.work_dir(job.id))

    def load(self) -> float:
        """CPU load as a percentage of this machine's CPUs (the 1-minute average), 0 to 100."""
        return round(min(100.0, os.getloadavg()[0] / (os.cpu_count() or 1) * 100), 1)

    def _accept(self, staging: Path, job_id: str, upload: Upload) -> Job:
        target = self.layout.job_dir(job_id)
        size = (staging / "input.zip").stat().st_size
        try:
            os.rename(staging, target)  # claims the ID on disk: a racing twin fails here
        except OSError:
            raise IdTaken(job_id) from None
        now = time.time()
        timeout = upload.timeout or self.config.timeout
        job = Job(
            job_id,
            JobStatus.QUEUED,
            slurml=upload.slurml,
            timeout=timeout,
            callback_url=upload.callback_url,  # type: ignore[arg-type]
            created_at=now,
            updated_at=now,
        )
        try:
            self.store.insert(job)
        except JobdError:
            shutil.rmtree(target, ignore_errors=True)
            raise
        log.info("job %s: QUEUED", job_id)
        self.metrics.submitted(job, size)
        if not job.slurml:
            with self._lock:
                self._wake.notify()
        return job

    # -- read -------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """By its ID, or by its integer ID (IntID) when no job has that string as its ID."""
        job = self.store.get(job_id) if valid_job_id(job_id) else None
        if job is None and job_id.isdigit() and len(job_id) < 19:
            job = self.store.get_by_seq(int(job_id))
        if job is None:
            raise NotFound(f"there is no job with ID {job_id!r}")
        if job.expired:
            raise Gone(
                f"job {job_id!r} finished more than {self.config.retention:g}s ago and its"
                " files were removed (see --retention)"
            )
        return job

    def wait(self, job_id: str, timeout: float) -> Job:
        """The job once it is finished or `timeout` has passed, whichever is first."""
        job = self.get(job_id)
        job_id = job.id  # it may have been asked for by its IntID
        if job.status.terminal or timeout <= 0:
            return job
        if not self._poll_slots.acquire(blocking=False):
            return job  # every HTTP thread is long-polling: answer now rather than starve others
        try:
            with self._lock:
                job = self.get(job_id)
                if job.status.terminal:
                    return job
                finished = self._finished.setdefault(job_id, threading.Event())
            finished.wait(timeout)
            return self.get(job_id)
        finally:
            self._poll_slots.release()

    def result(self, job: Job) -> BinaryIO:
        """The finished job's result zip, opened."""
        return open(self.layout.result_zip(job.id), "rb")

    def snapshot(self, job: Job) -> BinaryIO:
        """A zip of the job's directory as it is now, opened; the file is gone once closed."""
        path = self.layout.staging() / "partial.zip"
        try:
            zip_directory(self.layout.work_dir(job.id), path)
            return open(path, "rb")
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)  # an open file outlives its name

    def log_path(self, job: Job, stream: str) -> Path:
        return self.layout.work_dir(job.id) / (STDERR if stream == "stderr" else STDOUT)

    def follow(self, job_id: str, path: Path) -> Iterator[bytes]:
        """What is written to `path` from its start until the job ends, as it is written.
        `job_id` is the job's own ID (not its IntID)."""
        if not self._poll_slots.acquire(blocking=False):
            raise Unavailable("too many clients follow logs or long-poll now; try again")
        return self._follow(job_id, path)

    def _follow(self, job_id: str, path: Path) -> Iterator[bytes]:
        try:
            offset = 0
            while True:
                finished = self.get(job_id).status.terminal
                offset = yield from _read_from(path, offset)
                if finished:
                    return
                with self._lock:
                    event = self._finished.setdefault(job_id, threading.Event())
                event.wait(FOLLOW_POLL)
        finally:
            self._poll_slots.release()

    def health(self) -> dict[str, object]:
        counts = self.store.counts()
        return {
            "status": "healthy",
            "version": __version__,
            "workers": self.config.workers,
            "queued": counts[JobStatus.QUEUED.value],
            "running": counts[JobStatus.RUNNING.value],
            "jobs": counts,
            "slurm": self.slurm.executor.missing() or "available",
        }

    # -- cancel -----------------------------------------------------------------------------

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job; returns once its process group is gone."""
        job = self.get(job_id)
        job_id = job.id
        if job.slurml and not job.status.terminal:
            if not job.slurm_id:
                raise Unavailable(f"job {job_id!r} is being submitted to Slurm; try again")
            return self.slurm.cancel(job)
        if job.status is JobStatus.QUEUED:
            self._zip_result(job_id)  # its inputs; built first so GET never sees it missing
            cancelled = self._transition(
                job_id, JobStatus.CANCELLED, "cancelled before it started", [JobStatus.QUEUED]
            )
            if cancelled is not None:
                return cancelled
        run = None
        with self._lock:
            active = self._active.get(job_id)
            if active is not None:
                active.reason = active.reason or CANCELLED
                run = active.run
        if active is None:
            job = self.get(job_id)
            raise Conflict(f"job {job_id!r} has already finished ({job.status.value})")
        if run is not None:
            self.executor.terminate(run)
        active.done.wait()
        return self.get(job_id)

    # -- run --------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                job = None
                while not self._stopping.is_set():
                    job = self.store.claim_next_local()
                    if job is not None:
                        break
                    self._wake.wait()
                if job is None:
                    return
                active = self._active[job.id] = _Active()
            log.info("job %s: RUNNING", job.id)
            try:
                self._run(job, active)
            except Exception as exc:  # a worker must survive anything one job does
                log.exception("job %s: jobd failed while running it", job.id)
                self._fail(job.id, f"jobd failed while running it: {exc}")
            finally:
                with self._lock:
                    del self._active[job.id]
                active.done.set()

    def _fail(self, job_id: str, message: str) -> None:
        try:
            self._zip_result(job_id)
        except OSError:
            log.exception("job %s: could not zip its directory", job_id)
        self._transition(job_id, JobStatus.FAILED, message, [JobStatus.RUNNING])

    def _run(self, job: Job, active: _Active) -> None:
        workdir = self.layout.work_dir(job.id)
        if job.attempts > 1:  # a re-run after a restart starts from the original input again
            shutil.rmtree(workdir, ignore_errors=True)
            extract(self.layout.input_zip(job.id), workdir, self.limits)
        try:
            run = self.executor.start(workdir)
        except StartError as exc:
            self._fail(job.id, str(exc))
            return
        self.store.set_process(job.id, run.pgid, run.start_time)
        with self._lock:
            active.run = run
            ending = active.reason
        if ending:
            self.executor.terminate(run)
        if not self.executor.wait(run, job.timeout):
            with self._lock:
                active.reason = active.reason or TIMED_OUT
            self.executor.terminate(run)
        code = self.executor.reap(run)
        if active.reason == SHUTDOWN:
            log.info("job %s: stopped by shutdown; it runs again on restart", job.id)
            return
        self._finish(job, code, active.reason)

    def _finish(self, job: Job, code: int, reason: str | None) -> None:
        """Decide the final state from run.sh's return code and why jobd ended it, if it did."""
        how = (
            f"run.sh was ended by {procs.signal_name(-code)}"
            if code < 0
            else f"run.sh exited with code {code}"
        )
        if reason == CANCELLED:
            status, message = JobStatus.CANCELLED, f"cancelled while running; {how}"
        elif reason == TIMED_OUT:
            status, message = JobStatus.FAILED, f"timed out after {job.timeout:g}s; {how}"
        else:
            status, message = (JobStatus.SUCCESS if code == 0 else JobStatus.FAILED), how
        exit_code = code if reason is None and code >= 0 else None  # null once killed
        self._zip_result(job.id)
        self._transition(job.id, status, message, [JobStatus.RUNNING], exit_code)

    def _zip_result(self, job_id: str) -> None:
        workdir = self.layout.work_dir(job_id)
        workdir.mkdir(parents=True, exist_ok=True)  # gone only if a re-run's unpacking failed
        for name in (STDOUT, STDERR):  # every result has both, even if run.sh never ran
            open(workdir / name, "ab").close()
        zip_directory(workdir, self.layout.result_zip(job_id))

    def _transition(
        self,
        job_id: str,
        to: JobStatus,
        message: str,
        allowed_from: list[JobStatus],
        exit_code: int | None = None,
    ) -> Job | None:
        """The one place a job changes state: store, log, and wake whoever waits on it."""
        with self._lock:
            job = self.store.transition(job_id, to, allowed_from, message, exit_code)
            if job is not None and to in TERMINAL:
                self.metrics.finished(job)
                finished = self._finished.pop(job_id, None)
                if finished is not None:
                    finished.set()
                if job.callback_url:
                    self.callbacks.kick()
        if job is not None:
            log.info("job %s: %s (%s)", job_id, to.value, message)
        return job

    # -- retention --------------------------------------------------------------------------

    def _expire_loop(self) -> None:
        interval = min(max(self.config.retention / 10, 0.2), 60.0)
        while not self._stopping.wait(interval):
            self.expire()

    def expire(self) -> None:
        for job_id in self.store.expire_finished_before(time.time() - self.config.retention):
            self.layout.remove_job(job_id)
            log.info("job %s: removed after the retention period", job_id)


def _read_from(path: Path, offset: int) -> Iterator[bytes]:
    """Yield what the file holds past `offset`, in bounded pieces; returns the new offset."""
    try:
        with open(path, "rb") as log_file:
            if os.fstat(log_file.fileno()).st_size < offset:
                offset = 0  # truncated: the job started again
            log_file.seek(offset)
            while block := log_file.read(CHUNK):
                offset += len(block)
                yield block
    except FileNotFoundError:
        pass
    return offset
