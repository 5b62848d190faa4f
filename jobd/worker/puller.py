"""The worker's threads: each pulls a job from the central jobd, runs it as serve's local runner
would (the same executor, sandbox, time limit and process-tree kills), heartbeats its carrier
while it runs and until its result is in, and sends the result zip back.

A heartbeat the central jobd refuses says why: the job was cancelled (run.sh's tree is ended
and what it wrote is sent, as a local cancel keeps it), or the run was given to another
worker (the tree is ended and nothing is sent)."""

from __future__ import annotations

import contextlib
import enum
import logging
import shutil
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from jobd.config.options import WorkerConfig
from jobd.errors import JobdError
from jobd.formats.archive import Limits, extract, zip_directory
from jobd.models import JobLimits
from jobd.run import procs
from jobd.run.executors.local import LocalExecutor, Run, StartError
from jobd.run.executors.runsh import STDERR, STDOUT
from jobd.store.layout import Layout
from jobd.worker.central import Central, Pulled, Refused, Stopped, heartbeat_every

log = logging.getLogger("jobd")

#: A dequeue waits this long for a job (the central jobd holds it); a SIGTERM waits for it too.
LONG_POLL = 5.0
#: A dequeue the central jobd could not hold (its threads are busy) is tried again after
#: this, doubling up to the last.
POLL_FIRST, POLL_LAST = 0.05, 1.0


class Cut(enum.Enum):
    """Why a run on this worker is ended early; the first two are told to the central jobd
    (`stop=`), the others send nothing."""

    CANCEL = "cancel"
    TIMEOUT = "timeout"
    LOST = "lost"  # the run was given to another worker
    HANDBACK = "handback"  # this worker stops


@dataclass
class _Active:
    """A run on this worker, and why it is being ended early, if it is."""

    pulled: Pulled
    run: Run | None = None
    stop: Cut | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Puller:
    def __init__(
        self,
        config: WorkerConfig,
        central: Central,
        executor: LocalExecutor,
        layout: Layout,
        heartbeat_timeout: int,
        stopping: threading.Event,
    ) -> None:
        self._config = config
        self._central = central
        self._executor = executor
        self._layout = layout
        self._beat_every = heartbeat_every(heartbeat_timeout)
        self._stopping = stopping
        self._limits = Limits(config.max_unpacked, config.max_files)
        self._lock = threading.Lock()
        self._active: dict[int, _Active] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for number in range(self._config.workers):
            thread = threading.Thread(target=self._work, name=f"puller-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def running(self) -> int:
        with self._lock:
            return len(self._active)

    def stop(self) -> None:
        """After a stop was asked: runs get --kill-grace to end on their own and send their
        results; those still running are ended and handed back for another worker."""
        deadline = time.monotonic() + self._config.kill_grace
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            left = list(self._active.values())
            for active in left:
                active.stop = active.stop or Cut.HANDBACK
        self._executor.terminate(*(a.run for a in left if a.run is not None))
        for thread in self._threads:
            thread.join(timeout=30)

    # -- one thread -------------------------------------------------------------------------

    def _work(self) -> None:
        poll = POLL_FIRST
        while not self._stopping.is_set():
            asked = time.monotonic()
            try:
                pulled = self._central.dequeue(self._config.service, LONG_POLL)
            except Stopped:
                return
            except Refused as exc:
                log.error("the central jobd refused a pull: %s (HTTP %s)", exc, exc.status)
                pulled = None
            if pulled is None:
                if time.monotonic() - asked < LONG_POLL / 2:  # not held: do not spin
                    self._stopping.wait(poll)
                    poll = min(poll * 2, POLL_LAST)
                continue
            poll = POLL_FIRST
            if self._stopping.is_set():  # taken as the stop came: another worker runs it
                with contextlib.suppress(Refused, Stopped):
                    self._central.hand_back(pulled.lease)
                return
            try:
                self._take(pulled)
            except Stopped:
                return
            except Exception:  # one job never ends the worker
                log.exception("job %s: the worker failed while running it", pulled.job_id)

    def _take(self, pulled: Pulled) -> None:
        try:
            spec = self._central.claim(pulled.lease)
        except Refused as exc:
            log.info("queue job %s: not taken: %s", pulled.lease, exc)
            return
        job_id = str(spec["job"])
        jobdir = self._layout.job_dir(job_id)  # checks the ID before it names a folder
        workdir = jobdir / "work"
        shutil.rmtree(jobdir, ignore_errors=True)
        jobdir.mkdir(parents=True)
        active = _Active(pulled)
        with self._lock:
            self._active[pulled.lease] = active
        beating = threading.Thread(
            target=self._beat, args=(active,), name=f"beat-{pulled.lease}", daemon=True
        )
        beating.start()
        try:
            log.info("job %s: RUNNING here (queue job %s)", job_id, pulled.lease)
            query = self._run(spec, jobdir, workdir, active)
            if active.stop is Cut.LOST:
                log.warning("job %s: given to another worker; its run here was ended", job_id)
            elif active.stop is Cut.HANDBACK:
                self._central.hand_back(pulled.lease)
                log.info("job %s: handed back to the central jobd", job_id)
            elif query is not None:
                self._send(pulled.lease, workdir, jobdir / "result.zip", query)
                log.info("job %s: result sent", job_id)
        except Refused as exc:  # the job was cancelled or given to another worker
            log.warning("job %s: the central jobd refused: %s", job_id, exc)
        except Stopped:  # stopped before run.sh started: another worker runs it
            with contextlib.suppress(Refused, Stopped):
                self._central.hand_back(pulled.lease)
            raise
        finally:
            active.done.set()
            beating.join()
            with self._lock:
                del self._active[pulled.lease]
            shutil.rmtree(jobdir, ignore_errors=True)

    def _run(
        self, spec: dict, jobdir: Path, workdir: Path, active: _Active
    ) -> dict[str, str] | None:
        """Run the job; the result's query (how it ended), or None if it was not run."""
        self._central.fetch_input(active.pulled.lease, jobdir / "input.zip")
        try:
            extract(jobdir / "input.zip", workdir, self._limits)
        except JobdError as exc:  # e.g. over this worker's --max-unpacked: said, not retried
            workdir.mkdir(exist_ok=True)
            return {"code": "0", "error": f"this worker cannot unpack the input: {exc}"}
        limits = spec.get("limits") or {}
        with self._lock:
            if self._stopping.is_set():  # the stop came as it was being taken: not started
                active.stop = Cut.HANDBACK
                return None
        try:
            run = self._executor.start(
                workdir,
                {str(k): str(v) for k, v in spec["env"].items()},
                JobLimits(
                    _least(limits.get("memory"), self._config.job_memory),
                    _least(limits.get("processes"), self._config.job_processes),
                ),
            )
        except StartError as exc:
            return {"code": "0", "error": str(exc)[:2000]}
        with self._lock:
            active.run = run
            stopping = active.stop
        if stopping:
            self._executor.terminate(run)
        timeout = spec.get("timeout")
        if not self._executor.wait(run, float(timeout) if timeout else None):
            with self._lock:
                active.stop = active.stop or Cut.TIMEOUT
            self._executor.terminate(run)
        code = self._executor.reap(run)
        query = {"code": str(code), "pgid": str(run.pgid)}
        if active.stop in (Cut.CANCEL, Cut.TIMEOUT):
            query["stop"] = active.stop.value
        if run.out_of_memory and run.cell.limits.memory is not None:
            query["oom"] = str(run.cell.limits.memory)
        return query

    def _send(self, lease: int, workdir: Path, zipped: Path, query: dict[str, str]) -> None:
        """The job's folder, zipped; one larger than the central jobd takes (413) is sent
        as its output alone, saying so, and the job ends FAILED."""
        zip_directory(workdir, zipped)
        try:
            self._central.send_result(lease, zipped, query)
            return
        except Refused as exc:
            if exc.status != 413:
                raise
            why = f"its result ({zipped.stat().st_size} bytes) is too large: {exc}"
        with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as logs_only:
            for name in (STDOUT, STDERR):
                if (workdir / name).is_file():
                    logs_only.write(workdir / name, name)
        self._central.send_result(lease, zipped, {**query, "error": why[:2000]})

    def _beat(self, active: _Active) -> None:
        """Until the run's result is in: a refused beat ends the run."""
        lease = active.pulled.lease
        while not active.done.wait(self._beat_every):
            try:
                status = self._central.beat(lease)
            except Exception as exc:  # unreachable for now: the next beat tries again
                log.debug("queue job %s: heartbeat not sent: %s", lease, exc)
                continue
            if status == "running" or active.stop in (Cut.CANCEL, Cut.LOST):
                continue
            with self._lock:
                active.stop = Cut.CANCEL if status == "cancelled" else Cut.LOST
                run = active.run
            log.info("job %s: %s", active.pulled.job_id, f"its carrier is {status}; ending it")
            if run is not None:
                self._executor.terminate(run)


def _least(asked: object, most: int | None) -> int | None:
    values = [int(v) for v in (asked, most) if isinstance(v, int)]
    return min(values) if values else None


def end_leftovers(layout: Layout) -> None:
    """At start: what an earlier worker on this data dir left running (it was killed) ends,
    and its folders go (the central jobd runs those jobs again)."""
    for jobdir in sorted(layout.jobs.iterdir()) if layout.jobs.is_dir() else ():
        tree = procs.leftovers(None, None, procs.mark_for(jobdir / "work"))
        if procs.end_all([tree], 0):
            log.info("ended what an earlier worker left running in %s", jobdir.name)
        shutil.rmtree(jobdir, ignore_errors=True)
