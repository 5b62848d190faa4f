"""A full data disk, on a real 40 MB tmpfs: new jobs get 507, a job that fills the disk still
ends, and no worker is lost. Needs root to mount the tmpfs."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import assert_error, assert_status, script, unique_id, wait_until


def fill(path: Path, leave: int = 0) -> None:
    """Write `path` until the disk holds only `leave` bytes for jobd."""
    with open(path, "wb") as out:
        block = b"\0" * (1 << 20)
        try:
            while True:
                stat = os.statvfs(path.parent)
                room = stat.f_bavail * stat.f_frsize - leave
                if room <= 0:
                    break
                out.write(block[:room])
                out.flush()
        except OSError:
            pass


def test_a_job_that_fills_the_disk_ends_failed_and_both_workers_go_on(jobd, small_disk, gates):
    daemon = jobd.start("--workers", "2", "--min-free", "0", data_dir=small_disk / "data")
    filler = unique_id("fill")
    run_sh = script("head -c 100000000 /dev/zero > f\necho done")
    assert_status(daemon.upload({"run.sh": run_sh}, job_id=filler), 201)

    job = daemon.wait_done(filler)
    assert job["Status"] == "FAILED", job
    assert job["Message"].startswith("the result could not be stored: no space left on device")
    assert daemon.api("GET", "/health").json()["running"] == 0
    assert_error(daemon.cancel(filler), 409)  # it is over, not stranded

    for path in (small_disk / "data" / "jobs" / filler).rglob("f"):
        path.unlink()
    gate = gates()
    waiting = [unique_id("after") for _ in range(2)]
    for job_id in waiting:
        assert_status(daemon.upload({"run.sh": script(gate.shell)}, job_id=job_id), 201)
    wait_until(
        lambda: all(daemon.job(job_id)["Status"] == "RUNNING" for job_id in waiting),
        what="both workers running a job after the disk was full",
    )
    gate.open()
    assert all(daemon.wait_done(job_id)["Status"] == "SUCCESS" for job_id in waiting)
    assert "Exception in thread" not in daemon.log()


def test_an_upload_larger_than_the_free_space_is_507_and_leaves_nothing(jobd, small_disk):
    daemon = jobd.start("--min-free", "0", data_dir=small_disk / "data")
    before = daemon.job_dirs()
    job_id = unique_id("big")
    big = {"run.sh": script("true"), "big.bin": os.urandom(45_000_000)}

    body = assert_error(daemon.upload(big, job_id=job_id), 507)
    assert "free" in body["message"] and "--retention" in body["message"], body
    daemon.assert_nothing_written(before, job_id)
    assert daemon.staging() == []


def test_an_upload_on_a_full_disk_is_507_then_accepted_once_there_is_room(jobd, small_disk):
    daemon = jobd.start("--min-free", "0", data_dir=small_disk / "data")
    ballast = small_disk / "filler"
    fill(ballast)
    job_id = unique_id("full")
    files = {"run.sh": script("echo hi > out.txt")}

    assert_error(daemon.upload(files, job_id=job_id), 507)
    assert daemon.staging() == []

    ballast.unlink()
    assert_status(daemon.upload(files, job_id=job_id), 201)
    assert daemon.wait_done(job_id)["Status"] == "SUCCESS"


def test_below_the_reserve_uploads_are_507_and_health_says_degraded(jobd, small_disk):
    daemon = jobd.start("--min-free", "20MB", data_dir=small_disk / "data")
    files = {"run.sh": script("true")}
    health = daemon.api("GET", "/health").json()
    assert health["status"] == "healthy" and health["disk"]["min_free"] == 20_000_000, health

    fill(small_disk / "filler", leave=10_000_000)
    body = assert_error(daemon.upload(files, job_id=unique_id("low")), 507)
    assert "--min-free" in body["message"], body
    health = daemon.api("GET", "/health")
    assert_status(health, 200)  # still 200, so orchestrators keep polling it
    assert health.json()["status"] == "degraded"
    assert health.json()["disk"]["free"] < 20_000_000
    metrics = daemon.api("GET", "/metrics").text
    free = [line for line in metrics.splitlines() if line.startswith("jobd_disk_free_bytes ")]
    assert free and float(free[0].split()[1]) < 20_000_000, free

    (small_disk / "filler").unlink()
    assert_status(daemon.upload(files, job_id=unique_id("room")), 201)
    assert daemon.api("GET", "/health").json()["status"] == "healthy"


def test_a_restart_on_a_full_disk_answers_then_finishes_every_job(jobd, small_disk, gates):
    """kill -9, the disk fills to the last byte (the reserve used up), jobd starts again:
    within 20 s it answers /health (degraded, uploads 507) or exits with one line; once
    the space is back, every job it had finishes."""
    data = small_disk / "data"
    daemon = jobd.start("--workers", "1", data_dir=data)
    gate = gates()
    held = daemon.submit({"run.sh": script(f"{gate.shell}\necho held > out.txt")})["ID"]
    daemon.wait_status(held, "RUNNING")
    queued = [daemon.submit({"run.sh": script("echo later > out.txt")})["ID"] for _ in range(3)]
    daemon.kill9()
    (data / "jobd.ballast").unlink()  # the reserve was used up before the kill
    fill(small_disk / "filler")

    again = jobd.start("--workers", "1", data_dir=data, wait_ready=False)
    assert again.proc is not None

    def answers() -> bool:
        try:
            return again.api("GET", "/health", timeout=2).status_code == 200
        except OSError:
            return False

    wait_until(lambda: again.proc.poll() is not None or answers(), 20, "an answer or an exit")
    if again.proc.poll() is not None:
        lines = again.log().strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in again.log(), again.log()
        (small_disk / "filler").unlink()
        again = jobd.start("--workers", "1", data_dir=data)
    else:
        health = again.api("GET", "/health").json()
        assert health["status"] == "degraded" and health["problems"], health
        assert_error(again.upload({"run.sh": script("true")}, job_id=unique_id("full")), 507)
        (small_disk / "filler").unlink()
    gate.open()
    for job_id in (held, *queued):
        assert again.wait_done(job_id, 60)["Status"] == "SUCCESS", again.log()
