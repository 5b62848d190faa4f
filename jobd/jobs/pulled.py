"""Jobs of runner=pull services, run by `jobd worker`s that pull them over HTTP.

Each pull service is an Ocypod queue of its own name; each run of a job is a queue job there,
its carrier, whose id is the run's lease (store/pulls.py). A worker dequeues a carrier (one
worker only: Ocypod's dequeue), claims its job, fetches the input, heartbeats the carrier,
and sends the result zip back under the lease. Everything else is the queue's:

- a carrier that misses its heartbeats times out; the job goes back to the queue under a new
  carrier, its attempt not used up, and a result under the old lease is refused;
- a cancel ends the carrier, so the worker's next heartbeat is refused; it ends run.sh's
  process tree and sends what there is, and the job ends CANCELLED;
- a restart of this jobd changes nothing: workers retry until it is back, and the queue
  counts missed heartbeats from the restart.

The result is unpacked into the job's folder, so the job is served exactly as a local one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from jobd.config.services import Services
from jobd.errors import BadRequest, Conflict, JobdError, NotFound, TooLarge, is_full
from jobd.formats.archive import CHUNK, Limits, extract
from jobd.jobs.queues import move
from jobd.loop import Loop
from jobd.models import Job, JobSpec, JobStatus, QueueJob, QueueSettings, QueueStatus
from jobd.run.lifecycle import Lifecycle
from jobd.run.outcome import Ending, Stop, settle
from jobd.store import Store
from jobd.store.disk import Disk
from jobd.store.layout import Layout

log = logging.getLogger("jobd")

#: Carriers stay listed in their queue this long after they end.
CARRIER_KEPT = 3600
#: Runs of one attempt whose workers were lost before jobd gives up on the job (a job that
#: takes its host down would take the next one down too).
MAX_LOST = 3
#: A cancel waits this much past a heartbeat timeout for the worker to answer it.
CANCEL_SLACK = 5.0
_RUNNING = frozenset({JobStatus.RUNNING})
_QUEUED = frozenset({JobStatus.QUEUED})
#: Pull jobs offered per round.
ROUND = 500


class PullRunner(Loop):
    thread_name = "pull"
    stop_wait = 10.0

    def __init__(
        self,
        store: Store,
        layout: Layout,
        disk: Disk,
        lifecycle: Lifecycle,
        note_due: Callable[[float], None],
        queued: Callable[[], None],
        services: Services,
        limits: Limits,
    ) -> None:
        super().__init__()
        self._store = store
        self._layout = layout
        self._disk = disk
        self._lifecycle = lifecycle
        self._note_due = note_due  # the queue monitor's: a carrier's expiry
        self._queued = queued  # wakes the workers' waiting dequeues
        self._services = services
        self._limits = limits
        self._lock = threading.Lock()
        self._lost: list[int] = []  # leases whose carriers ended without a result
        self._receiving: set[str] = set()  # jobs whose result is arriving

    # -- the queues ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Each pull service's queue, with the service's heartbeat timeout (before jobd
        listens: a worker may ask at once)."""
        for name, settings in self._services.pulled().items():
            self._store.queues.put(
                QueueSettings(
                    name,
                    timeout=0,  # the worker keeps the job's own time limit
                    heartbeat_timeout=settings.heartbeat_timeout,
                    expires_after=CARRIER_KEPT,
                ),
                time.time(),
            )

    def manages(self, queue: str) -> bool:
        """Whether the queue is a pull service's (its jobs are carriers)."""
        return queue in self._services.pulled()

    def pulled(self, service: str) -> bool:
        return self._services.of(service).pulled

    # -- a job's way through ------------------------------------------------------------------

    def launch(self, job: Job, spec: JobSpec) -> Job:
        """A new job: offered to the workers at once."""
        return self._offer(job) or job

    def _offer(self, job: Job) -> Job | None:
        offered = self._store.pulls.offer(job.id, self._carrier(job))
        if offered is not None:
            log.info("job %s: offered to workers (queue job %s)", job.id, offered.lease)
            self._queued()
        return offered

    def _carrier(self, job: Job) -> QueueJob:
        settings = self._services.of(job.service)
        return QueueJob(
            id=0,
            queue=job.service,
            status=QueueStatus.QUEUED,
            tags=(job.id,),
            input=json.dumps({"job": job.id, "attempt": job.attempt}),
            output=None,
            created_at=time.time(),
            started_at=None,
            ended_at=None,
            last_heartbeat=None,
            timeout=0,
            heartbeat_timeout=settings.heartbeat_timeout,
            expires_after=CARRIER_KEPT,
            retries=0,
            retries_attempted=0,
            retry_delays=None,
            due_at=None,
        )

    def claim(self, lease: int) -> Job:
        """A worker dequeued carrier `lease`: its job is now RUNNING there. Asked again (the
        worker did not hear the answer), the same answer: only that worker holds the lease."""
        job = self._store.pulls.claim(lease)
        if job is None:
            found = self._leased(lease)
            if found.status is JobStatus.RUNNING:
                return found
            self._end_carrier(lease, QueueStatus.CANCELLED)
            raise Conflict(
                f"queue job {lease} carries no job that can start: job {found.id!r} is"
                f" {found.status.value}; take the next one"
            )
        log.info("job %s: RUNNING on a worker (queue job %s)", job.id, lease)
        return job

    def input(self, lease: int) -> Path:
        """The input zip of the job running under `lease`."""
        return self._layout.input_zip(self._running(lease).id)

    def receive(
        self,
        lease: int,
        body: BinaryIO,
        end: Ending,
        pgid: int | None,
        error: str | None = None,
    ) -> Job:
        """The result zip of the run under `lease`, streamed to disk, unpacked into the job's
        folder, and the job ended (or its next attempt queued) as a local run would be; a
        run that could not be done (`error`: run.sh could not start, the input could not be
        unpacked, the result is too large to send) ends it FAILED with why."""
        job = self._running(lease)
        with self._lock:
            if job.id in self._receiving:
                raise Conflict(f"job {job.id!r}: its result is already arriving")
            self._receiving.add(job.id)
        taken = False
        try:
            staging = self._layout.staging()
            try:
                self._disk.check_room()
                _copy(body, staging / "result.zip")
                try:
                    extract(
                        staging / "result.zip",
                        staging / "work",
                        self._limits,
                        "the result",
                        job=False,
                    )
                except (BadRequest, TooLarge) as exc:  # sending it again would not help
                    self._refused(job, lease, exc)
                    raise
                (staging / "work").mkdir(exist_ok=True)  # an empty zip makes no folder
                job = self._running(lease)  # still this run's, now that the result is in
                if self._cancelled(lease):
                    end = Ending(end.code, Stop.CANCEL, end.out_of_memory_at)
                workdir = self._layout.work_dir(job.id)
                shutil.rmtree(workdir, ignore_errors=True)
                os.rename(staging / "work", workdir)
                self._layout.restore_attempts(job.id)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            if pgid is not None:
                self._lifecycle.record_process(job.id, pgid, None)
            if error is not None:
                self._lifecycle.finish(job.id, JobStatus.FAILED, error, expect=_RUNNING)
                again = None
            else:
                again = settle(self._lifecycle, job, end)
            taken = True
        except OSError as exc:
            if is_full(exc):
                raise self._disk.full() from None
            raise
        finally:
            with self._lock:
                self._receiving.discard(job.id)
            if not taken:
                self._lost_if_over(lease)
        ended = self._store.jobs.get(job.id) or job
        succeeded = ended.status is JobStatus.SUCCESS
        self._end_carrier(lease, QueueStatus.COMPLETED if succeeded else QueueStatus.FAILED)
        if again is not None:
            self.kick()  # its retry is offered when due
        return ended

    def _refused(self, job: Job, lease: int, exc: JobdError) -> None:
        """A result that cannot be unpacked here (a bad zip, over --max-unpacked) ends the
        job FAILED."""
        self._lifecycle.finish(
            job.id,
            JobStatus.FAILED,
            f"its worker's result could not be taken: {exc}",
            expect=_RUNNING,
        )
        self._end_carrier(lease, QueueStatus.FAILED)

    def hand_back(self, lease: int) -> Job:
        """The worker stops (SIGTERM) before the run ends, or before it claimed the job: the job
        goes back to the queue for another worker, with this run not counted."""
        if self._leased(lease).status.terminal:
            self._running(lease)  # says why not
        job = self._reoffer(lease, "its worker stopped and handed it back", count_run=False)
        if job is None:
            raise Conflict(f"queue job {lease} no longer carries a running job")
        self._end_carrier(lease, QueueStatus.FAILED)
        return job

    def cancel(self, job: Job) -> bool:
        """As a local cancel: returns once the job is CANCELLED, False if it had ended. A
        running job's worker hears of it at its next heartbeat; one that does not answer
        within the heartbeat timeout is taken for lost and the job ends here."""
        if job.status is JobStatus.QUEUED:
            if self._lifecycle.finish(
                job.id, JobStatus.CANCELLED, "cancelled before it started", expect=_QUEUED
            ):
                if job.lease is not None:
                    self._end_carrier(job.lease, QueueStatus.CANCELLED)
                return True
            job = self._store.jobs.get(job.id) or job
        if job.status is not JobStatus.RUNNING or job.lease is None:
            return False
        self._end_carrier(job.lease, QueueStatus.CANCELLED)
        wait = self._services.of(job.service).heartbeat_timeout + CANCEL_SLACK
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0 and not self._lifecycle.stopping:
            self._lifecycle.wait_for_end(job.id, left)
            now = self._store.jobs.get(job.id)
            if now is None or now.status is not JobStatus.RUNNING:
                return True
        self._lifecycle.finish(  # else the result came first
            job.id,
            JobStatus.CANCELLED,
            f"cancelled while running; its worker did not answer within {wait:g}s",
            expect=_RUNNING,
        )
        return True

    # -- lost runs ------------------------------------------------------------------------------

    def carrier_ended(self, carrier: QueueJob) -> None:
        """The queue monitor timed a carrier out (a missed heartbeat): its run is lost."""
        if self.manages(carrier.queue):
            with self._lock:
                self._lost.append(carrier.id)
            self.kick()

    def recover(self) -> None:
        """After a start: a run whose carrier ended without its result (jobd stopped between
        the two) is lost; one whose cancel was under way ends CANCELLED."""
        for job in self._store.pulls.unfinished():
            if job.lease is None:
                continue  # offered by the loop
            carrier = self._store.queues.job(job.lease)
            status = None if carrier is None else carrier.status
            if status in (QueueStatus.QUEUED, QueueStatus.RUNNING):
                continue  # still carried: a worker has it, or will
            if status is QueueStatus.CANCELLED and job.status is JobStatus.RUNNING:
                self._lifecycle.finish(
                    job.id,
                    JobStatus.CANCELLED,
                    "cancelled while running (jobd restarted before its worker answered)",
                    expect=_RUNNING,
                )
            else:
                self._lose(job.lease)

    def tick(self, now: float) -> float | None:
        with self._lock:
            lost, self._lost = self._lost, []
        for lease in lost:
            self._lose(lease)
        waiting = self._store.pulls.unleased(ROUND)
        for job in waiting:
            if job.due_at is not None and job.due_at > now:
                return job.due_at - now
            if self._offer(job) is None and not self.manages(job.service):
                self.set_aside(
                    f"job {job.id!r}",
                    f"its service {job.service!r} is no longer a pull service; cancel it",
                )
        return 0.0 if len(waiting) == ROUND else None

    def _lose(self, lease: int) -> None:
        with self._lock:
            job = self._store.pulls.by_lease(lease)
            if job is None or job.status.terminal or job.id in self._receiving:
                return
        if job.status is JobStatus.RUNNING and job.attempts >= MAX_LOST:
            self._lifecycle.finish(
                job.id,
                JobStatus.FAILED,
                f"its worker was lost during each of its {job.attempts} runs; not run again",
                expect=_RUNNING,
            )
            return
        seconds = self._services.of(job.service).heartbeat_timeout
        self._reoffer(
            lease,
            f"its worker was lost (no heartbeat for {seconds}s); queued again for another worker",
            count_run=True,
        )

    def _lost_if_over(self, lease: int) -> None:
        """After a result that could not be taken: a run whose carrier ended meanwhile is
        lost (the monitor passed it over while the result arrived)."""
        carrier = self._store.queues.job(lease)
        if carrier is None or carrier.status is QueueStatus.TIMED_OUT:
            self._lose(lease)

    def _reoffer(self, lease: int, message: str, *, count_run: bool) -> Job | None:
        job = self._store.pulls.by_lease(lease)
        if job is None:
            return None
        again = self._store.pulls.reoffer(lease, self._carrier(job), message, count_run=count_run)
        if again is not None:
            log.info("job %s: QUEUED (%s; queue job %s)", job.id, message, again.lease)
            self._queued()
        return again

    # -- helpers --------------------------------------------------------------------------------

    def _leased(self, lease: int) -> Job:
        job = self._store.pulls.by_lease(lease)
        if job is not None:
            return job
        carrier = self._store.queues.job(lease)
        if carrier is not None and self.manages(carrier.queue):
            raise Conflict(
                f"queue job {lease} no longer carries its job: the run was given to another"
                f" worker (it is {carrier.status.value}); what this run sends is not taken"
            )
        raise NotFound(f"queue job {lease} carries no job of a pull service")

    def _running(self, lease: int) -> Job:
        """The job running under `lease`: a lease that was replaced is refused."""
        job = self._leased(lease)
        if job.status is not JobStatus.RUNNING:
            raise Conflict(
                f"queue job {lease} no longer carries a running job: job {job.id!r} is"
                f" {job.status.value}; this run's result is not taken"
            )
        return job

    def _cancelled(self, lease: int) -> bool:
        carrier = self._store.queues.job(lease)
        return carrier is not None and carrier.status is QueueStatus.CANCELLED

    def _end_carrier(self, lease: int, status: QueueStatus) -> None:
        """Ocypod's own end of a carrier (for /info's counts); one already ended stays."""
        now = time.time()

        def step(job: QueueJob) -> tuple[QueueJob | None, str | None]:
            try:
                return move(job, status, now)
            except Conflict:
                return job, None

        changed = self._store.queues.change(lease, step)
        if changed is not None and changed.due_at is not None:
            self._note_due(changed.due_at)


def pull_number(text: str) -> int:
    """A lease in a route: a queue job's id."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise BadRequest(f"{text[:40]!r} is not a queue job id (a whole number)")
    return int(text)


def _copy(body: BinaryIO, path: Path) -> None:
    with open(path, "wb") as out:
        while block := body.read(CHUNK):
            out.write(block)


def run_spec(job: Job) -> dict[str, object]:
    """What a worker that claimed the job needs to run it."""
    return {
        "job": job.id,
        "attempt": job.attempt,
        "timeout": job.timeout,
        "env": job.environment,
        "limits": {"memory": job.memory_limit, "processes": job.process_limit},
    }
