#!/usr/bin/env python3
"""What the daemon itself costs per job, in one run, beside the physical floor.

    python bench/cost.py [--burst 500] [--stored 10000] [--tmp-dir /dev/shm]

Starts its own daemon (``python -m jobd serve``, or ``$JOBD_EXE serve``) on a free loopback
port with a fresh data dir, and measures, with a trivial run.sh (``echo hello``):

- the floor: the same run.sh started directly (subprocess), 200 times;
- submit -> result, one job at a time over one keep-alive connection (median and p95), and
  its ratio to the floor;
- a burst of trivial jobs from 8 clients: jobs/s, and the daemon's CPU per job (user +
  system of the daemon's own processes over the burst, divided by the jobs; run.sh's CPU is
  its children's, not counted);
- the same burst from 1 client (submits back to back, then collects);
- GET of one finished job (a small result) with --stored jobs in the store, and /health:
  the median of 1,000 requests over one keep-alive connection;
- the server's floor for those two: the same 1,000 GETs of a bare Bottle app on waitress,
  with jobd's server settings, that answers a small JSON and logs nothing.

Prints each figure with its target (issue 24's) and exits 0 whatever they are; 1 only when
the daemon misbehaved. Stops the daemon by the PID it started and removes what it made.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import (
    BenchError,
    Daemon,
    LeanClient,
    check_success,
    descendants,
    free_port,
    get_result,
    measure_floor,
    new_session,
    percentile,
    running_daemon,
    submit,
    timed_job,
    trivial_body,
)

CLIENTS = 8
#: A Bottle app on waitress, with the settings jobd's server has that bear on one small
#: answer, logging nothing: what no route of jobd's can beat on this machine.
BARE_SERVER = """
import sys, bottle, waitress
app = bottle.Bottle()
app.get("/health")(lambda: {"status": "ok", "workers": 2})
waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=8, _quiet=True,
               channel_request_lookahead=1, asyncore_use_poll=True, send_bytes=1,
               outbuf_high_watermark=256 * 1024)
"""
REQUESTS = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system time of the daemon and its jobd processes (a frozen binary's loader
    and its Python), read while no run.sh is alive."""
    total = 0.0
    for each in (pid, *descendants(pid)):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return total


def burst(base: str, body: bytes, count: int, clients: int) -> float:
    """Submit `count` jobs from `clients` threads, then collect them; the seconds it took."""
    sessions = [new_session() for _ in range(clients)]
    try:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            start = time.perf_counter()

            def run(share: int) -> None:
                session = sessions[share]
                ids = [submit(session, base, body) for _ in range(share, count, clients)]
                for job_id in ids:
                    check_success(get_result(session, base, job_id))

            list(pool.map(run, range(clients)))
            return time.perf_counter() - start
    finally:
        for session in sessions:
            session.close()


def fill(base: str, body: bytes, stored: int) -> None:
    """Bring the store to `stored` jobs (not timed)."""
    if stored > 0:
        burst(base, body, stored, CLIENTS)


def median_ms(base: str, path: str, count: int = REQUESTS) -> float:
    client = LeanClient(base)
    try:
        times = []
        for _ in range(count):
            start = time.perf_counter()
            status, _ = client.call("GET", path)
            times.append(time.perf_counter() - start)
            if status != 200:
                raise BenchError(f"GET {path}: expected 200, got {status}")
    finally:
        client.close()
    return statistics.median(times) * 1000


def server_floor_ms(work: Path) -> float:
    port = free_port()
    argv = [sys.executable, "-c", BARE_SERVER, str(port)]
    bare = Daemon(argv, f"http://127.0.0.1:{port}", work / "bare-server.log")
    bare.start(work, 30)
    try:
        return median_ms(bare.base_url, "/health")
    finally:
        bare.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=500, help="jobs in each burst")
    parser.add_argument("--stored", type=int, default=10_000, help="jobs in the store")
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--tmp-dir", default=None, help="where the data dir goes")
    args = parser.parse_args(argv)
    notes: list[str] = []
    body = trivial_body()
    with tempfile.TemporaryDirectory(prefix="jobd-cost-", dir=args.tmp_dir) as scratch:
        work = Path(scratch)
        floor = measure_floor(work, args.latency_jobs)
        with running_daemon(work, "cost", [], 30, notes) as daemon:
            base = daemon.base_url
            client = LeanClient(base)
            try:
                for _ in range(10):  # warm up
                    timed_job(client, body)
                latencies = [timed_job(client, body)[0] for _ in range(args.latency_jobs)]
                finished = timed_job(client, body)[2]["ID"]
            finally:
                client.close()
            cpu_before = cpu_seconds(daemon.pid)
            eight = burst(base, body, args.burst, CLIENTS)
            cpu_per_job = (cpu_seconds(daemon.pid) - cpu_before) / args.burst * 1000
            one = burst(base, body, args.burst, 1)
            done = 10 + args.latency_jobs + 1 + 2 * args.burst
            fill(base, body, args.stored - done)
            get_ms = median_ms(base, f"/api/get/{finished}")
            health_ms = median_ms(base, "/health")
        bare_ms = server_floor_ms(work)
    floor_ms = statistics.median(floor) * 1000
    floor_p95 = percentile(floor, 95) * 1000
    median = statistics.median(latencies) * 1000
    p95 = percentile(latencies, 95) * 1000
    rows = [
        ("floor: run.sh started directly", f"{floor_ms:.2f} ms (p95 {floor_p95:.2f})", "-"),
        ("submit -> result, median", f"{median:.2f} ms = {median / floor_ms:.1f}x floor", "<= 3x"),
        ("submit -> result, p95", f"{p95:.2f} ms = {p95 / floor_p95:.1f}x floor p95", "<= 5x"),
        (f"daemon CPU per job ({args.burst} jobs, 8 clients)", f"{cpu_per_job:.2f} ms", "<= 3 ms"),
        (f"{args.burst} jobs from 8 clients", f"{args.burst / eight:.0f} jobs/s", ">= 300"),
        (f"{args.burst} jobs from 1 client", f"{args.burst / one:.0f} jobs/s", ">= 200"),
        (
            f"GET a finished job, {args.stored} stored",
            f"{get_ms:.3f} ms = {get_ms / bare_ms:.2f}x bare server",
            "<= 0.4 ms",
        ),
        (
            "GET /health",
            f"{health_ms:.3f} ms = {health_ms / bare_ms:.2f}x bare server",
            "<= 0.3 ms",
        ),
        ("floor: bare Bottle on waitress, GET", f"{bare_ms:.3f} ms median", "-"),
    ]
    width = max(len(row[0]) for row in rows)
    print(f"jobd cost per job, {os.cpu_count()} cores, data dir in {args.tmp_dir or 'TMPDIR'}")
    for name, figure, target in rows:
        print(f"  {name.ljust(width)}  {figure:<36} target {target}")
    for note in notes:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"cost: the daemon misbehaved: {exc}", file=sys.stderr)
        sys.exit(1)
