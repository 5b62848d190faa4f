"""Log followers and long-polls hold an HTTP thread each: they must learn their status at
once, and give the thread back as soon as their client goes away."""

from __future__ import annotations

import socket

import requests
from conftest import script, unique_id, wait_until


def _follow_raw(port: int, job_id: str) -> socket.socket:
    """A follower that sends its request and never reads."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    request = f"GET /api/logs/{job_id}?follow=true HTTP/1.1\r\nHost: x\r\n\r\n"
    sock.sendall(request.encode())
    return sock


def test_a_follower_gets_its_status_before_any_output(jobd, gates):
    daemon = jobd.start()
    gate = gates()
    job_id = unique_id("quiet")
    daemon.submit({"run.sh": script(gate.shell)}, job_id=job_id)
    daemon.wait_status(job_id, "RUNNING")
    with requests.get(f"{daemon.url}/api/logs/{job_id}?follow=true", stream=True, timeout=3) as r:
        assert r.status_code == 200  # the headers came although the job printed nothing
        gate.open()
        assert r.content == b""


def test_followers_that_hang_up_give_their_threads_back(jobd, gates):
    daemon = jobd.start("--threads", "6")  # 6 - 4 = 2 may wait at once
    gate = gates()
    job_id = unique_id("followed")
    daemon.submit({"run.sh": script(gate.shell)}, job_id=job_id)
    daemon.wait_status(job_id, "RUNNING")
    first, second = _follow_raw(daemon.port, job_id), _follow_raw(daemon.port, job_id)
    for sock in (first, second):
        assert sock.recv(12).startswith(b"HTTP/1.1 200")

    def refused() -> bool:
        resp = requests.get(f"{daemon.url}/api/logs/{job_id}?follow=true", timeout=2, stream=True)
        resp.close()
        return resp.status_code == 503

    assert refused(), "both slots should be taken while both followers listen"
    first.close()
    second.close()
    wait_until(lambda: not refused(), 5, "the hung-up followers' slots to come back")
    gate.open()
    assert daemon.wait_done(job_id)["Status"] == "SUCCESS"
