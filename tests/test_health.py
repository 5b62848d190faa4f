"""/health tells the truth: workers alive against configured, how long the oldest queued job
has waited, and `degraded` with the reasons in words."""

from __future__ import annotations

import time

import requests
from conftest import assert_status, script, unique_id, wait_until


def test_health_counts_live_workers_and_the_oldest_wait(jobd, gates):
    daemon = jobd.start("--workers", "1")
    health = daemon.api("GET", "/health").json()
    assert health["problems"] == [] and health["status"] == "healthy", health["problems"]
    assert health["workers"] == 1 and health["workers_alive"] == 1, health
    assert health["oldest_queued_age"] is None, health

    gate = gates()
    daemon.submit({"run.sh": script(gate.shell)}, job_id=unique_id("busy"))
    waiting = daemon.submit({"run.sh": script("true")}, job_id=unique_id("waiting"))["ID"]
    age = wait_until(
        lambda: (daemon.api("GET", "/health").json()["oldest_queued_age"] or 0) > 0.2,
        10,
        "the queued job's wait to show",
    )
    assert age
    gate.open()
    daemon.wait_done(waiting)
    health = daemon.api("GET", "/health")
    assert_status(health, 200)
    assert health.json()["oldest_queued_age"] is None, health.json()


def test_below_the_reserve_health_says_why(jobd):
    daemon = jobd.start("--min-free", "100%")  # never enough: always below the reserve
    health = daemon.api("GET", "/health")
    assert_status(health, 200)
    body = health.json()
    assert body["status"] == "degraded", body
    assert any("--min-free" in problem for problem in body["problems"]), body


def test_health_is_healthy_while_the_workers_start(jobd):
    """Workers start after recovery, behind the server: a /health that comes first finds none
    running yet, and that is a start, not a loss."""
    daemon = jobd.start("--workers", "8", wait_ready=False)
    answers: list[dict] = []
    deadline = time.monotonic() + 20
    while not answers or answers[-1]["workers_alive"] < 8:  # as soon as it listens
        assert time.monotonic() < deadline, f"the workers did not start: {answers[-1:]}"
        try:
            answers.append(requests.get(daemon.url + "/health", timeout=5).json())
        except requests.ConnectionError:
            time.sleep(0.001)  # not listening yet
    assert all(answer["status"] == "healthy" for answer in answers), answers
