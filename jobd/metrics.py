"""Prometheus metrics, each named jobd_*, in a registry of the daemon's own."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from jobd.models import Job, JobStatus

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


#: What a schedule's slot came to (jobd_schedule_runs' status label).
_SCHEDULE_OUTCOMES = ("started", JobStatus.SKIPPED.value, "disabled")


class Metrics:
    def __init__(
        self,
        counts: Callable[[], dict[str, int]],
        disk_free: Callable[[], float],
        by_service: Callable[[], list[tuple[str, int, str, int]]],
        by_queue: Callable[[], dict[str, dict[str, int]]],
        commits: Callable[[], int],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._submitted = Counter("jobd_jobs_submitted", "Jobs accepted.", ["backend"], registry=r)
        self._finished = Counter(
            "jobd_jobs_finished", "Jobs that ended, by final status.", ["status"], registry=r
        )
        self._duration = Histogram(
            "jobd_job_duration_seconds",
            "From start to end of finished jobs.",
            buckets=(0.01, 0.1, 0.5, 1, 5, 30, 60, 300, 1800, 3600, 6 * 3600, 24 * 3600),
            registry=r,
        )
        self._upload = Histogram(
            "jobd_upload_size_bytes",
            "Size of the zips uploaded.",
            buckets=tuple(10**n for n in range(3, 11)),
            registry=r,
        )
        self._schedule_runs = Counter(
            "jobd_schedule_runs",
            "Runs of schedules, by outcome at their start (started, SKIPPED).",
            ["schedule", "status"],
            registry=r,
        )
        self._callbacks = Counter(
            "jobd_callback_deliveries", "Callback attempts, by outcome.", ["result"], registry=r
        )
        for status in (JobStatus.QUEUED, JobStatus.RUNNING):
            gauge = Gauge(
                f"jobd_jobs_{status.value.lower()}", f"Jobs {status.value} now.", registry=r
            )
            gauge.set_function(functools.partial(_count, counts, status))
        free = Gauge("jobd_disk_free_bytes", "Free bytes on the data dir's disk.", registry=r)
        free.set_function(disk_free)
        r.register(_ServiceJobs(by_service))
        r.register(_QueueJobs(by_queue))
        r.register(_Commits(commits))

    def submitted(self, job: Job, size: int) -> None:
        self._submitted.labels("slurm" if job.slurml else "local").inc()
        self._upload.observe(size)

    def finished(self, job: Job) -> None:
        self._finished.labels(job.status.value).inc()
        if job.started_at is not None and job.finished_at is not None:
            self._duration.observe(max(0.0, job.finished_at - job.started_at))

    def schedule_run(self, schedule: str, status: str) -> None:
        self._schedule_runs.labels(schedule, status).inc()

    def forget_schedule(self, schedule: str) -> None:
        """A deleted schedule's series go (a scrape would show them for ever otherwise)."""
        for status in _SCHEDULE_OUTCOMES:
            with contextlib.suppress(KeyError):  # none of this outcome
                self._schedule_runs.remove(schedule, status)

    def callback(self, result: str) -> None:
        self._callbacks.labels(result).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _count(counts: Callable[[], dict[str, int]], status: JobStatus) -> float:
    return counts()[status.value]


class _ServiceJobs(Collector):
    """jobd_service_jobs{service, status}: queued and running jobs per service, read at each
    scrape (a labelled gauge cannot be read from a function)."""

    def __init__(self, by_service: Callable[[], list[tuple[str, int, str, int]]]) -> None:
        self._by_service = by_service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "jobd_service_jobs",
            "Queued and running jobs, by service.",
            labels=["service", "status"],
        )
        totals: dict[tuple[str, str], int] = {}
        for service, _, status, count in self._by_service():
            totals[service, status] = totals.get((service, status), 0) + count
        for service in sorted({service for service, _ in totals}):
            for status in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
                family.add_metric([service, status], totals.get((service, status), 0))
        yield family


class _QueueJobs(Collector):
    """jobd_queue_jobs{queue, status}: the jobs of each of Ocypod's queues, by status."""

    def __init__(self, by_queue: Callable[[], dict[str, dict[str, int]]]) -> None:
        self._by_queue = by_queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "jobd_queue_jobs",
            "Jobs of each queue (Ocypod's API), by status; queued is the queue's size.",
            labels=["queue", "status"],
        )
        for queue, counts in self._by_queue().items():
            for status, count in counts.items():
                family.add_metric([queue, status], count)
        yield family


class _Commits(Collector):
    """The store's write transactions: a job's cost in commits, watched without timing."""

    def __init__(self, commits: Callable[[], int]) -> None:
        self._commits = commits

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "jobd_store_commits", "SQLite write transactions committed.", value=self._commits()
        )
