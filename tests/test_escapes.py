"""Children that leave run.sh's process group (setsid, a double fork, setpgid) are ended too:
when run.sh exits, on cancel and on timeout."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import (
    JOB_PYTHON,
    assert_status,
    proc_gone,
    proc_stat,
    q,
    read_pids,
    script,
    unique_id,
    wait_until,
)

GRACE = 1.0


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return ("--workers", "4", "--kill-grace", f"{GRACE}s")


def escapes(pid_file: Path) -> dict[str, str]:
    """Shell lines that start a `sleep` outside run.sh's group; it writes its PID first."""
    report = f"echo $$ > {q(pid_file)}.tmp && mv {q(pid_file)}.tmp {q(pid_file)}"
    python = (
        f"import os, time; os.setpgid(0, 0); open({str(pid_file)!r} + '.tmp', 'w')"
        f".write(str(os.getpid())); os.rename({str(pid_file)!r} + '.tmp', {str(pid_file)!r});"
        " time.sleep(1000)"
    )
    return {
        "setsid": f"setsid sh -c '{report}; exec sleep 1000' &",
        "setsid-nohup": f"setsid nohup sh -c '{report}; exec sleep 1000' >/dev/null 2>&1 &",
        "double-fork": f"( setsid sh -c '{report}; exec sleep 1000' & ) ",
        "setpgid": f"{q(JOB_PYTHON)} -c {q(python)} &",
    }


@pytest.mark.parametrize("ending", ["exit", "cancel", "timeout"])
@pytest.mark.parametrize("kind", list(escapes(Path("x"))))
def test_an_escaped_child_ends_with_its_job(server, shared, strays, gates, kind, ending):
    pid_file = shared / f"escapee-{unique_id()}"
    gate = gates()
    after = f"{gate.shell}\nexit 0" if ending == "exit" else "sleep 1000"
    run_sh = script(
        f"""
        {escapes(pid_file)[kind]}
        while [ ! -e {q(pid_file)} ]; do sleep 0.01; done
        {after}
        """
    )
    fields = {"timeout": 2} if ending == "timeout" else {}
    job_id = server.submit({"run.sh": run_sh}, **fields)["ID"]
    wait_until(pid_file.exists, 20, f"job {job_id}'s escaped child to start")
    (escapee,) = read_pids(pid_file)
    strays.watch(escapee)
    assert not proc_gone(escapee)

    gate.open()
    if ending == "cancel":
        assert_status(server.cancel(job_id), 200)  # answered once every process is gone
        job = server.job(job_id)
    else:
        job = server.wait_done(job_id)
    expected = {"exit": "SUCCESS", "cancel": "CANCELLED", "timeout": "FAILED"}[ending]
    assert job["Status"] == expected, job
    assert proc_gone(escapee), f"{kind} child {escapee} outlived its job ({ending})"
    # and no zombie is left: jobd adopted it (as its subreaper) and collected it
    wait_until(lambda: proc_stat(escapee) is None, 10, f"{kind} child {escapee} to be reaped")


def test_run_sh_held_open_for_writing_a_moment_still_starts(jobd, gates):
    """Text file busy (ETXTBSY): while another process holds run.sh open for writing, as a
    forked child does for a moment when jobs are unpacked at the same time, it cannot be
    executed. jobd tries again instead of failing the job."""
    daemon = jobd.start("--workers", "1")
    gate = gates()
    first = daemon.submit({"run.sh": script(gate.shell)})["ID"]
    daemon.wait_status(first, "RUNNING")
    second = daemon.submit({"run.sh": script("echo started")})["ID"]
    run_sh = daemon.data_dir / "jobs" / second / "work" / "run.sh"
    held = os.open(run_sh, os.O_WRONLY)
    try:
        gate.open()
        daemon.wait_done(first)  # the second starts now, and finds run.sh busy
        time.sleep(0.1)  # the fault: the write descriptor lives on a little longer
    finally:
        os.close(held)
    job = daemon.wait_done(second)
    assert job["Status"] == "SUCCESS", job
