"""The cost of listing the newest jobs (GET /api/jobs's query) with 100 and with 100,000 jobs
stored, on a real store: it should follow the page size, not the store's size.

    python bench/list_jobs.py [--limit 50] [--repeat 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobd.models import Job, JobStatus
from jobd.store import Store


def measure(stored: int, limit: int, repeat: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as scratch:
        store = Store(Path(scratch) / "jobd.db")
        now = time.time()
        statuses = (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.QUEUED)
        for n in range(stored):
            store.jobs.insert(Job(f"job-{n}", statuses[n % 3], created_at=now, updated_at=now))
        newest, by_status = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            store.jobs.newest(None, limit, None)
            middle = time.perf_counter()
            store.jobs.newest(JobStatus.FAILED, limit, stored // 2)
            newest.append(middle - started)
            by_status.append(time.perf_counter() - middle)
        store.close()
    return statistics.median(newest) * 1000, statistics.median(by_status) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    for stored in (100, 100_000):
        newest, filtered = measure(stored, args.limit, args.repeat)
        print(
            f"{stored:>7} jobs stored: newest {args.limit} {newest:.3f} ms (median),"
            f" {args.limit} FAILED from the middle {filtered:.3f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
