"""SIGTERM: every running job is signalled at once, nothing starts after it, and clients that
wait (long-polls, log followers) get their answer before the daemon exits."""

from __future__ import annotations

import signal
import threading
import time

import requests
from conftest import proc_gone, q, script, unique_id, wait_until

GRACE = 2.0
STUBBORN = 3


def _held(daemon) -> int:
    """Threads held by clients that wait (long-polls, follows)."""
    return daemon.api("GET", "/health").json()["threads"]["held"]


def test_shutdown_ends_stubborn_jobs_together_and_starts_nothing_new(jobd, shared, strays):
    daemon = jobd.start("--workers", str(STUBBORN), "--kill-grace", f"{GRACE:g}s")
    started = [shared / f"started-{n}" for n in range(STUBBORN)]
    for marker in started:
        daemon.submit({"run.sh": script(f"trap '' TERM\ntouch {q(marker)}\nsleep 1000")})
    wait_until(lambda: all(m.exists() for m in started), 20, "every stubborn job to start")
    queued_marker = shared / "queued-started"
    queued = daemon.submit({"run.sh": script(f"touch {q(queued_marker)}")})["ID"]
    waiter_id = daemon.submit({"run.sh": script("sleep 1000")}, job_id=unique_id("waited"))["ID"]

    answers: dict[str, object] = {}

    def long_poll() -> None:
        resp = requests.get(f"{daemon.url}/api/get/{waiter_id}", params={"wait": 60}, timeout=60)
        answers["long-poll"] = resp.status_code

    def follow() -> None:
        url = f"{daemon.url}/api/logs/{queued}?follow=true"
        with requests.get(url, stream=True, timeout=60) as resp:
            for _ in resp.iter_content(None):
                pass
        answers["follow"] = resp.status_code

    clients = [threading.Thread(target=long_poll), threading.Thread(target=follow)]
    for client in clients:
        client.start()
    wait_until(lambda: _held(daemon) == 2, 10, "the long-poll and the follower to wait")

    began = time.monotonic()
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.proc.wait(timeout=30)
    took = time.monotonic() - began

    # one grace period for all of them, not one after another (that would be 3 x 2 s)
    assert took < GRACE + 2.0, f"shutdown took {took:.1f}s with {STUBBORN} stubborn jobs"
    assert daemon.proc.returncode == 0
    assert not queued_marker.exists(), "a queued job started after shutdown began"
    for client in clients:
        client.join(timeout=10)
        assert not client.is_alive(), "a waiting client was not answered at shutdown"


def test_a_second_term_during_shutdown_still_ends_every_run(jobd, shared, strays):
    """TERM, then TERM again while jobd waits out the grace of runs that ignore the first:
    when jobd exits, no run is alive (Ctrl-C reaches the binary twice, too)."""
    daemon = jobd.start("--workers", "8", "--kill-grace", f"{GRACE:g}s")
    pids = [shared / f"pid-{n}" for n in range(8)]
    for n, pid_file in enumerate(pids):
        ignore = "trap '' TERM\n" if n % 2 else ""
        daemon.submit({"run.sh": script(f"{ignore}echo $$ > {q(pid_file)}\nexec sleep 1000")})
    wait_until(lambda: all(p.exists() and p.read_text() for p in pids), 20, "every run to start")
    strays.watch(*(int(p.read_text()) for p in pids))

    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "shutting down" in daemon.log(), 10, "jobd to begin its shutdown")
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(GRACE + 15) == 0, daemon.log()
    alive = [int(p.read_text()) for p in pids if not proc_gone(int(p.read_text()))]
    assert not alive, f"runs outlived jobd: {alive}"
