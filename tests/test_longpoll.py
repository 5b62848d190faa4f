"""?wait= long-polling: answers as soon as the job finishes, or when the (clamped) wait ends."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import assert_error, assert_job_shape, assert_status, script, unique_id


class Timer:
    """Runs `action` after `delay` in a thread and records when it ran (the stimulus, not a
    synchronisation: the test then waits on the daemon's answer)."""

    def __init__(self, delay: float, action) -> None:
        self.fired_at: float | None = None
        self.result = None

        def fire() -> None:
            self.result = action()
            self.fired_at = time.monotonic()

        self._timer = threading.Timer(delay, fire)
        self._timer.start()

    def join(self) -> float:
        self._timer.join()
        assert self.fired_at is not None
        return self.fired_at


def _gated_job(server, gate) -> str:
    job_id = server.submit({"run.sh": script(gate.shell)})["ID"]
    server.wait_status(job_id, "RUNNING")
    return job_id


def test_wait_answers_as_soon_as_the_job_finishes(server, gates):
    gate = gates()
    job_id = _gated_job(server, gate)
    timer = Timer(0.3, gate.open)
    resp = server.get(job_id, wait=30)
    answered = time.monotonic()
    opened = timer.join()
    assert_status(resp, 200)
    assert resp.json()["Status"] == "SUCCESS"
    assert answered >= opened, "answered before the job could finish"
    assert answered - opened < 0.5, f"answered {answered - opened:.2f}s after the job finished"


def test_fractional_wait_expires_with_pending_answer(server, gates):
    job_id = _gated_job(server, gates())
    start = time.monotonic()
    resp = server.get(job_id, wait=0.5)
    elapsed = time.monotonic() - start
    assert_status(resp, 206)
    job = resp.json()
    assert_job_shape(job)
    assert job["Status"] == "RUNNING" and job["Output"] == ""
    assert 0.45 <= elapsed < 5.0, f"wait=0.5 took {elapsed:.2f}s"


def test_wait_zero_answers_at_once(server, gates):
    job_id = _gated_job(server, gates())
    start = time.monotonic()
    resp = server.get(job_id, wait=0)
    assert_status(resp, 206)
    assert time.monotonic() - start < 2.0


def test_wait_on_finished_job_answers_at_once(server):
    job_id = server.submit({"run.sh": script("true")})["ID"]
    server.wait_done(job_id)
    start = time.monotonic()
    resp = server.get(job_id, wait=30)
    assert_status(resp, 200)
    assert time.monotonic() - start < 2.0


def test_wait_on_unknown_job_is_404_at_once(server):
    start = time.monotonic()
    assert_error(server.get(unique_id("nobody"), wait=30), 404)
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("wait", ["61", "3600", "1e6", "90.5"])
def test_wait_over_sixty_is_accepted(server, gates, wait):
    gate = gates()
    job_id = _gated_job(server, gate)
    timer = Timer(0.2, gate.open)
    resp = server.get(job_id, wait=wait)
    timer.join()
    assert_status(resp, 200)
    assert resp.json()["Status"] == "SUCCESS"


def test_many_waiters_all_wake(server, gates):
    gate = gates()
    job_id = _gated_job(server, gate)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(server.get, job_id, 30) for _ in range(8)]
        timer = Timer(0.3, gate.open)
        responses = [f.result() for f in futures]
        done = time.monotonic()
    assert done - timer.join() < 1.0
    for resp in responses:
        assert_status(resp, 200)
        assert resp.json()["Status"] == "SUCCESS"


def test_wait_wakes_on_cancel(server, gates):
    job_id = _gated_job(server, gates())
    timer = Timer(0.3, lambda: server.cancel(job_id))
    resp = server.get(job_id, wait=30)
    answered = time.monotonic()
    cancelled_at = timer.join()
    assert_status(timer.result, 200)
    assert_status(resp, 200)
    assert resp.json()["Status"] == "CANCELLED"
    assert answered - cancelled_at < 1.0


def test_pending_status_202_for_go_clients(jobd, gates):
    daemon = jobd.start("--pending-status", "202")
    gate = gates()
    job_id = _gated_job(daemon, gate)
    for resp in (daemon.get(job_id), daemon.get(job_id, wait=0.2)):
        assert_status(resp, 202)
        assert resp.json()["Output"] == ""
    gate.open()
    assert daemon.wait_done(job_id)["Status"] == "SUCCESS"


@pytest.mark.skipif(not os.environ.get("JOBD_SLOW_TESTS"), reason="takes 60 s; JOBD_SLOW_TESTS=1")
def test_wait_is_clamped_to_sixty_seconds(server, gates):
    job_id = _gated_job(server, gates())
    start = time.monotonic()
    resp = server.get(job_id, wait=600)
    elapsed = time.monotonic() - start
    assert_status(resp, 206)
    assert 59 <= elapsed < 70, f"wait=600 answered after {elapsed:.1f}s"
