"""Retries: a FAILED attempt (non-zero exit or timeout, never a cancel) runs again from the
input after its backoff; the job stays pending until its last attempt, keeps earlier
attempts' output, and neither a restart in a backoff nor one in an attempt changes the count."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_error, assert_status, output_files, q, script, unique_id, wait_until

pytestmark = pytest.mark.source_only


def flaky(shared: Path, succeed_on: int) -> bytes:
    """run.sh that records its start, and fails until its `succeed_on`th run."""
    count, starts = q(shared / "count"), q(shared / "starts")
    return script(
        f"""
        umask 000  # the next attempt may run as another job user
        date +%s.%N >> {starts}
        echo "attempt $JOBD_ATTEMPT"
        n=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {count}
        [ $n -ge {succeed_on} ]
        """
    )


def starts(shared: Path) -> list[float]:
    path = shared / "starts"
    return [float(line) for line in path.read_text().split()] if path.exists() else []


def test_failing_twice_then_succeeding_ends_success_on_attempt_3(server, shared):
    retry = {"max_attempts": 3, "initial_interval": "0.4s", "max_interval": "5s", "multiplier": 2}
    job_id = server.submit({"run.sh": flaky(shared, 3)}, retry=retry)["ID"]
    wait_until(lambda: len(starts(shared)) >= 1, 20, "the first attempt")
    pending = wait_until(
        lambda: (resp := server.get(job_id)).json()["Attempt"] == 2 and resp, 20, "attempt 2"
    )
    assert_status(pending, 206)  # pending between attempts
    assert pending.json()["Status"] in ("QUEUED", "RUNNING")

    job = server.wait_done(job_id)
    assert (job["Status"], job["Attempt"], job["MaxAttempts"]) == ("SUCCESS", 3, 3), job
    times = starts(shared)
    assert len(times) == 3
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert 0.4 <= first_gap < 3, first_gap  # initial_interval
    assert 0.8 <= second_gap < 4, second_gap  # times the multiplier
    files = output_files(job)
    assert files["attempt-1.stdout"] == b"attempt 1\n"
    assert files["attempt-2.stdout"] == b"attempt 2\n"
    assert files["jobd.stdout"] == b"attempt 3\n"


def test_the_last_failed_attempt_ends_the_job_failed(server, shared):
    job_id = server.submit(
        {"run.sh": flaky(shared, 99)}, retry={"max_attempts": 2, "initial_interval": 0}
    )["ID"]
    job = server.wait_done(job_id)
    assert (job["Status"], job["Attempt"], job["ExitCode"]) == ("FAILED", 2, 1), job
    assert job["Message"].startswith("attempt 2 of 2: run.sh exited with code 1"), job
    assert len(starts(shared)) == 2


def test_a_timeout_is_retried_and_a_cancel_is_not(server, shared):
    timed = server.submit(
        {"run.sh": flaky(shared, 2).replace(b"[ $n -ge 2 ]", b"[ $n -ge 2 ] || sleep 60")},
        timeout=1,
        retry={"max_attempts": 2, "initial_interval": 0},
    )["ID"]
    job = server.wait_done(timed)
    assert (job["Status"], job["Attempt"]) == ("SUCCESS", 2), job

    cancelled = server.submit(
        {"run.sh": script("sleep 60")}, retry={"max_attempts": 5, "initial_interval": 0}
    )["ID"]
    server.wait_status(cancelled, "RUNNING")
    assert_status(server.cancel(cancelled), 200)
    job = server.job(cancelled)
    assert (job["Status"], job["Attempt"]) == ("CANCELLED", 1), job


def test_a_restart_in_a_backoff_neither_loses_nor_hurries_the_retry(jobd, shared):
    daemon = jobd.start("--workers", "1")
    job_id = daemon.submit(
        {"run.sh": flaky(shared, 2)}, retry={"max_attempts": 2, "initial_interval": "3s"}
    )["ID"]
    wait_until(lambda: daemon.job(job_id)["Attempt"] == 2, 20, "the retry to be queued")
    daemon.kill9()
    again = jobd.start("--workers", "1", data_dir=daemon.data_dir)
    job = again.wait_done(job_id)
    assert (job["Status"], job["Attempt"]) == ("SUCCESS", 2), job
    first, second = starts(shared)
    assert second - first >= 3.0, f"the retry ran {second - first:.2f}s after the failure"


def test_a_restart_in_an_attempt_repeats_it_without_using_one(jobd, shared, gates):
    gate = gates()
    daemon = jobd.start("--workers", "1")
    marker = shared / "runs"
    run_sh = script(f'umask 000\necho "$JOBD_ATTEMPT" >> {q(marker)}\n{gate.shell}\nexit 1')
    job_id = daemon.submit({"run.sh": run_sh}, retry={"max_attempts": 2, "initial_interval": 0})[
        "ID"
    ]
    wait_until(marker.exists, 20, "attempt 1 to start")
    daemon.kill9()
    again = jobd.start("--workers", "1", data_dir=daemon.data_dir)
    wait_until(lambda: len(marker.read_text().split()) == 2, 20, "attempt 1 to run again")
    gate.open()
    job = again.wait_done(job_id)
    assert marker.read_text().split() == ["1", "1", "2"], marker.read_text()
    assert (job["Status"], job["Attempt"]) == ("FAILED", 2), job


def test_a_service_gives_its_jobs_retries(jobd, shared):
    daemon = jobd.start("--service", "patient:retry=2")
    resp = daemon.api(
        "POST",
        "/upload",
        files=[("file", ("run.sh", flaky(shared, 2)))],
        data={"user_id": "1", "service": "patient"},
    )
    assert_status(resp, 201)
    job = daemon.wait_done(str(resp.json()["id"]))
    assert (job["Status"], job["Attempt"], job["MaxAttempts"]) == ("SUCCESS", 2, 2), job


@pytest.mark.parametrize(
    "retry",
    [
        0,
        101,
        "3",
        True,
        {"max_attempts": 0},
        {"max_attempts": 2.5},
        {"multiplier": 0.5},
        {"initial_interval": "soon"},
        {"initial_interval": -1},
        {"initial_interval": "10m", "max_interval": "1m"},
        {"attempts": 3},
    ],
)
def test_a_bad_retry_is_a_400_that_keeps_nothing(server, retry):
    before = server.job_dirs()
    job_id = unique_id("badretry")
    assert_error(server.upload({"run.sh": script("true")}, job_id=job_id, retry=retry), 400)
    server.assert_nothing_written(before, job_id)
