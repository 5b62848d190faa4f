"""The Slurm backend against a real one-node Slurm cluster (scripts/slurm-test-cluster.sh).

The cluster comes from SLURM_CONF when scripts/test.sh started one, or is started here. The
tests are skipped, with the reason shown, only when no Slurm can be started on this machine.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests
from conftest import (
    TIME_LIMIT_PREFIX,
    assert_error,
    free_port,
    output_files,
    proc_gone,
    read_pids,
    script,
    unique_id,
    wait_until,
)


@pytest.fixture
def slurm_jobd(jobd, slurm_conf: str):
    def start(*flags: str, **kwargs):
        env = {"SLURM_CONF": slurm_conf, **kwargs.pop("env", {})}
        flags = flags if "argv" in kwargs else ("--kill-grace", "1s", *flags)
        return jobd.start(*flags, env=env, **kwargs)

    yield start
    # Slurm jobs outlive the daemon by design; the test cluster is this suite's alone (but
    # for the job the session started early, which must run into its time limit)
    env = {**os.environ, "SLURM_CONF": slurm_conf}
    listed = subprocess.run(
        ["squeue", "-h", "--user=root", "-o", "%i %j"], env=env, capture_output=True, text=True
    )
    ids = [
        line.split()[0]
        for line in listed.stdout.splitlines()
        if line.strip() and not line.split()[-1].startswith(f"jobd-{TIME_LIMIT_PREFIX}")
    ]
    if ids:
        subprocess.run(["scancel", *ids], env=env, capture_output=True)


def scontrol(slurm_conf: str, slurm_id: int) -> str:
    env = {**os.environ, "SLURM_CONF": slurm_conf}
    return subprocess.run(
        ["scontrol", "-o", "show", "job", str(slurm_id)], env=env, capture_output=True, text=True
    ).stdout


def squeue_names(slurm_conf: str, job_id: str) -> list[str]:
    env = {**os.environ, "SLURM_CONF": slurm_conf}
    done = subprocess.run(
        ["squeue", "-h", "--states=all", f"--name=jobd-{job_id}", "-o", "%i"],
        env=env,
        capture_output=True,
        text=True,
    )
    return done.stdout.split()


def test_round_trip_through_slurm(slurm_jobd, slurm_conf: str) -> None:
    daemon = slurm_jobd()
    job_id = unique_id("slurm")
    body = """
        #SBATCH --time=1
        tr a-z A-Z < in.txt > out.txt
        echo to-stdout; echo to-stderr >&2
    """
    job = daemon.submit({"run.sh": script(body), "in.txt": b"hello\n"}, job_id=job_id, slurml=True)
    assert job["Slurml"] is True and job["SlurmID"] > 0
    done = daemon.wait_done(job_id)
    assert (done["Status"], done["ExitCode"]) == ("SUCCESS", 0), done
    files = output_files(done)
    assert files["out.txt"] == b"HELLO\n"
    assert files["jobd.stdout"] == b"to-stdout\n"
    assert files["jobd.stderr"] == b"to-stderr\n"
    assert "TimeLimit=00:01:00" in scontrol(slurm_conf, done["SlurmID"])
    assert squeue_names(slurm_conf, job_id) == [str(done["SlurmID"])]


def test_exit_code_and_the_slurm_alias(slurm_jobd, tmp_path: Path) -> None:
    # a relative --data-dir (the default is ./data): Slurm must still get absolute paths
    port = free_port()
    argv = ["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", "rel"]
    daemon = slurm_jobd(argv=argv, port=port, data_dir=tmp_path / "rel")
    job_id = unique_id("slurm")
    daemon.submit({"run.sh": script("exit 3")}, job_id=job_id, slurm=True)
    done = daemon.wait_done(job_id)
    assert (done["Status"], done["ExitCode"], done["Slurml"]) == ("FAILED", 3, True)
    assert "3" in done["Message"]


def test_per_job_options_are_checked_and_win(slurm_jobd, slurm_conf: str) -> None:
    daemon = slurm_jobd()
    job_id = unique_id("slurm")
    files = {"run.sh": script("#SBATCH --time=1\ntrue")}
    daemon.submit(files, job_id=job_id, slurml=True, slurm_options={"time": "3", "cpus": 1})
    done = daemon.wait_done(job_id)
    assert "TimeLimit=00:03:00" in scontrol(slurm_conf, done["SlurmID"])

    before = daemon.job_dirs()
    for options in ({"time": "1; rm -rf /"}, {"nodelist": "x"}, {"cpus": "many"}, "--mem=1"):
        bad = unique_id("bad")
        resp = daemon.upload(files, job_id=bad, slurml=True, slurm_options=options)
        assert_error(resp, 400)
        daemon.assert_nothing_written(before, bad)


def test_cancel_a_pending_job(slurm_jobd) -> None:
    daemon = slurm_jobd()
    job_id = unique_id("slurm")
    daemon.submit({"run.sh": script("#SBATCH --begin=now+1hour\ntrue")}, job_id=job_id, slurml=True)
    wait_until(lambda: "BeginTime" in daemon.job(job_id)["Message"], 20, "Slurm's pending reason")
    resp = daemon.cancel(job_id)
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert (job["Status"], job["ExitCode"]) == ("CANCELLED", None)
    assert "CANCELLED" in job["Message"]
    assert daemon.wait_done(job_id)["Status"] == "CANCELLED"


def test_cancel_a_running_job_ends_its_processes(slurm_jobd, tmp_path: Path) -> None:
    daemon = slurm_jobd()
    job_id = unique_id("slurm")
    pids = tmp_path / "pids"
    body = f"sleep 1000 &\necho $! >> {pids}\necho $$ >> {pids}\nwait"
    daemon.submit({"run.sh": script(body)}, job_id=job_id, slurml=True)
    daemon.wait_status(job_id, "RUNNING")
    wait_until(lambda: len(read_pids(pids)) == 2 if pids.exists() else False, 20, "the pids")
    job = daemon.cancel(job_id).json()
    assert job["Status"] == "CANCELLED" and job["ExitCode"] is None
    wait_until(lambda: all(proc_gone(pid) for pid in read_pids(pids)), 20, "Slurm to end them")


def test_without_sbatch_an_upload_is_503_and_leaves_nothing(jobd, slurm_conf: str) -> None:
    empty = tempfile.mkdtemp()
    daemon = jobd.start(env={"SLURM_CONF": slurm_conf, "PATH": empty})
    before = daemon.job_dirs()
    job_id = unique_id("nosbatch")
    resp = daemon.upload({"run.sh": script("true")}, job_id=job_id, slurml=True)
    body = assert_error(resp, 503)
    assert "sbatch" in body["message"]
    daemon.assert_nothing_written(before, job_id)


def test_restart_reattaches_and_submits_nothing_twice(slurm_jobd, tmp_path: Path, slurm_conf):
    gate = tmp_path / "gate"
    daemon = slurm_jobd()
    body = f"while [ ! -e {gate} ]; do sleep 0.1; done\necho finished > out.txt"
    ids = [unique_id("restart") for _ in range(5)]
    for job_id in ids:
        daemon.submit({"run.sh": script(body)}, job_id=job_id, slurml=True)
    for job_id in ids:
        daemon.wait_status(job_id, "RUNNING")
    daemon.kill9()

    gate.touch()  # the jobs finish while no daemon watches
    again = slurm_jobd(data_dir=daemon.data_dir)
    for job_id in ids:
        done = again.wait_done(job_id)
        assert done["Status"] == "SUCCESS", done
        assert output_files(done)["out.txt"] == b"finished\n"
        assert squeue_names(slurm_conf, job_id) == [str(done["SlurmID"])]


def test_fifty_jobs_at_once(slurm_jobd) -> None:
    daemon = slurm_jobd()
    ids = [unique_id("many") for _ in range(50)]
    for job_id in ids:
        daemon.submit({"run.sh": script("echo $SLURM_JOB_ID")}, job_id=job_id, slurml=True)
    for job_id in ids:
        done = daemon.wait_done(job_id, timeout=120)
        assert done["Status"] == "SUCCESS", done
        assert output_files(done)["jobd.stdout"].strip() == str(done["SlurmID"]).encode()


@pytest.mark.slow
@pytest.mark.skipif(
    bool(os.environ.get("JOBD_EXE")),
    reason="Slurm's time limit kills the binary's job the same way: checked once, in the"
    " source pass (it takes 60-90 s, Slurm's limits count in minutes)",
)
def test_a_time_limit_kill_says_so(early_slurm_time_limit) -> None:
    """The job was submitted when the session began (conftest), so its minute runs out
    while the other tests run."""
    daemon, job_id = early_slurm_time_limit
    done = daemon.wait_done(job_id, timeout=240)
    assert (done["Status"], done["ExitCode"]) == ("FAILED", None)
    assert "Slurm TIMEOUT: time limit exceeded" in done["Message"]


def test_a_submission_cut_short_by_a_crash_is_adopted_not_repeated(
    slurm_jobd, tmp_path: Path, slurm_conf: str
) -> None:
    """sbatch succeeds, then the daemon dies before it records Slurm's job ID: on restart it
    finds the job by name instead of submitting it again."""
    fake = tmp_path / "bin"
    fake.mkdir()
    sbatch = fake / "sbatch"
    real = subprocess.run(["sh", "-c", "command -v sbatch"], capture_output=True, text=True)
    sbatch.write_text(f'#!/bin/sh\n{real.stdout.strip()} "$@"\nkill -9 $PPID\n')
    sbatch.chmod(0o755)
    daemon = slurm_jobd(env={"PATH": f"{fake}:{os.environ['PATH']}"})
    job_id = unique_id("crash")
    with pytest.raises(requests.RequestException):
        daemon.upload({"run.sh": script("echo ran > out.txt")}, job_id=job_id, slurml=True)
    assert daemon.proc is not None
    daemon.proc.wait(30)  # died right after sbatch answered

    again = slurm_jobd(data_dir=daemon.data_dir)
    done = again.wait_done(job_id)
    assert done["Status"] == "SUCCESS", done
    assert output_files(done)["out.txt"] == b"ran\n"
    assert squeue_names(slurm_conf, job_id) == [str(done["SlurmID"])]


def test_a_slurm_job_gets_its_env(slurm_jobd) -> None:
    daemon = slurm_jobd()
    job_id = unique_id("slurm-env")
    body = 'echo "$GREETING|$JOBD_JOB_ID|$JOBD_ATTEMPT" > env.txt'
    daemon.submit(
        {"run.sh": script(body)}, job_id=job_id, slurml=True, env={"GREETING": "it's 'quoted' $x"}
    )
    done = daemon.wait_done(job_id)
    assert done["Status"] == "SUCCESS", done
    assert output_files(done)["env.txt"] == f"it's 'quoted' $x|{job_id}|1\n".encode()


def test_a_failed_slurm_attempt_is_resubmitted(slurm_jobd, tmp_path) -> None:
    daemon = slurm_jobd()
    job_id = unique_id("slurm-retry")
    count = tmp_path / "count"
    body = f"""
        n=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {count}
        echo "attempt $JOBD_ATTEMPT"
        [ $n -ge 2 ]
    """
    first = daemon.submit(
        {"run.sh": script(body)},
        job_id=job_id,
        slurml=True,
        retry={"max_attempts": 2, "initial_interval": "0.5s"},
    )
    done = daemon.wait_done(job_id, timeout=120)
    assert (done["Status"], done["Attempt"]) == ("SUCCESS", 2), done
    assert done["SlurmID"] != first["SlurmID"], "the retry was not a new Slurm job"
    files = output_files(done)
    assert files["attempt-1.stdout"] == b"attempt 1\n"
    assert files["jobd.stdout"] == b"attempt 2\n"
