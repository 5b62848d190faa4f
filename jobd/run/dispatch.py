"""Which queued job a free local worker takes next: the queue policy, asked by the local runner.

Jobs wait in one queue per (service, user), oldest first. The next job is the head of the
queue whose user was served least recently (never served first; ties by the oldest job),
among users under their service's limits: `runs_per_user` of theirs running in that service,
and `max_runs` of the service's. Jobs sent without a user (/api/upload, /submit) are one
anonymous user of the default service, held by the service's max_runs only. `--workers`
stays the ceiling for all. Choosing costs O(users with queued jobs), never a scan of the
queued jobs; the order (job seq) and the turns (stored when a job starts) survive a restart.

A retry waits out its backoff outside the queues, ordered by when it is due, and then joins
its user's queue by age. A policy only chooses; the runner claims the job, so a choice that
lost a race is harmless: the runner drops it and asks again.
"""

from __future__ import annotations

import bisect
import heapq
import time
from collections import Counter, deque
from collections.abc import Iterable
from typing import Protocol

from jobd.config.services import Services
from jobd.models import ANONYMOUS, Job
from jobd.store import Store

Key = tuple[str, int]  # (service, user key)


class Policy(Protocol):
    def load(self) -> None:
        """Read the queued jobs from the store (at start, after recovery)."""

    def add(self, job: Job) -> None:
        """A job was queued."""

    def next_job(self, running: Iterable[Job]) -> str | None:
        """The ID of the queued job to start now, given the local jobs running; None if
        none may start."""

    def started(self, job: Job) -> None:
        """The chosen job was claimed: it left its queue and its user was served."""

    def drop(self, job_id: str) -> None:
        """The chosen job could not be claimed (cancelled meanwhile): forget it."""

    def next_due(self) -> float | None:
        """When the next job waiting for its time becomes due, if any waits."""


class Fair:
    def __init__(self, store: Store, services: Services) -> None:
        self._store = store
        self._services = services
        self._queues: dict[Key, deque[tuple[int, str]]] = {}
        self._served: dict[Key, int] = {}
        self._turn = 0  # the latest turn given
        self._later: list[tuple[float, int, str, Key]] = []  # a heap: (due, seq, id, key)

    def load(self) -> None:
        self._queues.clear()
        self._later.clear()
        self._served = self._store.turns.all()
        self._turn = max(self._served.values(), default=0)
        for job in self._store.jobs.queued_local():
            self.add(job)

    def add(self, job: Job) -> None:
        key = (job.service, job.user_key)
        if job.due_at is not None and job.due_at > time.time():
            heapq.heappush(self._later, (job.due_at, job.seq, job.id, key))
        else:
            self._enqueue(key, job.seq, job.id)

    def next_due(self) -> float | None:
        return self._later[0][0] if self._later else None

    def _enqueue(self, key: Key, seq: int, job_id: str) -> None:
        queue = self._queues.setdefault(key, deque())
        if not queue or queue[-1][0] < seq:
            queue.append((seq, job_id))
        else:  # a retry that came due: it goes in by its age, ahead of younger jobs
            bisect.insort(queue, (seq, job_id))

    def next_job(self, running: Iterable[Job]) -> str | None:
        now = time.time()
        while self._later and self._later[0][0] <= now:
            _, seq, job_id, key = heapq.heappop(self._later)
            self._enqueue(key, seq, job_id)
        by_service: Counter[str] = Counter()
        by_user: Counter[Key] = Counter()
        for job in running:
            by_service[job.service] += 1
            by_user[job.service, job.user_key] += 1
        best: tuple[int, int, str] | None = None
        for key, queue in list(self._queues.items()):
            if not queue:
                del self._queues[key]
                continue
            service, user = key
            settings = self._services.of(service)
            per_user = settings.max_runs if user == ANONYMOUS else settings.runs_per_user
            if by_service[service] >= settings.max_runs or by_user[key] >= per_user:
                continue
            seq, job_id = queue[0]
            rank = (self._served.get(key, 0), seq, job_id)
            if best is None or rank < best:
                best = rank
        return best[2] if best else None

    def started(self, job: Job) -> None:
        self._remove((job.service, job.user_key), job.id)
        self._turn += 1  # as the store counts it, in the claim's commit
        self._served[job.service, job.user_key] = self._turn

    def drop(self, job_id: str) -> None:
        for key, queue in self._queues.items():
            if queue and queue[0][1] == job_id:
                self._remove(key, job_id)
                return

    def _remove(self, key: Key, job_id: str) -> None:
        queue = self._queues.get(key)
        if queue and queue[0][1] == job_id:
            queue.popleft()
        elif queue:  # not at the head (a re-queued job went first): rare, so a scan is fine
            self._queues[key] = deque(entry for entry in queue if entry[1] != job_id)
