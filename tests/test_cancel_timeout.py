"""Cancel and timeout end the whole process tree of run.sh, and the job says how it ended."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import (
    assert_error,
    assert_sentence,
    assert_status,
    output_files,
    proc_gone,
    q,
    read_pids,
    script,
    unique_id,
    wait_until,
)

GRACE = 1.0


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return ("--workers", "2", "--kill-grace", f"{GRACE}s")


def tree_script(pid_file: Path, prelude: str = "") -> bytes:
    """run.sh that starts a background child, then reports `$!` and `$$` and waits."""
    tmp = q(f"{pid_file}.tmp")
    return script(
        f"""
        {prelude}
        echo started
        sleep 1000 &
        {{ echo $!; echo $$; }} > {tmp} && mv {tmp} {q(pid_file)}
        wait
        """
    )


def start_tree(daemon, shared: Path, strays, prelude: str = "", **fields) -> tuple[str, list[int]]:
    pid_file = shared / f"pids-{unique_id()}"
    job_id = daemon.submit({"run.sh": tree_script(pid_file, prelude)}, **fields)["ID"]
    wait_until(pid_file.exists, 20, f"job {job_id} to report its PIDs")
    pids = read_pids(pid_file)
    strays.watch(*pids)
    assert len(pids) == 2 and not any(proc_gone(p) for p in pids)
    return job_id, pids


def test_cancel_running_job_ends_its_process_group(server, shared, strays):
    job_id, pids = start_tree(server, shared, strays)
    resp = server.cancel(job_id)
    # Checked at once: cancel answers only after the process group is gone.
    still_running = [p for p in pids if not proc_gone(p)]
    assert_status(resp, 200)
    assert not still_running, f"processes {still_running} survived the cancel"
    job = resp.json()
    assert job["Status"] == "CANCELLED"
    assert job["ExitCode"] is None
    assert_sentence(job["Message"])
    assert "SIGTERM" in job["Message"], job["Message"]

    final = server.get(job_id)
    assert_status(final, 200)
    done = final.json()
    assert done["Status"] == "CANCELLED" and done["ExitCode"] is None
    out = output_files(done)
    assert "run.sh" in out
    assert out["jobd.stdout"] == b"started\n"


def test_cancel_escalates_to_sigkill_after_the_grace(server, shared, strays):
    # An ignored SIGTERM is inherited by the background child too.
    job_id, pids = start_tree(server, shared, strays, prelude="trap '' TERM")
    start = time.monotonic()
    resp = server.cancel(job_id)
    elapsed = time.monotonic() - start
    still_running = [p for p in pids if not proc_gone(p)]
    assert_status(resp, 200)
    assert not still_running, f"processes {still_running} survived the cancel"
    assert GRACE * 0.8 <= elapsed < GRACE + 10, f"cancel took {elapsed:.2f}s"
    job = resp.json()
    assert job["Status"] == "CANCELLED" and job["ExitCode"] is None
    assert "SIGKILL" in job["Message"], job["Message"]


def test_cancel_queued_job_keeps_inputs_and_never_runs(server, gates, shared):
    blockers = [gates() for _ in range(2)]
    for gate in blockers:
        server.wait_status(server.submit({"run.sh": script(gate.shell)})["ID"], "RUNNING")
    marker = shared / "queued-job-ran"
    job_id = server.submit(
        {"run.sh": script(f"touch {q(marker)}"), "input.txt": b"kept"},
    )["ID"]
    queued = server.get(job_id)
    assert_status(queued, 206)
    assert queued.json()["Status"] == "QUEUED"

    resp = server.cancel(job_id)
    assert_status(resp, 200)
    job = resp.json()
    assert job["Status"] == "CANCELLED" and job["ExitCode"] is None
    assert_sentence(job["Message"])

    final = server.get(job_id)
    assert_status(final, 200)
    out = output_files(final.json())
    assert out["input.txt"] == b"kept" and "run.sh" in out

    # FIFO: a job submitted after it finishing proves the dispatcher went past it.
    sentinel = server.submit({"run.sh": script("true")})["ID"]
    for gate in blockers:
        gate.open()
    assert server.wait_done(sentinel)["Status"] == "SUCCESS"
    assert not marker.exists(), "a cancelled queued job ran"


def test_cancel_finished_job_is_409(server):
    job_id = server.submit({"run.sh": script("true")})["ID"]
    server.wait_done(job_id)
    assert_error(server.cancel(job_id), 409)
    assert server.get(job_id).json()["Status"] == "SUCCESS"


def test_cancel_twice_is_409(server, gates):
    job_id = server.submit({"run.sh": script(gates().shell)})["ID"]
    server.wait_status(job_id, "RUNNING")
    assert_status(server.cancel(job_id), 200)
    assert_error(server.cancel(job_id), 409)


def test_cancel_unknown_or_invalid_id_is_404(server):
    for job_id in ("no-such-job", ".hidden", "a" * 200, "..%2Fjobd.db"):
        assert_error(server.cancel(job_id), 404)


def test_job_timeout_kills_the_tree_and_fails(server, shared, strays):
    job_id, pids = start_tree(server, shared, strays, timeout=1)
    job = server.wait_done(job_id, timeout=20)
    assert job["Status"] == "FAILED"
    assert "timed out" in job["Message"].lower(), job["Message"]
    assert job["ExitCode"] is None
    assert all(proc_gone(p) for p in pids), "processes survived the timeout"
    assert output_files(job)["jobd.stdout"] == b"started\n"


def test_server_default_timeout_and_job_timeout_wins(jobd, shared, strays):
    daemon = jobd.start("--timeout", "1s", "--kill-grace", "1s", "--workers", "2")
    slow_ok = daemon.submit({"run.sh": script("sleep 1.5")}, timeout=30)["ID"]
    job_id, pids = start_tree(daemon, shared, strays)
    job = daemon.wait_done(job_id, timeout=20)
    assert job["Status"] == "FAILED"
    assert re.search(r"timed out", job["Message"], re.IGNORECASE), job["Message"]
    assert job["ExitCode"] is None
    assert all(proc_gone(p) for p in pids)
    assert daemon.wait_done(slow_ok)["Status"] == "SUCCESS"
