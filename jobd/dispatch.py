"""Which queued job a free local worker takes next: the queue policy, asked by the local runner.

A policy only chooses; the runner claims the job, so a choice that lost a race is harmless.
"""

from __future__ import annotations

from typing import Protocol

from jobd.models import Job
from jobd.store import Store


class Policy(Protocol):
    def next_job(self) -> Job | None:
        """The queued local job to start now, if any."""
        ...


class Fifo:
    """First in, first out: the oldest queued job."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def next_job(self) -> Job | None:
        return self._store.first_queued_local()
