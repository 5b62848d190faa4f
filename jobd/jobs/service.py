"""What the routes call: the job service puts the parts together and reads jobs for clients.

Intake accepts new jobs, the local and Slurm runners run them, the lifecycle changes their
state, retention and callbacks follow up; this facade starts and stops them in order and
answers reads (find, wait, follow, result) from the store and the data dir.

Reads and changes a client asks for take `owner`: with it (a user of --user-tokens), only that
user's jobs exist, and another's is not found exactly as an unknown one; None sees every job.
`find` is the one place a job is looked up for a client, so the one place that decides.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import BinaryIO

from jobd import __version__
from jobd.config.options import Config
from jobd.config.units import shown
from jobd.errors import Conflict, Gone, NotFound
from jobd.formats.archive import CHUNK, EMPTY_ZIP, Limits, zip_directory
from jobd.jobs.callbacks import Callbacks
from jobd.jobs.intake import Intake
from jobd.jobs.pulled import PullRunner
from jobd.jobs.queue_monitor import QueueMonitor
from jobd.jobs.queues import Queues
from jobd.jobs.retention import Retention
from jobd.jobs.schedules import Schedules
from jobd.jobs.services import report as services_report
from jobd.loop import Loop
from jobd.metrics import Metrics
from jobd.models import Job, JobStatus, int_id, valid_job_id
from jobd.run.dispatch import Fair
from jobd.run.executors.local import LocalExecutor
from jobd.run.executors.runsh import STDERR, STDOUT
from jobd.run.executors.slurm import SlurmExecutor
from jobd.run.lifecycle import Lifecycle
from jobd.run.local_runner import LocalRunner, Reconciler
from jobd.run.slurm_runner import SlurmRunner
from jobd.store import Store
from jobd.store.disk import Disk
from jobd.store.layout import Layout

log = logging.getLogger("jobd")

#: How often a followed log is read again while its job runs (files give no wake-up).
FOLLOW_POLL = 0.1
#: How often a long-poll looks whether its client is still there.
CLIENT_CHECK = 1.0


def _never() -> bool:
    return False


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
        self.disk = Disk(layout.root, config.min_free)
        self.metrics = Metrics(
            store.jobs.counts,
            self.disk.free,
            store.jobs.unfinished_by_user,
            store.queues.counts,
            store.commits,
        )
        self.callbacks = Callbacks(
            store, self.get, config.callback_retry_for, self.metrics.callback
        )
        self.lifecycle = Lifecycle(store, layout, self.disk, self.metrics, self.callbacks.kick)
        limits = Limits(config.max_unpacked, config.max_files)
        self.queue_monitor = QueueMonitor(
            store.queues, lambda carrier: self.pulls.carrier_ended(carrier)
        )
        self.pulls = PullRunner(
            store,
            layout,
            self.disk,
            self.lifecycle,
            self.queue_monitor.note_due,
            lambda: self.queues.notify(),
            config.services,
            limits,
        )
        self.queues = Queues(store.queues, self.queue_monitor.note_due, self.pulls.manages)
        self.local = LocalRunner(
            config.workers,
            config.on_restart == "rerun",
            store,
            layout,
            executor,
            self.lifecycle,
            Fair(store, config.services),
            limits,
        )
        self.slurm = SlurmRunner(store, layout, slurm, self.lifecycle, limits)
        self.intake = Intake(
            config,
            store,
            layout,
            self.metrics,
            limits,
            self.disk,
            self.local,
            self.slurm,
            self.pulls,
        )
        self.retention = Retention(store, layout, config.retention, config.services)
        self.schedules = Schedules(
            store, layout, self.intake, self.cancel, self.metrics, config.max_upload
        )
        self.reconciler = Reconciler(self.local)
        self._starting = threading.Lock()
        self._recovery_problem: str | None = None
        self.isolation = executor.sandbox.describe

    # -- start and stop ---------------------------------------------------------------------

    def prepare(self) -> None:
        """The data dir's folders, before jobd listens."""
        self.layout.prepare()
        self.disk.keep_ballast()
        self.pulls.prepare()

    def start(self) -> None:
        """Recovery, then the workers and loops, behind the server: recovery may wait for
        disk space (the store retries its writes), and /health answers and says so meanwhile."""
        threading.Thread(target=self._recover_then_start, name="recover", daemon=True).start()

    def _recover_then_start(self) -> None:
        delay = 0.5
        while not self.lifecycle.stopping:
            try:
                self.recover()
            except Exception as exc:  # e.g. a folder that cannot be read: said, retried
                if self._recovery_problem is None:
                    log.error("cannot recover the jobs of the last run: %s", exc, exc_info=exc)
                self._recovery_problem = f"jobd cannot recover its jobs yet: {exc} (retrying)"
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self._recovery_problem = None
            break
        with self._starting:
            if self.lifecycle.stopping:
                return
            self.local.start()
            for loop in self._loops():
                loop.start()

    def recover(self) -> None:
        """Bring the jobs back to a consistent state after any kind of stop."""
        self.layout.remove_orphans(self.store.jobs.live_ids())
        self.local.recover()
        self.slurm.recover()
        self.pulls.recover()

    def quiesce(self) -> None:
        """The first step of a shutdown: no job starts any more, and long-polls and log
        follows answer now, so the server's threads are free to end."""
        self.local.stop_dispatch()
        self.lifecycle.stop()
        self.queues.stop()

    def stop(self) -> str | None:
        """Stop dispatching and end running jobs; they stay RUNNING and run again on restart.
        Returns what was not clean about it, if anything."""
        self.quiesce()
        with self._starting:  # nothing starts after this
            pass
        for loop in self._loops():
            loop.stop()
        return self.local.stop()

    def _loops(self) -> tuple[Loop, ...]:
        return (
            self.reconciler,
            self.retention,
            self.slurm,
            self.callbacks,
            self.schedules,
            self.queue_monitor,
            self.pulls,
        )

    # -- accept and cancel ------------------------------------------------------------------

    def submit(self, body: BinaryIO, limit: int, *, owner: int | None = None) -> Job:
        return self.intake.upload(body, limit, owner)

    def cancel(self, ref: str | int, *, owner: int | None = None) -> Job:
        """Cancel a queued or running job; returns once its processes are gone."""
        job = self.get(ref, owner=owner)
        runner = self.slurm if job.slurml else self.pulls if job.pulled else self.local
        if job.status.terminal or not runner.cancel(job):
            job = self.get(job.id)
            raise Conflict(f"job {job.id!r} has already finished ({job.status.value})")
        return self.get(job.id)

    def retry(self, ref: str | int, *, owner: int | None = None) -> Job:
        """A new job from a finished job's input and settings; a job still queued or
        running is a 409 (cancel it first, or wait)."""
        job = self.get(ref, owner=owner)
        if not job.status.terminal:
            raise Conflict(
                f"job {job.id!r} is still {job.status.value}: it can run again once it has"
                " finished (cancel it first, or wait for it)"
            )
        new = self.intake.again(job)
        log.info("job %s: a new run of job %s", new.id, job.id)
        return new

    # -- read -------------------------------------------------------------------------------

    def find(self, ref: str | int, *, owner: int | None = None) -> Job:
        """By its ID, or by its integer ID (IntID): an int, or digits no job has as its ID.
        Jobs removed by retention are found too, as tombstones. With `owner`, another user's
        job is passed over as if it did not exist."""

        def seen(job: Job | None) -> Job | None:
            return job if job is None or owner is None or job.user_id == owner else None

        job = self.store.jobs.get(ref) if isinstance(ref, str) and valid_job_id(ref) else None
        job = seen(job)
        number = int_id(ref)
        if job is None and number is not None:
            job = seen(self.store.jobs.get_by_seq(number))
        if job is None:
            raise NotFound(
                f"there is no job number {ref}"
                if isinstance(ref, int)
                else f"there is no job with ID {shown(ref)}"
            )
        return job

    def get(self, ref: str | int, *, owner: int | None = None) -> Job:
        """The job, if its files are still kept."""
        job = self.find(ref, owner=owner)
        if job.expired:
            raise Gone(
                f"job {ref!r} has finished and its files were removed after the retention"
                " period (see --retention, and a service's own retention)"
            )
        return job

    def wait(
        self,
        ref: str | int,
        timeout: float,
        gone: Callable[[], bool] = _never,
        *,
        owner: int | None = None,
    ) -> Job:
        """The job once it is finished or `timeout` has passed, whichever is first; sooner
        if the client is `gone`."""
        job = self.get(ref, owner=owner)
        deadline = time.monotonic() + timeout
        while not job.status.terminal and not gone() and not self.lifecycle.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.lifecycle.wait_for_end(job.id, min(left, CLIENT_CHECK))
            job = self.get(job.id)
        return job

    def result(self, job: Job) -> BinaryIO:
        """The finished job's result zip, opened; an empty zip if none could be stored."""
        try:
            return open(self.layout.result_zip(job.id), "rb")
        except FileNotFoundError:
            return io.BytesIO(EMPTY_ZIP)

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

    def follow(self, job: Job, stream: str, gone: Callable[[], bool] = _never) -> Iterator[bytes]:
        """What run.sh writes to `stream`, from its start until the job ends, as it is
        written; until the client is `gone`."""
        path, offset = self.log_path(job, stream), 0
        while not gone():
            finished = self.get(job.id).status.terminal or self.lifecycle.stopping
            offset = yield from _read_from(path, offset)
            if finished:
                return
            self.lifecycle.wait_for_end(job.id, FOLLOW_POLL)

    def newest(
        self,
        status: JobStatus | None,
        limit: int,
        before: int | None = None,
        *,
        owner: int | None = None,
        service: str | None = None,
        after: int | None = None,
    ) -> list[Job]:
        """Jobs newest first, from below the IntID `before` (or the `limit` just above
        `after`); with `service`, that service's."""
        return self.store.jobs.newest(status, limit, before, owner, service, after)

    def counts(self, *, owner: int | None = None) -> dict[str, int]:
        return self.store.jobs.counts(owner)

    def services(self, *, owner: int | None = None) -> list[dict]:
        """Each service's settings and load; with `owner`, no other user is named."""
        return services_report(self.config.services, self.store.jobs.unfinished_by_user(), owner)

    def health(self) -> dict[str, object]:
        """The daemon's state, and `degraded` (with the reasons) when something is wrong that
        an operator should see; always answered, so orchestrators keep polling it."""
        counts = self.store.jobs.counts()
        disk = self.disk.report()
        alive = self.local.alive()
        oldest = self.store.jobs.oldest_queued()
        problems = []
        if disk.pop("low"):
            problems.append(
                f"free space on the data dir's disk is below --min-free ({disk['free']} bytes"
                " free): new jobs get 507"
            )
        if self.local.lost() and not self.lifecycle.stopping:
            problems.append(f"only {alive} of {self.config.workers} workers are running")
        for loop in self._loops():
            problems += loop.problems()
        problems += [
            problem
            for problem in (self.lifecycle.store_problem, self._recovery_problem)
            if problem is not None
        ]
        return {
            "status": "degraded" if problems else "healthy",
            "problems": problems,
            "version": __version__,
            "workers": self.config.workers,
            "workers_alive": alive,
            "oldest_queued_age": None if oldest is None else round(time.time() - oldest, 3),
            "queued": counts[JobStatus.QUEUED.value],
            "running": counts[JobStatus.RUNNING.value],
            "jobs": counts,
            "slurm": self.slurm.executor.missing() or "available",
            "isolation": self.isolation(),
            "disk": disk,
        }


def _read_from(path: Path, offset: int) -> Generator[bytes, None, int]:
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
