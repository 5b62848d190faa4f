"""Clients that stop reading a large result hold at most the threads kept for slow answers:
/health and small answers go on, the others get 503, and a slot is free again the moment its
client goes away (or, after a stall, when jobd closes the connection)."""

from __future__ import annotations

import os
import socket
import time

import pytest
import requests
from conftest import assert_error, assert_status, script, unique_id, wait_until

THREADS = 8  # 4 kept for quick answers, 4 for long ones
RESULT_BYTES = 6_000_000  # random, so the zip stays this large: far over 1 MiB
#: 8 MB read in 64 KiB pieces takes about 0.3 s here; waitress's loop turns once a second
STALL_FREE = 5.0


def _stalled_get(port: int, path: str) -> socket.socket:
    """Sends a request and never reads the answer; a small receive buffer so it fills."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


@pytest.fixture
def big_job(jobd):
    daemon = jobd.start("--threads", str(THREADS))
    job_id = unique_id("big")
    daemon.submit(
        {"run.sh": script(f"head -c {RESULT_BYTES} /dev/urandom > data.bin")}, job_id=job_id
    )
    assert daemon.wait_done(job_id)["Status"] == "SUCCESS"
    return daemon, job_id


def _held(daemon) -> int:
    return daemon.api("GET", "/health", timeout=5).json()["threads"]["held"]


def test_stalled_downloads_hold_only_their_slots_and_give_them_back(big_job):
    daemon, job_id = big_job
    health = daemon.api("GET", "/health").json()["threads"]
    assert health == {"total": THREADS, "held": 0, "may_hold": THREADS - 4}, health
    number = daemon.job(job_id)["IntID"]

    stalled = [_stalled_get(daemon.port, f"/api/get/{job_id}") for _ in range(THREADS - 4)]
    try:
        wait_until(lambda: _held(daemon) == THREADS - 4, 20, "the stalled downloads' slots")
        # the rest of the API still answers, from the threads kept for it
        assert_status(daemon.api("GET", "/health", timeout=5), 200)
        small = daemon.api("GET", f"/api/logs/{job_id}", timeout=5)
        assert_status(small, 200)
        # a further large answer would need a thread that may hang: 503, said at once
        for path in (f"/api/get/{job_id}", f"/retrieve/{number}"):
            assert_error(daemon.api("GET", path, timeout=5), 503)
    finally:
        for sock in stalled:
            sock.close()
    wait_until(lambda: _held(daemon) == 0, 20, "slots given back once the clients left")
    resp = daemon.api("GET", f"/api/get/{job_id}")
    assert_status(resp, 200)
    assert len(resp.content) > RESULT_BYTES


def test_a_client_that_reads_in_small_pieces_gets_its_result_without_stalls(big_job):
    """A thread past the high-water mark waits for waitress's loop to send; a loop that does
    not look at the connection then leaves it waiting until its next turn (a second)."""
    daemon, job_id = big_job
    for _ in range(3):
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(f"GET /api/get/{job_id} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            received = 0
            while received < RESULT_BYTES * 4 // 3 and (piece := sock.recv(65536)):
                received += len(piece)
                time.sleep(0.0005)  # a client slower than the daemon
        took = time.monotonic() - started
        assert received > RESULT_BYTES * 4 // 3
        assert took < STALL_FREE, f"{took:.1f} s for {received} bytes: the answer stalled"


def test_too_few_threads_are_refused_at_start(jobd):
    daemon = jobd.start("--threads", "4", wait_ready=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(timeout=20) != 0
    assert "--threads" in daemon.log() and "at least 5" in daemon.log()
    assert "Traceback" not in daemon.log()


@pytest.mark.skipif(not os.environ.get("JOBD_SLOW_TESTS"), reason="takes 40 s; JOBD_SLOW_TESTS=1")
def test_a_stalled_download_is_closed_after_30_s(big_job):
    daemon, job_id = big_job
    sock = _stalled_get(daemon.port, f"/api/get/{job_id}")
    try:
        wait_until(lambda: _held(daemon) == 1, 20, "the stalled download's slot")
        wait_until(lambda: _held(daemon) == 0, 45, "jobd to close the stalled download")
        assert "stopped reading its answer" in daemon.log()
    finally:
        sock.close()
    assert requests.get(f"{daemon.url}/health", timeout=5).status_code == 200
