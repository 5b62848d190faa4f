"""Durability: kill -9 and restart on the same data dir; the data dir lock."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from conftest import (
    Daemon,
    assert_sentence,
    assert_status,
    free_port,
    max_overlap,
    output_files,
    proc_gone,
    q,
    read_pids,
    read_times,
    script,
    timed_job,
    wait_until,
)

# Run in a shell at a job's start: record whether the first run of the interrupted job is
# still alive, so a job running twice at once is caught from inside.
OLD_ALIVE_CHECK = """
for pid in $(cat {pids} 2>/dev/null); do
    state=$(sed 's/.*) //' /proc/$pid/stat 2>/dev/null | cut -d' ' -f1)
    case "$state" in ""|Z|X) ;; *) echo "$pid $state" >> {overlap} ;; esac
done
"""


def interrupted_job(shared: Path) -> bytes:
    """First run: leaves a file in its directory and blocks with a child. Later runs: finish."""
    pids, started = q(shared / "first.pids"), q(shared / "first.started")
    check = OLD_ALIVE_CHECK.format(pids=pids, overlap=q(shared / "overlap"))
    return script(
        f"""
        if [ -e {started} ]; then
            {check}
            [ -e partial.txt ] && echo dirty >> {q(shared / "dirty")}
            date +%s.%N >> {q(shared / "rerun.start")}
            echo rerun > result.txt
            date +%s.%N >> {q(shared / "rerun.end")}
            exit 0
        fi
        touch {started}
        echo partial > partial.txt
        sleep 1000 &
        {{ echo $!; echo $$; }} > {pids}.tmp && mv {pids}.tmp {pids}
        wait
        """
    )


def queued_job(shared: Path, name: str) -> bytes:
    check = OLD_ALIVE_CHECK.format(pids=q(shared / "first.pids"), overlap=q(shared / "overlap"))
    return timed_job(shared, name, body=check + "\nsleep 0.1")


@dataclass
class Interrupted:
    daemon: Daemon
    done: dict
    running: str
    old_pids: list[int]
    queued: list[str]


def _interrupt(jobd, shared: Path, strays, *flags: str) -> Interrupted:
    """A daemon with one job finished, one RUNNING and three QUEUED, killed with SIGKILL."""
    daemon = jobd.start("--workers", "1", "--kill-grace", "1s", *flags)
    done = daemon.wait_done(daemon.submit({"run.sh": script("echo before > before.txt")})["ID"])
    running = daemon.submit({"run.sh": interrupted_job(shared)})["ID"]
    wait_until((shared / "first.pids").exists, 20, "the first run to start")
    old_pids = read_pids(shared / "first.pids")
    strays.watch(*old_pids)
    queued = [daemon.submit({"run.sh": queued_job(shared, f"q{i}")})["ID"] for i in range(3)]
    assert daemon.job(running)["Status"] == "RUNNING"
    assert all(daemon.job(job_id)["Status"] == "QUEUED" for job_id in queued)
    daemon.kill9()
    assert not any(proc_gone(p) for p in old_pids), "the run died with the daemon"
    return Interrupted(daemon, done, running, old_pids, queued)


def test_restart_after_kill9_reruns_running_and_runs_queued(jobd, shared, strays):
    before = _interrupt(jobd, shared, strays)
    again = jobd.start("--workers", "1", "--kill-grace", "1s", data_dir=before.daemon.data_dir)

    rerun = again.wait_done(before.running)
    assert rerun["Status"] == "SUCCESS", rerun
    results = [again.wait_done(job_id) for job_id in before.queued]
    assert all(job["Status"] == "SUCCESS" for job in results), results
    assert all(proc_gone(p) for p in before.old_pids), "the first run outlived the restart"
    assert not (shared / "overlap").exists(), (shared / "overlap").read_text()
    assert not (shared / "dirty").exists(), "the re-run did not get a fresh directory"

    out = output_files(rerun)
    assert out["result.txt"] == b"rerun\n"
    assert "partial.txt" not in out

    intervals = []
    for name in ("rerun", "q0", "q1", "q2"):
        starts, ends = read_times(shared, name)
        assert len(starts) == 1 and len(ends) == 1, f"{name} ran {len(starts)} times"
        intervals.append((starts[0], ends[0]))
    assert max_overlap(intervals) == 1, intervals
    queued_starts = [start for start, _ in intervals[1:]]
    assert queued_starts == sorted(queued_starts), "queued jobs did not keep their FIFO order"

    served = again.get(before.done["ID"])
    assert_status(served, 200)
    assert served.json()["Status"] == "SUCCESS"
    assert served.json()["Output"] == before.done["Output"]
    assert output_files(served.json())["before.txt"] == b"before\n"


def test_on_restart_fail_ends_interrupted_jobs(jobd, shared, strays):
    before = _interrupt(jobd, shared, strays, "--on-restart", "fail")
    again = jobd.start(
        "--workers",
        "1",
        "--kill-grace",
        "1s",
        "--on-restart",
        "fail",
        data_dir=before.daemon.data_dir,
    )
    job = again.wait_done(before.running)
    assert job["Status"] == "FAILED"
    assert job["ExitCode"] is None
    assert_sentence(job["Message"])
    assert "restart" in job["Message"].lower(), job["Message"]
    assert all(again.wait_done(job_id)["Status"] == "SUCCESS" for job_id in before.queued)
    assert all(proc_gone(p) for p in before.old_pids), "the interrupted run outlived the restart"
    assert not (shared / "rerun.start").exists(), "a job marked never-twice ran again"
    assert not (shared / "overlap").exists(), (shared / "overlap").read_text()


def test_second_daemon_on_the_same_data_dir_refuses_to_start(jobd):
    first = jobd.start()
    second = jobd.start(data_dir=first.data_dir, port=free_port(), wait_ready=False)
    try:
        code = second.proc.wait(20)
    except subprocess.TimeoutExpired:
        raise AssertionError("a second daemon started on a locked data dir") from None
    assert code != 0
    text = second.log()
    lowered = text.lower()
    assert str(first.data_dir) in text or "data dir" in lowered or "data-dir" in lowered, text
    assert "Traceback" not in text, text
    assert_status(first.api("GET", "/health"), 200)


def test_a_job_interrupted_on_every_run_stops_being_rerun(jobd, shared, strays):
    """Three runs cut short by jobd's own end: the third restart ends it FAILED, so a job
    that brings jobd down (say, by filling its disk) cannot do it for ever."""
    runs = shared / "runs"
    run_sh = script(f"umask 000\necho run >> {q(runs)}\nsleep 1000")  # runs: one job user each
    daemon = jobd.start("--workers", "1", "--kill-grace", "1s")
    job_id = daemon.submit({"run.sh": run_sh})["ID"]
    for count in (1, 2, 3):
        wait_until(
            lambda count=count: runs.exists() and len(runs.read_text().split()) == count,
            20,
            f"run {count} to start",
        )
        daemon.kill9()
        daemon = jobd.start("--workers", "1", "--kill-grace", "1s", data_dir=daemon.data_dir)
    job = daemon.wait_done(job_id)
    assert job["Status"] == "FAILED", job
    assert "not run again" in job["Message"], job
    assert len(runs.read_text().split()) == 3
