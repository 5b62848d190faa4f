"""--workers holds, measured from inside the jobs; FIFO order; the dispatcher is event-driven."""

from __future__ import annotations

import itertools
import statistics
import time

from conftest import max_overlap, read_times, timed_job


def _run_all(daemon, shared, count: int, body: str) -> list[tuple[float, float]]:
    names = [f"job{i}" for i in range(count)]
    ids = [daemon.submit({"run.sh": timed_job(shared, name, body)})["ID"] for name in names]
    for job_id in ids:
        job = daemon.wait_done(job_id)
        assert job["Status"] == "SUCCESS", job
    intervals = []
    for name in names:
        starts, ends = read_times(shared, name)
        assert len(starts) == 1 and len(ends) == 1, f"{name} ran {len(starts)} times"
        intervals.append((starts[0], ends[0]))
    return intervals


def test_never_more_than_workers_at_once(jobd, shared):
    daemon = jobd.start("--workers", "2")
    intervals = _run_all(daemon, shared, 6, "sleep 0.4")
    assert max_overlap(intervals) == 2, intervals


def test_fifo_and_no_idle_gaps_with_one_worker_from_env(jobd, shared):
    daemon = jobd.start(env={"JOBD_WORKERS": "1"})
    submitted = time.time()
    intervals = _run_all(daemon, shared, 5, "sleep 0.15")
    assert max_overlap(intervals) == 1, intervals
    starts = [start for start, _ in intervals]
    assert starts == sorted(starts), "jobs did not start in the order they were submitted"
    # An upload wakes the dispatcher, and a finished job starts the next one, at once:
    # a dispatcher that polls once a second leaves gaps of up to a second.
    assert starts[0] - submitted < 0.5, f"first job started {starts[0] - submitted:.2f}s late"
    gaps = [nxt[0] - cur[1] for cur, nxt in itertools.pairwise(intervals)]
    assert statistics.median(gaps) < 0.25 and max(gaps) < 0.75, gaps
