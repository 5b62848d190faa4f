"""Intake: every wire shape of a new job becomes a JobSpec and a staged folder, checked whole
before anything is kept; `accept` then moves it into place, records it and launches it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from jobd.config.options import Config
from jobd.errors import BadRequest, Gone, IdTaken, JobdError, is_full
from jobd.formats.archive import Base64Writer, Limits, extract, write_files, zip_directory
from jobd.formats.jsonstream import scan_object
from jobd.jobs.callbacks import check_callback_url
from jobd.jobs.limits import effective
from jobd.jobs.pulled import PullRunner
from jobd.jobs.upload import read_upload
from jobd.metrics import Metrics
from jobd.models import (
    DEFAULT_SERVICE,
    NO_LIMITS,
    NO_RETRY,
    Job,
    JobLimits,
    JobSpec,
    JobStatus,
    RetryPolicy,
)
from jobd.run.local_runner import LocalRunner
from jobd.run.slurm_runner import SlurmRunner
from jobd.store import Store
from jobd.store.disk import Disk
from jobd.store.layout import Layout

log = logging.getLogger("jobd")


class Intake:
    def __init__(
        self,
        config: Config,
        store: Store,
        layout: Layout,
        metrics: Metrics,
        limits: Limits,
        disk: Disk,
        local: LocalRunner,
        slurm: SlurmRunner,
        pulls: PullRunner,
    ) -> None:
        self._config = config
        self._store = store
        self._layout = layout
        self._metrics = metrics
        self._local = local
        self._slurm = slurm
        self._pulls = pulls
        self._limits = limits
        self._disk = disk

    def upload(self, body: BinaryIO, limit: int, user_id: int | None = None) -> Job:
        """`POST /api/upload`: JSON with the base64 zip, decoded to disk as it arrives; the
        job is `user_id`'s when a user's token sent it."""
        with self._staging() as staging:
            with open(staging / "input.zip", "wb") as kept:
                decoder = Base64Writer(kept)
                upload = read_upload(body, limit, decoder.write)
                decoder.close()
            callback = upload.callback_url
            if callback is not None:
                callback = check_callback_url(callback, self._config.callback_allow)
            service = self._declared(upload.service, upload.slurml)
            limits = self.limits(upload.limits, service, upload.slurml)
            job_id = upload.job_id or str(uuid.uuid4())
            if self._store.jobs.exists(job_id):
                raise IdTaken(job_id)
            extract(staging / "input.zip", staging / "work", self._limits)
            spec = JobSpec(
                job_id,
                slurml=upload.slurml,
                timeout=upload.timeout or self._default_timeout(service),
                callback_url=callback,
                slurm_options=upload.slurm_options,
                env=upload.env,
                retry=upload.retry or self._default_retry(service),
                callback_auth=upload.callback_auth,
                user_id=user_id,
                service=service,
                pulled=self._pulls.pulled(service),
                memory_limit=limits.memory,
                process_limit=limits.processes,
            )
            return self.accept(spec, staging)

    def files(
        self,
        parts: list[tuple[str, BinaryIO]],
        user_id: int | None = None,
        service: str = DEFAULT_SERVICE,
        retry: RetryPolicy | None = None,
        limits: JobLimits = NO_LIMITS,
    ) -> Job:
        """`POST /submit` and `POST /upload`: separate files, run locally. They are zipped as
        the kept input, so a restart can run the job again."""
        granted = self.limits(limits, service, slurml=False)
        with self._staging() as staging:
            write_files(parts, staging / "work", self._limits)
            zip_directory(staging / "work", staging / "input.zip")
            spec = JobSpec(
                str(uuid.uuid4()),
                timeout=self._default_timeout(service),
                user_id=user_id,
                service=service,
                pulled=self._pulls.pulled(service),
                retry=retry or self._default_retry(service),
                memory_limit=granted.memory,
                process_limit=granted.processes,
            )
            return self.accept(spec, staging)

    def zip_and_fields(
        self, body: BinaryIO, limit: int, keep: Callable[[dict[str, object]], Path]
    ) -> dict[str, object]:
        """A JSON body with a base64 zip in `input` that is kept, not run (a schedule's): the
        zip checked exactly like an upload's, then moved to where `keep` (which checks the
        other fields first) says; the other fields returned."""
        with self._staging() as staging:
            with open(staging / "input.zip", "wb") as kept:
                decoder = Base64Writer(kept)
                fields = scan_object(body, limit, "input", decoder.write, '{"input": "<base64>"}')
                decoder.close()
            fields = {name.lower(): value for name, value in fields.items()}
            if fields.get("input") is not True:
                raise BadRequest(
                    "'input' is missing or not a string; it must hold the zip, base64-encoded"
                )
            extract(staging / "input.zip", staging / "work", self._limits)
            target = keep(fields)
            target.parent.mkdir(exist_ok=True)
            os.replace(staging / "input.zip", target)
            return fields

    def from_zip(self, source: Path, spec: JobSpec) -> Job:
        """A job from a kept zip (a schedule's run): unpacked afresh, then accepted."""
        with self._staging() as staging:
            shutil.copyfile(source, staging / "input.zip")
            extract(staging / "input.zip", staging / "work", self._limits)
            return self.accept(spec, staging)

    def again(self, job: Job) -> Job:
        """A new job from a finished one's kept input and settings (`jobd retry`): a fresh
        ID and attempt count, its service's runner as it is now; not a schedule's run."""
        source = self._layout.input_zip(job.id)
        spec = JobSpec(
            str(uuid.uuid4()),
            slurml=job.slurml,
            timeout=job.timeout,
            callback_url=job.callback_url,
            user_id=job.user_id,
            service=job.service,
            env=tuple(json.loads(job.env).items()),
            retry=job.retry,
            callback_auth=job.callback_auth,
            memory_limit=job.memory_limit,
            process_limit=job.process_limit,
            pulled=self._pulls.pulled(job.service),
        )
        try:
            return self.from_zip(source, spec)
        except FileNotFoundError:  # never kept (a skipped run), or removed meanwhile
            raise Gone(f"job {job.id!r} cannot run again: its input is no longer kept") from None

    def accept(self, spec: JobSpec, staged: Path) -> Job:
        """Keep a staged job (`input.zip` and `work/`) and launch it; nothing is kept if
        it cannot be launched."""
        if spec.slurml:
            self._slurm.check_available()
        target = self._layout.job_dir(spec.id)
        size = (staged / "input.zip").stat().st_size
        try:
            os.rename(staged, target)  # claims the ID on disk: a racing twin fails here
        except OSError as exc:
            if is_full(exc):
                raise
            raise IdTaken(spec.id) from None
        now = time.time()
        job = Job(
            spec.id,
            JobStatus.QUEUED,
            slurml=spec.slurml,
            timeout=spec.timeout,
            callback_url=spec.callback_url,
            created_at=now,
            updated_at=now,
            user_id=spec.user_id,
            service=spec.service,
            env=json.dumps(dict(spec.env)),
            max_attempts=spec.retry.max_attempts,
            retry_initial=spec.retry.initial_interval,
            retry_max=spec.retry.max_interval,
            retry_multiplier=spec.retry.multiplier,
            callback_auth=spec.callback_auth,
            schedule=spec.schedule,
            memory_limit=spec.memory_limit,
            process_limit=spec.process_limit,
            pulled=spec.pulled,
        )
        try:
            self._store.jobs.insert(job)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        log.info("job %s: QUEUED", job.id)
        self._metrics.submitted(job, size)
        runner = self._slurm if spec.slurml else self._pulls if spec.pulled else self._local
        try:
            return runner.launch(job, spec)
        except JobdError:  # refused before it reached Slurm: the job was never accepted
            self._store.jobs.delete(job.id)
            self._layout.remove_job(job.id)
            raise

    def limits(
        self, asked: JobLimits, service: str, slurml: bool, *, clamp: bool = False
    ) -> JobLimits:
        """The limits a job runs with (see jobs/limits.py); none for a Slurm job, which
        Slurm's own options govern."""
        return NO_LIMITS if slurml else effective(asked, service, self._config, clamp=clamp)

    def _declared(self, service: str | None, slurml: bool) -> str:
        """/api/upload's `service`: one this jobd declares (a typo would wait for ever)."""
        if service is None or service == DEFAULT_SERVICE:
            return DEFAULT_SERVICE
        declared = sorted(self._config.services.declared)
        if service not in declared:
            known = ", ".join(declared) or "none are declared: see --service"
            raise BadRequest(f"'service' {service!r} is not a service of this jobd ({known})")
        if slurml and self._pulls.pulled(service):
            raise BadRequest(
                f"service {service!r} is pulled by workers (runner=pull): its jobs cannot go"
                " to Slurm; leave out 'slurml'"
            )
        return service

    def _default_retry(self, service: str) -> RetryPolicy:
        """A job that asks for no retries gets its service's (--service NAME:retry=N)."""
        attempts = self._config.services.of(service).retry
        return RetryPolicy(max_attempts=attempts) if attempts else NO_RETRY

    def _default_timeout(self, service: str) -> float | None:
        """A job that names no time limit gets its service's, else --timeout."""
        return self._config.services.of(service).timeout or self._config.timeout

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        """A fresh folder under tmp/, gone afterwards: moved into place, or removed. A disk
        that fills up on the way is a 507, whichever write found it full."""
        self._disk.check_room()
        try:
            staging = self._layout.staging()
            try:
                yield staging
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        except (OSError, sqlite3.OperationalError) as exc:
            if is_full(exc):
                raise self._disk.full() from None
            raise
