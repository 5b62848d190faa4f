"""Job limits at work (`--job-memory`, `--job-processes`, a job's own `limits`): the kernel
holds a job to them — a cgroup as root, rlimits as another user — and the rest of the
machine goes on: a memory hog ends FAILED for memory, a fork bomb is held to its process
limit until its timeout while jobd answers and another job runs, and none of it outlives
the job."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
import requests
from confinement import USER, kill_processes_of, processes_of, user_data_dir, user_wrapper
from conftest import (
    TERMINAL,
    Daemon,
    DaemonFactory,
    assert_error,
    assert_status,
    output_files,
    q,
    script,
    unique_id,
    wait_until,
)

MiB = 2**20
MEMORY, PROCESSES = "256M", 64
FLAGS = ("--workers", "4", "--kill-grace", "1s", "--job-memory", MEMORY)
FLAGS += ("--job-processes", str(PROCESSES))
HOG = script("head -c 900000000 /dev/zero | tail")  # tail keeps a line with no end: 900 MB
#: 60 MB; tail's status is the pipeline's, and its output (all of it: no line ends) goes
#: nowhere rather than into the result
SMALL = script("head -c 60000000 /dev/zero | tail > /dev/null")
BOMB_TIMEOUT = 8
HEALTH_WITHIN = 2.0


@pytest.fixture(scope="module")
def as_root(tmp_path_factory: pytest.TempPathFactory):
    if os.geteuid() != 0:
        pytest.skip("jobd as root needs the tests to run as root")
    root = tmp_path_factory.mktemp("limits-root")
    root.chmod(0o711)
    factory = DaemonFactory(root)
    try:
        yield factory.start(*FLAGS, data_dir=root / "data")
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def as_user(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("limits-user")
    wrapper = user_wrapper(root / "stage")
    factory = DaemonFactory(root)
    try:
        yield factory.start(*FLAGS, data_dir=user_data_dir(root), wrapper=wrapper)
    finally:
        factory.stop_all()


@pytest.fixture(params=["root", "user"], ids=["as-root", f"as-uid-{USER}"])
def limited(request: pytest.FixtureRequest) -> Daemon:
    """jobd with --job-memory 256M --job-processes 64, as root or as uid 1000."""
    return request.getfixturevalue(f"as_{request.param}")


def by_cgroups(daemon: Daemon) -> bool:
    resp = daemon.api("GET", "/health")
    assert_status(resp, 200)
    return resp.json()["isolation"]["cgroups"] is not None


def assert_ended_for_memory(daemon: Daemon, job: dict) -> None:
    """FAILED, and "memory" in its Message; where rlimits hold the job (no cgroup to say it
    was the OOM killer), in its Message or its stderr (`tail: memory exhausted`)."""
    assert job["Status"] == "FAILED", job
    if by_cgroups(daemon):
        assert "memory" in job["Message"], job
    else:
        stderr = output_files(job).get("jobd.stderr", b"").decode(errors="replace")
        assert "memory" in job["Message"] + stderr, (job, stderr)


def test_a_memory_hog_ends_failed_for_memory(limited):
    job = limited.wait_done(limited.submit({"run.sh": HOG})["ID"], timeout=60)
    assert_ended_for_memory(limited, job)


def test_a_job_within_its_memory_limit_succeeds(limited):
    job = limited.wait_done(limited.submit({"run.sh": SMALL})["ID"], timeout=60)
    assert job["Status"] == "SUCCESS", job
    assert job["Limits"]["Memory"] == 256 * MiB, job


def test_a_job_is_held_to_its_own_lower_memory_limit(limited):
    job = limited.submit({"run.sh": SMALL}, limits={"memory": "32M"})
    assert job["Limits"]["Memory"] == 32 * MiB, job
    assert_ended_for_memory(limited, limited.wait_done(job["ID"], timeout=60))


@pytest.mark.source_only
@pytest.mark.parametrize(
    ("limits", "field"), [({"memory": "1G"}, "memory"), ({"processes": 65}, "processes")]
)
def test_limits_above_the_maximum_are_refused_and_nothing_is_kept(as_root, limits, field):
    before = as_root.job_dirs()
    job_id = unique_id()
    resp = as_root.upload({"run.sh": script("true")}, job_id=job_id, limits=limits)
    body = assert_error(resp, 400)
    assert f"limits.{field}" in body["message"], body
    as_root.assert_nothing_written(before, job_id)


def test_a_job_is_held_to_its_own_lower_process_limit(as_root, shared, gates):
    """As root, the job's own cgroup holds it to its own `limits.processes`, and goes with it."""
    if not by_cgroups(as_root):
        pytest.skip("without cgroups RLIMIT_NPROC holds a job (not exactly, for jobd's user)")
    gate, seen = gates(), shared / "cgroup"
    run_sh = script(f"cat /proc/self/cgroup > {q(seen)}.tmp && mv {q(seen)}.tmp {q(seen)}")
    run_sh += gate.shell.encode() + b"\n"
    job_id = as_root.submit({"run.sh": run_sh}, limits={"processes": 8})["ID"]
    wait_until(seen.exists, 30, f"job {job_id} to start")
    group = pids_group(seen.read_text())
    assert group is not None and group.is_dir(), seen.read_text()
    assert (group / "pids.max").read_text().strip() == "8"
    gate.open()
    job = as_root.wait_done(job_id)
    assert job["Status"] == "SUCCESS" and job["Limits"]["Processes"] == 8, job
    assert not group.exists(), f"the job's cgroup {group} outlived it"


# --------------------------------------------------------------------------- the fork bomb


def _cgroup_mounts() -> dict[str, Path]:
    """Where each cgroup v1 controller is mounted ("" for cgroup v2)."""
    found: dict[str, Path] = {}
    with open("/proc/self/mountinfo") as info:
        for line in info:
            head, _, tail = line.partition(" - ")
            fstype, _, options = tail.split()[:3]
            point = Path(head.split()[4])
            if fstype == "cgroup2":
                found.setdefault("", point)
            elif fstype == "cgroup":
                for option in options.split(","):
                    found.setdefault(option, point)
    return found


def pids_group(proc_cgroup: str) -> Path | None:
    """The folder of the pids cgroup named by a /proc/PID/cgroup text."""
    mounts = _cgroup_mounts()
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(",") and "pids" in mounts:
            return mounts["pids"] / path.lstrip("/")
    for line in proc_cgroup.splitlines():
        if line.startswith("0::") and "" in mounts:
            return mounts[""] / line[3:].lstrip("/")
    return None


def tasks_in(group: Path | None) -> list[int]:
    if group is None:
        return []
    try:
        return [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
    except OSError:  # the group is gone
        return []


def forks_refused(group: Path | None) -> int:
    """How many times the group's process limit refused a fork (its pids.events)."""
    try:
        events = (group / "pids.events").read_text() if group else ""
    except OSError:  # the group is gone
        return 0
    counts = dict(line.split() for line in events.splitlines() if line.strip())
    return int(counts.get("max", 0))


def kill_group(group: Path | None, timeout: float = 30.0) -> None:
    """A safety net: kill what is in the group until it is empty."""
    deadline = time.monotonic() + timeout
    while (pids := tasks_in(group)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_fork_bomb_is_held_while_jobd_and_other_jobs_go_on(limited, shared, gates):
    """Under --job-processes 64 with a timeout of 8 s: /health answers within 2 s throughout,
    another job runs to SUCCESS meanwhile, and no process of the bomb outlives its job. The
    bomb waits until the test has seen its limit in force (a cgroup's pids.max as root, its
    RLIMIT_NPROC as uid 1000), and whatever is left of it when the test ends is killed."""
    daemon, cgroups = limited, by_cgroups(limited)
    if not Path("/bin/bash").exists():
        pytest.skip("the fork bomb's run.sh is a bash script")
    info, go = shared / "bomb", gates()
    # The classic bomb, lit again and again by run.sh until its timeout: dash's bomb burns
    # out in a second (a dash that cannot fork exits); bash's run.sh survives a refused fork.
    bomb = script(
        f"""
        {{ id -u; ulimit -u; cat /proc/self/cgroup; }} > {q(info)}.tmp && mv {q(info)}.tmp {q(info)}
        {go.shell}
        exec 2> /dev/null
        bomb() {{ bomb | bomb & }}
        while :; do bomb; done
        """,
        shebang="#!/bin/bash",
    )
    bomb_id, other_id = unique_id("bomb"), unique_id("other")
    group: Path | None = None
    daemon.submit({"run.sh": bomb}, job_id=bomb_id, timeout=BOMB_TIMEOUT)
    try:
        wait_until(info.exists, 30, "the fork bomb to start")
        uid, nproc, cgroup_text = info.read_text().split("\n", 2)
        if cgroups:
            assert int(uid) in range(60000, 61000), uid
            group = pids_group(cgroup_text)
            assert group is not None and group.is_dir(), cgroup_text
            assert (group / "pids.max").read_text().strip() == str(PROCESSES)
        else:  # on top of what uid 1000 runs now (jobd's threads, mostly)
            assert int(uid) == USER, uid
            assert nproc.isdigit() and int(nproc) <= 2000, f"RLIMIT_NPROC is {nproc}"
        go.open()

        daemon.submit({"run.sh": script("echo done > out.txt")}, job_id=other_id)
        answers: list[float] = []
        counts: list[int] = []  # the bomb's processes, now and then
        refused: list[int] = []  # forks its cgroup refused so far
        seen: dict[str, dict] = {}

        def bomb_over() -> bool:
            started = time.monotonic()
            try:
                health = requests.get(daemon.url + "/health", timeout=HEALTH_WITHIN * 5)
            except requests.RequestException as exc:
                raise AssertionError(
                    f"/health did not answer during the fork bomb: {exc}"
                ) from None
            answers.append(time.monotonic() - started)
            assert_status(health, 200)
            assert answers[-1] < HEALTH_WITHIN, f"/health took {answers[-1]:.2f}s"
            if "other" not in seen and (other := daemon.job(other_id))["Status"] in TERMINAL:
                seen["other"], seen["bomb then"] = other, daemon.job(bomb_id)
            seen["bomb"] = daemon.job(bomb_id)
            if seen["bomb"]["Status"] in TERMINAL:
                return True
            counts.append(len(processes_of(bomb_id)))
            refused.append(forks_refused(group))
            return False

        wait_until(bomb_over, BOMB_TIMEOUT + 30, "the fork bomb's job to end")
        survivors = processes_of(bomb_id)
        in_group = tasks_in(group)
    finally:
        if daemon.job(bomb_id)["Status"] not in TERMINAL:
            daemon.cancel(bomb_id)
        kill_processes_of(bomb_id)
        kill_group(group)

    job = seen["bomb"]
    assert job["Status"] == "FAILED" and "timed out" in job["Message"], job
    assert not survivors, f"processes of the fork bomb outlived its job: {survivors}"
    assert not in_group, f"the fork bomb's cgroup still holds {in_group}"
    assert "other" in seen and seen["other"]["Status"] == "SUCCESS", seen
    assert output_files(seen["other"])["out.txt"] == b"done\n"
    assert seen["bomb then"]["Status"] == "RUNNING", "the other job ran only after the bomb"
    assert len(answers) >= 10, f"/health was asked only {len(answers)} times"
    # it did swarm, and no further than its limit (as uid 1000, the limit counts all of the
    # user's processes: jobd's threads that end leave the bomb room)
    assert PROCESSES / 4 <= max(counts, default=0) <= PROCESSES * (1 if cgroups else 1.5), counts
    if cgroups:
        assert max(refused) > 0, "the fork bomb never reached its process limit"
    assert daemon.proc is not None and daemon.proc.poll() is None, "jobd ended"


def _memory_groups() -> int:
    """Memory cgroups the kernel holds, removed ones still charged for pages included."""
    for line in Path("/proc/cgroups").read_text().splitlines():
        if line.startswith("memory\t"):
            return int(line.split()[2])
    pytest.skip("no memory controller here")


def test_a_job_without_a_memory_limit_makes_no_memory_group(jobd):
    """A memory group outlives its removal while the files its job wrote are cached (on
    tmpfs, while they are kept): one per job would pile up in the kernel by the thousand."""
    if os.geteuid() != 0:
        pytest.skip("jobd makes cgroups only as root")
    daemon = jobd.start("--workers", "2")
    if daemon.api("GET", "/health").json()["isolation"]["cgroups"] is None:
        pytest.skip("no cgroups for jobd here")
    before = _memory_groups()
    ids = [daemon.submit({"run.sh": script("echo out; echo err >&2")})["ID"] for _ in range(30)]
    for job_id in ids:
        assert daemon.wait_done(job_id)["Status"] == "SUCCESS"
    assert _memory_groups() - before < 10  # other tests' daemons may come and go meanwhile
    limited = daemon.submit({"run.sh": HOG}, limits={"memory": "64M"})["ID"]
    assert_ended_for_memory(daemon, daemon.wait_done(limited, timeout=60))  # one when asked
