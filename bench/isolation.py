#!/usr/bin/env python3
"""What isolation costs per job: submit -> result of a trivial run.sh with `--isolation off`
and with `--isolation auto`, in the same run.

    python bench/isolation.py [--jobs 200] [--rounds 3]

Two daemons (``python -m jobd``, or ``$JOBD_EXE``) run side by side on free loopback ports
with fresh data dirs; they take turns in rounds of --jobs jobs each, one job at a time over
one keep-alive connection with the long-poll ``GET /api/get/<id>?wait=60`` (as bench.py's
latency figure), so a drift of the machine weighs on both alike. Each daemon's start-up line
says what is in force. Reported: the median and p95 of each, and the median added by
isolation; the target is under 1 ms. Every daemon is stopped by the PID this script started.
Exits 0 whatever the figures are; 1 when a daemon fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import (
    WARMUP_JOBS,
    BenchError,
    LeanClient,
    running_daemon,
    timed_job,
    trivial_body,
)

TARGET_MS = 1.0
MODES = ("off", "auto")


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def _line(daemon_log: Path) -> str:
    for line in daemon_log.read_text().splitlines():
        if " isolation " in line:
            return line.split(" jobd: ", 1)[-1]
    return "(no isolation line)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs per daemon per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    body = trivial_body()
    notes: list[str] = []
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="jobd-bench-isolation-") as tmp:
        work = Path(tmp)
        work.chmod(0o711)  # job users pass on the way to their folders
        try:
            with (
                running_daemon(work, "off", ["--isolation", "off"], 30, notes) as off,
                running_daemon(work, "auto", ["--isolation", "auto"], 30, notes) as auto,
            ):
                daemons = {"off": off, "auto": auto}
                for mode, daemon in daemons.items():
                    print(f"{mode:>4}: {_line(daemon.log_path)}")
                clients = {mode: LeanClient(d.base_url) for mode, d in daemons.items()}
                for client in clients.values():
                    for _ in range(WARMUP_JOBS):
                        timed_job(client, body)
                for _ in range(args.rounds):
                    for mode in MODES:
                        for _ in range(args.jobs):
                            times[mode].append(timed_job(clients[mode], body)[0] * 1000)
                for client in clients.values():
                    client.close()
        except BenchError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
    for mode in MODES:
        values = times[mode]
        print(
            f"{mode:>4}: submit -> result median {statistics.median(values):.2f} ms,"
            f" p95 {_p95(values):.2f} ms ({len(values)} jobs)"
        )
    added = statistics.median(times["auto"]) - statistics.median(times["off"])
    verdict = "PASS" if added < TARGET_MS else "FAIL"
    print(f"added by isolation: {added:+.2f} ms median (target < {TARGET_MS:g} ms): {verdict}")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
