#!/usr/bin/env python3
"""Jobs run by `jobd worker`s against the same jobs run by the daemon itself: submit -> result
of one trivial job at a time (median and p95), and trivial jobs per second from 8 clients, with
2 run slots either way (2 local workers; 2 worker processes of 1 slot each).

    python bench/pull.py [--jobs 200] [--latency 100]

The central daemon (``python -m jobd``, or ``$JOBD_EXE``) and the workers run on free
loopback ports with fresh data dirs. A worker polls an empty queue every 50 ms to 1 s and
beats every second, so a pulled job pays for a poll that a local one does not. Exits 0
whatever the figures are; 1 when a daemon or a job fails.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import (
    TRIVIAL_RUN_SH,
    BenchError,
    LeanClient,
    check_success,
    exec_entry,
    jobd_command,
    running_daemon,
    timed_job,
)


def body(service: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(exec_entry("run.sh"), TRIVIAL_RUN_SH)
    return json.dumps(
        {"input": base64.b64encode(buf.getvalue()).decode(), "service": service}
    ).encode()


def latency(base: str, job: bytes, count: int) -> tuple[float, float]:
    client = LeanClient(base)
    try:
        for _ in range(5):
            timed_job(client, job)
        times = sorted(timed_job(client, job)[0] * 1000 for _ in range(count))
    finally:
        client.close()
    return statistics.median(times), times[max(0, round(0.95 * len(times)) - 1)]


def throughput(base: str, job: bytes, count: int, clients: int = 8) -> float:
    errors: list[BaseException] = []

    def client_loop(share: int) -> None:
        client = LeanClient(base)
        try:
            ids = []
            for _ in range(share):
                status, answer = client.call("POST", "/api/upload", job)
                if status != 201:
                    raise BenchError(f"POST /api/upload: {status} {answer[:300]!r}")
                ids.append(json.loads(answer)["ID"])
            for job_id in ids:
                while True:
                    status, answer = client.call("GET", f"/api/get/{job_id}?wait=60")
                    if status == 200:
                        check_success(json.loads(answer))
                        break
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop, args=(count // clients,)) for _ in range(8)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchError(str(errors[0]))
    return clients * (count // clients) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--latency", type=int, default=100)
    args = parser.parse_args(argv)
    notes: list[str] = []
    workers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="jobd-bench-pull-") as tmp:
        try:
            flags = ["--service", "pull:runner=pull,heartbeat_timeout=30s", "--workers", "2"]
            with running_daemon(Path(tmp), "central", flags, 30, notes) as daemon:
                base = daemon.base_url
                for n in range(2):
                    log = open(Path(tmp) / f"worker-{n}.log", "wb")  # noqa: SIM115
                    workers.append(
                        subprocess.Popen(
                            [
                                *jobd_command(),
                                "worker",
                                base,
                                "--service",
                                "pull",
                                "--workers",
                                "1",
                                "--data-dir",
                                str(Path(tmp) / f"worker-{n}"),
                            ],
                            stdout=log,
                            stderr=subprocess.STDOUT,
                        )
                    )
                for service in ("default", "pull"):
                    median, p95 = latency(base, body(service), args.latency)
                    where = "here" if service == "default" else "on a worker"
                    print(
                        f"submit -> result, run {where}: {median:.1f} ms median, {p95:.1f} ms p95"
                    )
                for service in ("default", "pull"):
                    rate = throughput(base, body(service), args.jobs)
                    where = "here (2 slots)" if service == "default" else "on 2 workers"
                    print(f"{args.jobs} jobs from 8 clients, run {where}: {rate:.0f} jobs/s")
        except BenchError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(30)
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
