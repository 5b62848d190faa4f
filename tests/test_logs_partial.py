"""Partial results (`?partial=true`) and run.sh's output so far (`/api/logs`, `?follow=true`)."""

from __future__ import annotations

import time

import pytest
import requests
from conftest import assert_error, output_files, script, unique_id, wait_until


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return ("--workers", "1", "--kill-grace", "1s")


def test_followed_lines_arrive_while_the_job_runs(server, gates) -> None:
    gate = gates()
    body = f"""
        for i in 1 2 3; do echo "line $i"; sleep 0.2; done
        echo "to stderr" >&2
        {gate.shell}
        echo "last line"
    """
    job_id = unique_id("follow")
    server.submit({"run.sh": script(body)}, job_id=job_id)
    url = f"{server.url}/api/logs/{job_id}?follow=true"
    with requests.get(url, stream=True, timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        lines = resp.iter_lines()
        arrivals = []
        for _ in range(3):
            arrivals.append((next(lines), time.monotonic()))
        assert [line for line, _ in arrivals] == [b"line 1", b"line 2", b"line 3"]
        assert arrivals[2][1] - arrivals[0][1] > 0.2, "lines came together, not as written"
        assert server.job(job_id)["Status"] == "RUNNING", "the lines should come before the end"
        gate.open()
        assert list(lines) == [b"last line"]  # and the stream ends with the job
    assert server.wait_done(job_id)["Status"] == "SUCCESS"


def test_logs_so_far_stdout_by_default_and_stderr_on_request(server) -> None:
    job_id = unique_id("logs")
    server.submit({"run.sh": script("echo out; echo err >&2")}, job_id=job_id)
    server.wait_done(job_id)
    assert requests.get(f"{server.url}/api/logs/{job_id}", timeout=10).content == b"out\n"
    err = requests.get(f"{server.url}/api/logs/{job_id}?stream=stderr", timeout=10)
    assert err.content == b"err\n"
    followed = requests.get(f"{server.url}/api/logs/{job_id}?follow=true", timeout=10)
    assert followed.content == b"out\n"  # a finished job: everything, then the end


def test_a_queued_job_has_empty_logs(server, gates) -> None:
    gate = gates()
    blocker = unique_id("blocker")
    server.submit({"run.sh": script(gate.shell)}, job_id=blocker)
    server.wait_status(blocker, "RUNNING")
    queued = unique_id("queued")
    server.submit({"run.sh": script("echo later")}, job_id=queued)
    resp = requests.get(f"{server.url}/api/logs/{queued}", timeout=10)
    assert (resp.status_code, resp.content) == (200, b"")
    gate.open()
    server.wait_done(queued)
    assert requests.get(f"{server.url}/api/logs/{queued}", timeout=10).content == b"later\n"


def test_bad_log_requests(server) -> None:
    assert_error(requests.get(f"{server.url}/api/logs/no-such-job", timeout=10), 404)
    job_id = unique_id("logs")
    server.submit({"run.sh": script("true")}, job_id=job_id)
    assert_error(requests.get(f"{server.url}/api/logs/{job_id}?stream=both", timeout=10), 400)
    assert_error(requests.get(f"{server.url}/api/logs/{job_id}?follow=maybe", timeout=10), 400)


def test_partial_results_show_the_files_written_so_far(server, gates) -> None:
    gate = gates()
    job_id = unique_id("partial")
    body = f"echo first > a.txt\n{gate.shell}\necho second > b.txt"
    server.submit({"run.sh": script(body), "in.txt": b"input"}, job_id=job_id)
    wait_until(lambda: server.job(job_id)["Status"] == "RUNNING", 20, "the job to run")

    def partial() -> dict:
        resp = requests.get(f"{server.url}/api/get/{job_id}?partial=true", timeout=10)
        assert resp.status_code == 206, resp.text
        return resp.json()

    job = wait_until(lambda: (j := partial()) and "a.txt" in output_files(j) and j, 20, "a.txt")
    files = output_files(job)
    assert files["a.txt"] == b"first\n" and files["in.txt"] == b"input"
    assert "b.txt" not in files
    assert server.get(job_id).json()["Output"] == ""  # only when asked
    assert server.staging() == [], "a partial zip was left in the data dir"
    gate.open()
    assert set(output_files(server.wait_done(job_id))) >= {"a.txt", "b.txt"}
