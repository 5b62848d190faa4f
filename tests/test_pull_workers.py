"""`jobd worker`: real worker processes on loopback pull a central jobd's runner=pull jobs. They
take jobs in turn, a job is never run twice at once, a worker killed mid-job loses the job to
another (without using up an attempt, and its late result is refused), a cancel ends the
worker's process tree, the central jobd's kill -9 and restart leave running jobs running, and
a worker's SIGTERM hands its jobs back. The binary pass runs the first test and the one on a
worker that cannot start (the frozen binary has `worker`); the rest run from the source."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Daemon,
    DaemonFactory,
    assert_error,
    assert_status,
    base_env,
    jobd_command,
    output_files,
    proc_gone,
    read_pids,
    script,
    unique_id,
    wait_until,
)
from test_storage_faults import fill

TOKEN = "worker-test-token"
#: The pull service's heartbeat timeout in these tests, in seconds.
HEARTBEAT = 2
PULL = f"gpu:runner=pull,heartbeat_timeout={HEARTBEAT}s"


def central(jobd: DaemonFactory, *flags: str, **kwargs: Any) -> Daemon:
    return jobd.start("--service", PULL, "--token", TOKEN, "--kill-grace", "1s", *flags, **kwargs)


def worker(
    jobd: DaemonFactory, daemon: Daemon, *flags: str, token: str = TOKEN, ready: bool = True
) -> Daemon:
    """A `jobd worker` process for the central `daemon`, started as the README says."""
    name = unique_id("worker")
    argv = ["worker", daemon.url, "--service", "gpu", "--data-dir", str(jobd.root / name)]
    process = Daemon(
        [*argv, "--workers", "1", "--kill-grace", "1s", *flags],
        base_env({"JOBD_TOKEN": token}),
        jobd.root,
        daemon.port,
        jobd.root / name,
    )
    jobd.daemons.append(process)
    process.start()
    if ready:
        wait_until(lambda: "worker: pulling" in process.log(), 20, f"{name} to pull")
    return process


def pulled_job(daemon: Daemon, body: str, **fields: Any) -> str:
    resp = daemon.upload({"run.sh": script(body)}, service="gpu", **fields)
    assert_status(resp, 201)
    job = resp.json()
    assert job["Service"] == "gpu" and job["Status"] == "QUEUED", job
    return str(job["ID"])


def note_place(shared: Path) -> str:
    """Shell that notes where a run ran (its folder, under its worker's data dir), in a file
    of its own (each job runs as a user of its own)."""
    return f'echo "$PWD" > "$(mktemp {shared}/ran-in.XXXXXX)"'


def ran_in(shared: Path) -> list[str]:
    """Where each run ran, in the order the runs started."""
    notes = sorted(shared.glob("ran-in.*"), key=lambda path: path.stat().st_mtime_ns)
    return [note.read_text().strip() for note in notes]


def carriers(daemon: Daemon, job_id: str) -> list[int]:
    """The queue jobs that carried the job's runs, oldest first."""
    resp = daemon.api("GET", f"/tag/{job_id}")
    assert_status(resp, 200)
    return sorted(resp.json())


# -- jobs pulled ---------------------------------------------------------------------------


def test_two_workers_take_jobs_in_turn_and_the_central_serves_them(
    jobd: DaemonFactory, shared: Path
) -> None:
    daemon = central(jobd)
    first, second = worker(jobd, daemon), worker(jobd, daemon)
    body = (
        f'{note_place(shared)}; echo "id=$JOBD_JOB_ID attempt=$JOBD_ATTEMPT";'
        " env > env.txt; sleep 0.5; echo made > out.txt"
    )
    ids = [pulled_job(daemon, body) for _ in range(4)]
    pending = daemon.get(ids[-1])
    assert_status(pending, 206)
    for job_id in ids:
        done = daemon.wait_done(job_id)
        assert done["Status"] == "SUCCESS" and done["ExitCode"] == 0, done
        files = output_files(done)
        assert files["out.txt"] == b"made\n"
        assert files["jobd.stdout"] == f"id={job_id} attempt=1\n".encode()
        env = files["env.txt"].decode()
        assert TOKEN not in env and "JOBD_TOKEN" not in env, "the worker's token reached a job"
        logs = daemon.api("GET", f"/api/logs/{job_id}")
        assert_status(logs, 200)
        assert logs.text == f"id={job_id} attempt=1\n"
    places = ran_in(shared)
    assert len(places) == 4, places  # each job ran once
    assert {str(first.data_dir), str(second.data_dir)} == {
        str(Path(p).parents[2]) for p in places
    }, f"not both workers took jobs: {places}"
    counts = daemon.api("GET", "/info").json()["queues"]["gpu"]
    assert counts["completed"] == 4 and counts["queued"] == counts["running"] == 0, counts


@pytest.mark.source_only
def test_a_pull_service_is_named_on_the_jobd_wire_and_checked(jobd: DaemonFactory) -> None:
    daemon = central(jobd)
    before = daemon.job_dirs()
    unknown = daemon.upload({"run.sh": script("true")}, service="gpu2")
    assert "gpu2" in assert_error(unknown, 400)["message"]
    bad = daemon.upload({"run.sh": script("true")}, service="no/such")
    assert "'service'" in assert_error(bad, 400)["message"]
    slurm = daemon.upload({"run.sh": script("true")}, service="gpu", slurml=True)
    assert "pull" in assert_error(slurm, 400)["message"]
    daemon.assert_nothing_written(before)
    services = {s["name"]: s for s in daemon.api("GET", "/api/services").json()}
    assert services["gpu"]["runner"] == "pull"
    assert services["gpu"]["heartbeat_timeout"] == HEARTBEAT
    assert services["default"]["runner"] == "local"
    # its queue is jobd's: Ocypod's routes may not change it or its jobs
    assert_error(daemon.api("PUT", "/queue/gpu", json={}), 409)
    assert_error(daemon.api("DELETE", "/queue/gpu"), 409)
    assert_error(daemon.api("POST", "/queue/gpu/job", json={"input": 1}), 409)
    job_id = pulled_job(daemon, "true")
    (carrier,) = carriers(daemon, job_id)
    assert_error(daemon.api("PATCH", f"/job/{carrier}", json={"status": "cancelled"}), 409)
    assert_error(daemon.api("DELETE", f"/job/{carrier}"), 409)
    # nothing runs it here: it waits for a worker
    assert daemon.job(job_id)["Status"] == "QUEUED"
    worker(jobd, daemon)
    assert daemon.wait_done(job_id)["Status"] == "SUCCESS"


@pytest.mark.source_only
def test_a_multipart_upload_to_a_pull_service_runs_on_a_worker(
    jobd: DaemonFactory, shared: Path
) -> None:
    daemon = central(jobd)
    pulling = worker(jobd, daemon)
    resp = daemon.api(
        "POST",
        "/upload",
        files={"run.sh": ("run.sh", script(note_place(shared)))},
        data={"service": "gpu", "user_id": "1"},
    )
    assert_status(resp, 201)
    job_id = str(resp.json()["id"])  # the IntID, as job-orchestrator's routes take it
    assert daemon.wait_done(job_id)["Status"] == "SUCCESS"
    assert ran_in(shared)[0].startswith(str(pulling.data_dir))


@pytest.mark.source_only
def test_a_failed_attempt_is_retried_on_a_worker_with_its_output_kept(
    jobd: DaemonFactory, shared: Path
) -> None:
    daemon = central(jobd)
    worker(jobd, daemon)
    body = 'echo "attempt $JOBD_ATTEMPT"; [ "$JOBD_ATTEMPT" = 2 ]'
    job_id = pulled_job(daemon, body, retry={"max_attempts": 2, "initial_interval": 0.2})
    done = daemon.wait_done(job_id)
    assert done["Status"] == "SUCCESS" and done["Attempt"] == 2, done
    files = output_files(done)
    assert files["attempt-1.stdout"] == b"attempt 1\n"
    assert files["jobd.stdout"] == b"attempt 2\n"


@pytest.mark.source_only
def test_a_jobs_time_limit_holds_on_a_worker(jobd: DaemonFactory, shared: Path, strays) -> None:
    daemon = central(jobd)
    worker(jobd, daemon)
    job_id = pulled_job(daemon, f"sleep 60 & echo $! > {shared}/pid; wait", timeout=1)
    pid_file = shared / "pid"
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 20, "the job")
    strays.watch(*read_pids(pid_file))
    done = daemon.wait_done(job_id)
    assert done["Status"] == "FAILED" and done["Message"].startswith("timed out after 1s"), done
    assert done["ExitCode"] is None
    wait_until(lambda: proc_gone(read_pids(pid_file)[0]), 10, "the job's child to end")


@pytest.mark.source_only
def test_a_run_sh_that_cannot_start_fails_as_it_would_here(jobd: DaemonFactory) -> None:
    daemon = central(jobd)
    worker(jobd, daemon)
    resp = daemon.upload({"run.sh": b"#!/no/such/shell\necho hi\n"}, service="gpu")
    assert_status(resp, 201)
    done = daemon.wait_done(resp.json()["ID"])
    assert done["Status"] == "FAILED" and "/no/such/shell" in done["Message"], done
    assert done["ExitCode"] is None


# -- lost, cancelled, restarted ----------------------------------------------------------------


@pytest.mark.source_only
def test_a_worker_killed_mid_job_loses_it_to_another_and_its_late_result_is_refused(
    jobd: DaemonFactory, shared: Path, strays
) -> None:
    daemon = central(jobd)
    first = worker(jobd, daemon)
    body = (
        f"{note_place(shared)}; if [ ! -e {shared}/ran ]; then"
        f" touch {shared}/ran; echo $$ > {shared}/pid; exec sleep 60; fi; echo second run"
    )
    job_id = pulled_job(daemon, body)
    wait_until(lambda: (shared / "pid").exists() and (shared / "pid").read_text().strip(), 20)
    strays.watch(*read_pids(shared / "pid"))
    first.kill9()
    second = worker(jobd, daemon)
    lost = time.monotonic()
    done = daemon.wait_done(job_id)
    assert done["Status"] == "SUCCESS" and done["Attempt"] == 1, done  # no attempt used up
    assert output_files(done)["jobd.stdout"] == b"second run\n"
    assert time.monotonic() - lost < HEARTBEAT + 10
    places = ran_in(shared)
    assert [str(Path(p).parents[2]) for p in places] == [
        str(first.data_dir),
        str(second.data_dir),
    ]
    old, new = carriers(daemon, job_id)
    assert daemon.api("GET", f"/job/{old}/status").json() == "timed_out"
    late = daemon.api("PUT", f"/api/pull/{old}/result", params={"code": "0"}, data=b"PK\x05\x06")
    assert_error(late, 409)
    assert output_files(daemon.wait_done(job_id))["jobd.stdout"] == b"second run\n"
    assert_error(daemon.api("POST", f"/api/pull/{new}"), 409)  # an ended job starts no more


@pytest.mark.source_only
def test_a_cancel_reaches_the_workers_process_tree(
    jobd: DaemonFactory, shared: Path, strays
) -> None:
    daemon = central(jobd)
    worker(jobd, daemon)
    body = f"sleep 60 & echo $$ $! > {shared}/pids; echo started; wait"
    job_id = pulled_job(daemon, body)
    pids_file = shared / "pids"
    wait_until(
        lambda: pids_file.exists() and len(pids_file.read_text().split()) == 2,
        20,
        "the job to start",
    )
    pids = read_pids(shared / "pids")
    strays.watch(*pids)
    resp = daemon.cancel(job_id)
    assert_status(resp, 200)
    assert resp.json()["Status"] == "CANCELLED", resp.json()
    for pid in pids:
        wait_until(lambda pid=pid: proc_gone(pid), 10, f"process {pid} to end")
    done = daemon.wait_done(job_id)
    assert done["Status"] == "CANCELLED" and "cancelled while running" in done["Message"]
    assert output_files(done)["jobd.stdout"] == b"started\n"  # what it wrote is kept
    assert_error(daemon.cancel(job_id), 409)


@pytest.mark.source_only
def test_the_central_jobd_killed_and_restarted_under_running_workers(
    jobd: DaemonFactory, shared: Path
) -> None:
    daemon = central(jobd)
    worker(jobd, daemon)
    worker(jobd, daemon)
    body = f"{note_place(shared)}; sleep 3; echo done > done.txt"
    running = [pulled_job(daemon, body) for _ in range(2)]
    queued = pulled_job(daemon, body)
    for job_id in running:
        daemon.wait_status(job_id, "RUNNING")
    daemon.kill9()
    time.sleep(HEARTBEAT + 1)  # the outage outlasts the heartbeat timeout on purpose
    back = central(jobd, port=daemon.port, data_dir=daemon.data_dir)
    for job_id in [*running, queued]:
        done = back.wait_done(job_id)
        assert done["Status"] == "SUCCESS" and done["Attempt"] == 1, done
        assert output_files(done)["done.txt"] == b"done\n"
    runs = [Path(place).parent.name for place in ran_in(shared)]
    assert sorted(runs) == sorted([*running, queued]), f"a job ran twice or not at all: {runs}"


@pytest.mark.source_only
def test_a_workers_sigterm_hands_its_job_back(jobd: DaemonFactory, shared: Path) -> None:
    daemon = central(jobd)
    first = worker(jobd, daemon)
    body = f"if [ ! -e {shared}/ran ]; then touch {shared}/ran; exec sleep 60; fi; echo second run"
    job_id = pulled_job(daemon, body)
    wait_until(lambda: (shared / "ran").exists(), 20, "the first run")
    assert first.proc is not None
    asked = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(20) == 0, first.log()
    assert time.monotonic() - asked < 4, "more than --kill-grace (1s) and a hand-back"
    assert "handed back" in first.log()
    handed = daemon.job(job_id)
    assert handed["Status"] == "QUEUED" and "handed it back" in handed["Message"], handed
    worker(jobd, daemon)
    done = daemon.wait_done(job_id)
    assert done["Status"] == "SUCCESS" and done["Attempt"] == 1, done


def test_a_worker_says_why_it_cannot_start(jobd: DaemonFactory) -> None:
    daemon = central(jobd)
    for flags, token, expected in (
        (("--service", "cpu"), TOKEN, "no pull service 'cpu'"),
        ((), "wrong-token", "JOBD_TOKEN"),
    ):
        argv = ["worker", daemon.url, "--service", "gpu", "--data-dir", str(jobd.root / "w")]
        done = subprocess.run(
            jobd_command(*argv, *flags),
            env=base_env({"JOBD_TOKEN": token}),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done
        assert expected in done.stderr, done.stderr


# -- the routes by hand, and faults ------------------------------------------------------------


@pytest.mark.source_only
def test_the_pull_routes_by_hand(jobd: DaemonFactory) -> None:
    """What a worker in another language would do, and what a bad one gets."""
    daemon = central(jobd)
    job_id = pulled_job(daemon, "echo hi", env={"COLOUR": "blue"})
    taken = daemon.api("GET", "/queue/gpu/job")
    assert_status(taken, 200)
    lease = taken.json()["id"]
    assert taken.json()["input"] == {"job": job_id, "attempt": 1}
    assert daemon.job(job_id)["Status"] == "QUEUED"  # until it is claimed
    assert_error(daemon.api("GET", f"/api/pull/{lease}/input"), 409)
    claimed = daemon.api("POST", f"/api/pull/{lease}")
    assert_status(claimed, 200)
    spec = claimed.json()
    assert spec["job"] == job_id and spec["attempt"] == 1
    assert spec["env"]["COLOUR"] == "blue" and spec["env"]["JOBD_JOB_ID"] == job_id
    assert daemon.job(job_id)["Status"] == "RUNNING"
    again = daemon.api("POST", f"/api/pull/{lease}")  # a worker that missed the answer
    assert_status(again, 200)
    assert again.json() == spec
    zipped = daemon.api("GET", f"/api/pull/{lease}/input")
    assert_status(zipped, 200)
    assert zipped.headers["Content-Type"] == "application/zip"
    assert zipped.content[:2] == b"PK"
    beat = daemon.api("PUT", f"/job/{lease}/heartbeat")
    assert_status(beat, 204)
    for query, fragment in (
        ({}, "'code'"),
        ({"code": "x"}, "'code'"),
        ({"code": "0", "stop": "later"}, "'stop'"),
        ({"code": "0", "oom": "0"}, "'oom'"),
    ):
        bad = daemon.api("PUT", f"/api/pull/{lease}/result", params=query, data=b"")
        assert fragment in assert_error(bad, 400)["message"]
    assert daemon.job(job_id)["Status"] == "RUNNING"  # a refused query changes nothing
    assert_error(daemon.api("PUT", "/api/pull/x/result", params={"code": "0"}), 400)
    assert_error(daemon.api("POST", "/api/pull/999999"), 404)
    assert_error(daemon.api("POST", "/api/pull/1", token=None), 401)
    # a result that is not a zip ends the job: sending it again would not help
    garbage = daemon.api("PUT", f"/api/pull/{lease}/result", params={"code": "0"}, data=b"no")
    assert_error(garbage, 400)
    done = daemon.wait_done(job_id)
    assert done["Status"] == "FAILED" and "result could not be taken" in done["Message"], done
    assert daemon.api("GET", f"/job/{lease}/status").json() == "failed"


@pytest.mark.source_only
def test_a_result_sent_to_a_full_disk_waits_for_room_and_lands(
    jobd: DaemonFactory, small_disk: Path
) -> None:
    daemon = central(jobd, "--min-free", "0", data_dir=small_disk / "data")
    pulling = worker(jobd, daemon)
    job_id = pulled_job(daemon, "head -c 8000000 /dev/urandom > big.bin; echo made")
    fill(small_disk / "filler", leave=2_000_000)
    wait_until(lambda: "/result?code=0" in daemon.log() and " 507 " in daemon.log(), 30)
    assert daemon.job(job_id)["Status"] == "RUNNING"  # the run is not lost meanwhile
    (small_disk / "filler").unlink()
    done = daemon.wait_done(job_id)
    assert done["Status"] == "SUCCESS", done
    assert len(output_files(done)["big.bin"]) == 8_000_000
    assert "result sent" in pulling.log()


@pytest.mark.source_only
def test_a_result_larger_than_the_central_takes_ends_the_job_with_its_output(
    jobd: DaemonFactory,
) -> None:
    daemon = central(jobd, "--max-upload", "1M")  # results: at most twice that
    worker(jobd, daemon)
    job_id = pulled_job(daemon, "head -c 3000000 /dev/urandom > big.bin; echo made it")
    done = daemon.wait_done(job_id)
    assert done["Status"] == "FAILED" and "too large" in done["Message"], done
    files = output_files(done)
    assert files["jobd.stdout"] == b"made it\n" and "big.bin" not in files


@pytest.mark.source_only
def test_an_attacker_job_on_a_worker_gets_neither_its_token_nor_its_life(
    jobd: DaemonFactory, shared: Path
) -> None:
    """run.sh is other people's code: on a worker it may not read the worker's environment
    (the token) nor signal it, as on serve (each job a user of its own, as root)."""
    if os.geteuid() != 0:
        pytest.skip("a user per job needs root; Landlock alone is tested with serve")
    daemon = central(jobd)
    pulling = worker(jobd, daemon)
    assert pulling.proc is not None
    body = (
        f"cat /proc/{pulling.proc.pid}/environ > stolen.txt 2>&1;"
        f" for pid in /proc/[0-9]*; do tr '\\0' '\\n' < $pid/environ 2>/dev/null; done"
        f" | grep -a TOKEN >> stolen.txt; kill -9 {pulling.proc.pid} 2> kill.txt; echo tried"
    )
    done = daemon.wait_done(pulled_job(daemon, body))
    files = output_files(done)
    assert files["jobd.stdout"] == b"tried\n", done
    assert TOKEN.encode() not in files["stolen.txt"], files["stolen.txt"]
    assert files["kill.txt"], "the kill went through silently"
    assert pulling.proc.poll() is None, "a job ended its worker"
    assert daemon.wait_done(pulled_job(daemon, "echo still here"))["Status"] == "SUCCESS"
