"""run.sh is started by a small helper (see jobd/run/executors/spawner.py), yet it is the
daemon's own child and holds nothing of the daemon's or the helper's; with the helper
killed, jobs start all the same (from the daemon itself), and the log says so once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from conftest import Gate, proc_gone, q, script, wait_until


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        found += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
    return found


def _below(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        children = _children(stack.pop())
        found += children
        stack += children
    return found


def _held_job(daemon, shared: Path, gate: Gate) -> tuple[str, int, int]:
    """A running job (its shell waits at the gate); its PID and its parent's."""
    report = shared / "report"
    run_sh = script(
        f"""
        echo "$$ $PPID" > {q(report)}.tmp && mv {q(report)}.tmp {q(report)}
        {gate.shell}
        """
    )
    job_id = daemon.submit({"run.sh": run_sh})["ID"]
    wait_until(report.exists, 20, "the job to report its PID")
    pid, parent = map(int, report.read_text().split())
    return job_id, pid, parent


def test_run_sh_is_the_daemons_child_holding_only_its_own_files(jobd, shared, gates):
    daemon = jobd.start()
    gate = gates()
    job_id, pid, parent = _held_job(daemon, shared, gate)
    # the daemon's Python process: the one started, or below the binary's loaders
    assert parent in (daemon.proc.pid, *_below(daemon.proc.pid))
    held = {fd: os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert {"0", "1", "2"} <= held.keys(), held
    for target in held.values():  # its input, its output files, and run.sh read by its shell
        assert target == "/dev/null" or target.startswith(str(daemon.data_dir)), held
    gate.open()
    assert daemon.wait_done(job_id)["Status"] == "SUCCESS"


def _helpers(parent: int) -> list[int]:
    """The daemon's children that are jobd too (not a run.sh)."""
    own = Path(f"/proc/{parent}/cmdline").read_bytes()
    return [pid for pid in _children(parent) if Path(f"/proc/{pid}/cmdline").read_bytes() == own]


def test_jobs_start_when_the_helper_is_killed(jobd, shared, gates):
    daemon = jobd.start()
    gate = gates()
    job_id, _, parent = _held_job(daemon, shared, gate)
    helpers = _helpers(parent)
    assert len(helpers) == 1, helpers
    os.kill(helpers[0], signal.SIGKILL)
    wait_until(lambda: proc_gone(helpers[0]), 10, "the helper to be gone")
    gate.open()
    assert daemon.wait_done(job_id)["Status"] == "SUCCESS"  # a job it started ends as before
    for _ in range(3):
        after = daemon.submit({"run.sh": script("echo again")})["ID"]
        job = daemon.wait_done(after)
        assert job["Status"] == "SUCCESS", job
    assert daemon.log().count("the process that starts run.sh is gone") == 1
    assert daemon.api("GET", "/health").status_code == 200


def test_the_helper_ends_with_a_killed_daemon(jobd, shared, gates):
    daemon = jobd.start()
    _, _, parent = _held_job(daemon, shared, gates())
    (helper,) = _helpers(parent)
    daemon.kill9()
    wait_until(lambda: proc_gone(helper), 10, "the helper to end with the daemon")
