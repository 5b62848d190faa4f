#!/usr/bin/env python3
"""Ocypod's queue API in jobd: enqueue + dequeue + complete round trips per second with 1 and
with 8 clients, and how long a dequeue takes with 100 and with 100,000 jobs queued (it should
not grow: the next job is found by an index, not a scan).

    python bench/queues.py [--trips 2000] [--deep 100000] [--dequeues 300]

A daemon (``python -m jobd``, or ``$JOBD_EXE``) runs on a free loopback port with a fresh
data dir; each client is one keep-alive connection (http.client). The deep queue is filled
through the store itself, beside the running daemon (SQLite takes both), since 100,000
POSTs would measure the filling. Exits 0 whatever the figures are; 1 when the daemon fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench import BenchError, LeanClient, running_daemon
from jobd.models import QueueJob, QueueStatus
from jobd.store import Store


def _call(client: LeanClient, method: str, path: str, body: object, want: int) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    status, answer = client.call(method, path, data)
    if status != want:
        raise BenchError(f"{method} {path}: expected {want}, got {status}: {answer[:300]!r}")
    return answer


def round_trips(base: str, queue: str, clients: int, trips: int) -> float:
    """Round trips per second: each client posts a job, takes the next one and completes it."""
    errors: list[BaseException] = []
    go = threading.Barrier(clients + 1)

    def client_loop(count: int) -> None:
        client = LeanClient(base)
        try:
            go.wait()
            for n in range(count):
                _call(client, "POST", f"/queue/{queue}/job", {"input": {"n": n}}, 201)
                job = json.loads(_call(client, "GET", f"/queue/{queue}/job", None, 200))
                _call(client, "PATCH", f"/job/{job['id']}", {"status": "completed"}, 204)
        except BaseException as exc:  # reported below
            errors.append(exc)
            go.abort()
        finally:
            client.close()

    threads = [
        threading.Thread(target=client_loop, args=(trips // clients,)) for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    go.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise BenchError(str(errors[0]))
    return clients * (trips // clients) / elapsed


def fill(db: Path, queue: str, count: int) -> None:
    store = Store(db)
    now = time.time()
    job = QueueJob(
        id=0,
        queue=queue,
        status=QueueStatus.QUEUED,
        tags=None,
        input='{"n": 0}',
        output=None,
        created_at=now,
        started_at=None,
        ended_at=None,
        last_heartbeat=None,
        timeout=0,
        heartbeat_timeout=0,
        expires_after=0,
        retries=0,
        retries_attempted=0,
        retry_delays=(),
        due_at=None,
    )
    try:
        for _ in range(count):
            store.queues.add(job)
    finally:
        store.close()


def dequeue_ms(base: str, queue: str, count: int) -> tuple[float, float]:
    """Median and p95 of one dequeue, in ms."""
    client = LeanClient(base)
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            _call(client, "GET", f"/queue/{queue}/job", None, 200)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        client.close()
    times.sort()
    return statistics.median(times), times[max(0, round(0.95 * len(times)) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trips", type=int, default=2000)
    parser.add_argument("--deep", type=int, default=100_000)
    parser.add_argument("--dequeues", type=int, default=300)
    args = parser.parse_args(argv)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="jobd-bench-queue-") as tmp:
        try:
            with running_daemon(Path(tmp), "queues", [], 30, notes) as daemon:
                base = daemon.base_url
                client = LeanClient(base)
                for name in ("trips", "shallow", "deep"):
                    _call(client, "PUT", f"/queue/{name}", {"timeout": "0s"}, 201)
                client.close()
                round_trips(base, "trips", 1, 100)  # warm up
                for clients in (1, 8):
                    rate = round_trips(base, "trips", clients, args.trips)
                    print(f"round trips, {clients} client{'s' * (clients > 1)}: {rate:.0f}/s")
                db = Path(tmp) / "queues" / "data" / "jobd.db"
                shallow, deep = 100 + args.dequeues, args.deep + args.dequeues
                fill(db, "shallow", shallow)
                print(f"filling a queue with {deep:,} jobs through the store ...")
                fill(db, "deep", deep)
                for name, size in (("shallow", shallow), ("deep", deep)):
                    median, p95 = dequeue_ms(base, name, args.dequeues)
                    print(
                        f"{args.dequeues} dequeues from {size:>7,} queued: {median:.2f} ms median,"
                        f" {p95:.2f} ms p95"
                    )
        except BenchError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
