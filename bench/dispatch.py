"""The cost of choosing the next job: the queue policy over a real store holding QUEUED jobs
from many users, timed per choice (choose, claim, mark started), as the local runner does it.

    python bench/dispatch.py [--jobs 10000] [--users 100] [--picks 1000]

Prints the median and p95 of one choice alone and of choice + claim, and the same choice with
1,000 and 100,000 jobs queued, so the cost is seen not to grow with the queue.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobd.config.services import Services, ServiceSettings  # noqa: E402
from jobd.models import Job, JobStatus  # noqa: E402
from jobd.run.dispatch import Fair  # noqa: E402
from jobd.store import Store  # noqa: E402


def measure(jobs: int, users: int, picks: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as scratch:
        store = Store(Path(scratch) / "jobd.db")
        now = time.time()
        for n in range(jobs):
            job = Job(f"job-{n}", JobStatus.QUEUED, created_at=now, updated_at=now)
            job.user_id = n % users
            store.jobs.insert(job)
        policy = Fair(store, Services(ServiceSettings(runs_per_user=5, max_runs=64)))
        policy.load()
        choose, full = [], []
        for _ in range(picks):
            started = time.perf_counter()
            chosen = policy.next_job(())
            chose = time.perf_counter()
            assert chosen is not None
            job = store.jobs.claim(chosen)
            assert job is not None
            policy.started(job)
            done = time.perf_counter()
            choose.append(chose - started)
            full.append(done - started)
        store.close()
    return choose, full


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--picks", type=int, default=1_000)
    args = parser.parse_args()
    for jobs in sorted({1_000, args.jobs, 100_000}):
        choose, full = measure(jobs, args.users, args.picks)
        ms = [t * 1000 for t in choose]
        all_ms = [t * 1000 for t in full]
        print(
            f"{jobs:>7} queued, {args.users} users: choose median {statistics.median(ms):.3f} ms"
            f" (p95 {statistics.quantiles(ms, n=20)[-1]:.3f}),"
            f" choose + claim median {statistics.median(all_ms):.3f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
