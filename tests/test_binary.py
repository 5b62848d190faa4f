"""The frozen binary: it runs in a root with nothing but busybox (no libc, no loader), keeps
its bundle's libraries and variables away from run.sh, and shuts down cleanly on SIGTERM.

The chroot tests run when the suite runs against the binary (JOBD_EXE=dist/jobd, as
scripts/test.sh does); the shutdown test runs against either.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import (
    REPO_ROOT,
    STOP_TIMEOUT,
    Daemon,
    b64,
    base_env,
    free_port,
    make_zip,
    output_files,
    proc_gone,
    read_pids,
    script,
    unique_id,
    wait_until,
)

EXE = os.environ.get("JOBD_EXE")
PLAIN = Path(os.environ.get("JOBD_PLAIN_EXE", REPO_ROOT / "build" / "pyinstaller" / "jobd"))
BUSYBOX = Path("/bin/busybox")

frozen_only = pytest.mark.skipif(not EXE, reason="needs the frozen binary: JOBD_EXE=dist/jobd")

ENV_JOB = {"run.sh": script("env > env.txt\necho done")}


def _busybox_root(tmp_path: Path) -> Path:
    """/bin/busybox (static) and its applets, /tmp, /dev/null, /proc, /etc/hosts: nothing else."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not BUSYBOX.is_file():
        pytest.fail("the chroot test needs root, unshare and busybox-static (see .ci/run)")
    root = tmp_path / "root"
    for folder in ("bin", "tmp", "dev", "proc", "etc", "data"):
        (root / folder).mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "env", "cat", "echo", "sleep", "ls"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "tmp").chmod(0o1777)
    os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    return root


def _in_chroot(root: Path, *argv: str) -> list[str]:
    """Run argv inside `root`, with /proc mounted in a private mount namespace."""
    mount_and_run = 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'
    return ["unshare", "--mount", "--", "/bin/sh", "-c", mount_and_run, str(root), *argv]


@frozen_only
def test_the_binary_serves_jobs_in_a_root_without_libc(tmp_path: Path) -> None:
    root = _busybox_root(tmp_path)
    shutil.copy2(EXE, root / "jobd")
    libc = [p.name for p in root.rglob("*") if p.name.startswith(("libc.", "libc-", "ld-"))]
    assert not libc, f"the chroot should hold no C library, found {libc}"

    port = free_port()
    argv = _in_chroot(root, "/jobd", "serve", "--host", "127.0.0.1", "--port", str(port))
    daemon = Daemon([], base_env(), tmp_path, port, root / "data")
    with open(daemon.log_path, "wb") as log:
        proc = subprocess.Popen([*argv, "--data-dir", "/data"], stdout=log, stderr=log)
    daemon.proc = proc
    try:
        daemon.wait_ready()
        job_id = unique_id("chroot")
        assert daemon.upload(ENV_JOB, job_id=job_id).status_code == 201, daemon.log()
        job = daemon.wait_done(job_id)
        assert job["Status"] == "SUCCESS", daemon.log()
        env = output_files(job)["env.txt"].decode()
        # a named time zone with no /usr/share/zoneinfo: the binary carries tzdata
        assert not (root / "usr" / "share" / "zoneinfo").exists()
        body = {
            "name": "nightly",
            "schedule": "0 2 * * *",
            "timezone": "Europe/Amsterdam",
            "input": b64(make_zip({"run.sh": "true"})),
        }
        made = daemon.api("POST", "/api/schedules", json=body)
        assert made.status_code == 201, made.text
        assert made.json()["next_fire"][11:16] in ("00:00", "01:00"), made.json()  # 02:00 CE(S)T
    finally:
        daemon.stop()
    leaked = [line for line in env.splitlines() if line.startswith(("_PYI_", "STATICX_"))]
    assert not leaked, f"the bundle's variables reached run.sh: {leaked}"
    library_path = [line for line in env.splitlines() if line.startswith("LD_LIBRARY_PATH=")]
    assert not library_path, f"run.sh would load the bundle's libraries: {library_path}"


@frozen_only
def test_a_plain_pyinstaller_binary_fails_in_the_same_root(tmp_path: Path) -> None:
    """Proves the chroot test can fail: without staticx there is no loader to run with."""
    if not PLAIN.is_file():
        pytest.fail(f"{PLAIN} is missing: scripts/build-binary.sh builds it on the way")
    root = _busybox_root(tmp_path)
    shutil.copy2(PLAIN, root / "jobd-plain")
    done = subprocess.run(_in_chroot(root, "/jobd-plain", "--version"), capture_output=True)
    assert done.returncode != 0
    assert b"No such file or directory" in done.stderr, done.stderr


def test_sigterm_stops_the_binary_cleanly_and_the_job_runs_again(
    jobd, tmp_path: Path, shared: Path
) -> None:
    """SIGTERM: out within seconds, the run's processes gone, nothing left in TMPDIR (the binary
    unpacks its bundle there),
    and the interrupted job recorded so that the next start runs it again."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    marker = shared / "first-run"
    pids = shared / "pids"
    body = f"""
        umask 000  # the second run is another job user
        echo $$ >> {pids}
        if [ ! -e {marker} ]; then touch {marker}; sleep 1000; fi
        echo second run
    """
    daemon = jobd.start("--workers", "1", env={"TMPDIR": str(tmpdir)})
    job_id = unique_id("sigterm")
    assert daemon.upload({"run.sh": script(body)}, job_id=job_id).status_code == 201
    wait_until(lambda: marker.exists(), 20, "the job to start")

    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(STOP_TIMEOUT) == 0, daemon.log()
    assert all(proc_gone(pid) for pid in read_pids(pids)), "the job's run.sh outlived jobd"
    assert list(tmpdir.iterdir()) == [], "the binary left its unpacked bundle in TMPDIR"

    again = jobd.start("--workers", "1", data_dir=daemon.data_dir, env={"TMPDIR": str(tmpdir)})
    job = again.wait_done(job_id)
    assert job["Status"] == "SUCCESS", again.log()
    assert output_files(job)["jobd.stdout"] == b"second run\n"
    assert requests.get(again.url + "/health", timeout=5).status_code == 200


def _tree(pid: int) -> list[int]:
    """`pid` and every process below it, found by their parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


@frozen_only
def test_hard_kills_leave_nothing_in_tmpdir_and_spare_a_live_run(jobd, tmp_path: Path) -> None:
    """Five SIGKILLs of the whole process tree (an OOM kill, `docker kill`), then a start:
    TMPDIR holds the live runs' unpack directories only; a second live jobd keeps its own."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {"TMPDIR": str(tmpdir)}
    live = jobd.start(env=env)
    kept = set(tmpdir.iterdir())
    assert len(kept) == 2, f"expected a staticx and a PyInstaller folder: {sorted(kept)}"
    for _ in range(5):
        daemon = jobd.start(env=env)
        assert daemon.proc is not None
        _kill_at_once(_tree(daemon.proc.pid))
        daemon.proc.wait(STOP_TIMEOUT)
    left = set(tmpdir.iterdir()) - kept
    assert len(left) == 2, f"each start removes what the kill before it left: {sorted(left)}"

    last = jobd.start(env=env)
    assert requests.get(live.url + "/health", timeout=5).status_code == 200
    remaining = set(tmpdir.iterdir())
    assert kept <= remaining, "a live jobd's unpacked bundle was removed"
    assert len(remaining - kept) == 2, f"dead runs' folders remain: {sorted(remaining - kept)}"
    assert requests.get(last.url + "/health", timeout=5).status_code == 200


def _kill_at_once(pids: list[int]) -> None:
    """SIGKILL to every process at one instant, as the OOM killer or `docker kill` deals it:
    all are stopped first, so none sees another die and tidies up after it (killed one by
    one, the staticx layer may see its child exit and remove its own folder first)."""
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            os.kill(pid, sig)


def _mounted(path: Path, options: str) -> Path:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs with {options} (the test needs root)")
    return path


@frozen_only
@pytest.mark.parametrize("problem", ["noexec", "read-only", "missing", "full"])
def test_a_tmpdir_that_cannot_run_jobd_is_one_line_naming_it(tmp_path, problem):
    """The binary unpacks itself into TMPDIR: where that cannot work, the first line says
    so and what to do, not a loader's error."""
    assert EXE
    if problem == "missing":
        tmpdir = tmp_path / "nowhere"
    else:
        options = {"noexec": "noexec", "read-only": "ro", "full": "size=4m"}[problem]
        tmpdir = _mounted(tmp_path / problem, options)
    try:
        done = subprocess.run(
            [EXE, "--version"],
            env=base_env({"TMPDIR": str(tmpdir)}),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"jobd: TMPDIR ({tmpdir})"), lines[0]
        assert "point TMPDIR at a writable directory that allows exec" in lines[0]
        if problem == "full":
            assert list(tmpdir.iterdir()) == [], "the launcher left its copy behind"
    finally:
        if problem != "missing":
            subprocess.run(["umount", str(tmpdir)], check=False)
