"""What a job can reach (`--isolation auto`, the default): a hostile run.sh, started while
another job holds secrets in its folder, its TMPDIR and its environment, tries everything the
contract forbids — another job's files and environment, the store, jobd's environment (the
token), signals to jobd and the other job, writes in the data dir and the image — and all of
it is refused with EACCES or EPERM, while what the contract allows in the same job works.

Checked with jobd as root (a job user each, Landlock, cgroups) and as uid 1000 (Landlock
alone), both with JOBD_TOKEN in jobd's environment; and `--isolation off` keeps the old
behaviour, which also shows that the probes see an access when there is one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from attacker import (
    ALLOWED,
    FORBIDDEN,
    LEFT_IN_SHARED,
    READ_ONLY,
    WRITE_TARGETS,
    outcomes,
    run_sh,
)
from confinement import USER, daemon_processes, user_data_dir, user_wrapper
from conftest import (
    Daemon,
    DaemonFactory,
    Gate,
    assert_status,
    output_files,
    q,
    script,
    unique_id,
    wait_until,
)

JOB_USERS = range(60000, 61000)  # --job-uids' default, 60000-60999
FLAGS = ("--workers", "4", "--kill-grace", "1s")


@dataclass
class Secrets:
    token: str
    env: str
    file: str
    tmp: str

    def all(self) -> dict[str, bytes]:
        return {name: value.encode() for name, value in vars(self).items()}


@pytest.fixture
def secrets() -> Secrets:
    return Secrets(*(f"{what}-{uuid.uuid4().hex}" for what in ("token", "env", "file", "tmp")))


def start(jobd: DaemonFactory, tmp_path: Path, how: str, token: str) -> Daemon:
    """jobd with JOBD_TOKEN in its environment: as root (`root`, `off`: --isolation off) or
    as uid 1000 (`user`). Its data dir's parents let others pass, as /data's do in an image,
    so a job's refusals come from jobd's confinement, not from a closed folder above it."""
    tmp_path.chmod(0o711)
    env = {"JOBD_TOKEN": token}
    if how == "user":
        wrapper = user_wrapper(tmp_path / "stage")
        return jobd.start(*FLAGS, env=env, data_dir=user_data_dir(tmp_path), wrapper=wrapper)
    flags = (*FLAGS, "--isolation", "off") if how == "off" else FLAGS
    return jobd.start(*flags, env=env, data_dir=tmp_path / "data")


def isolation(daemon: Daemon) -> dict:
    resp = daemon.api("GET", "/health")
    assert_status(resp, 200)
    return resp.json()["isolation"]


@dataclass
class Victim:
    id: str
    pid: int
    dir: Path
    tmp: Path
    uid: int


def hold_victim(daemon: Daemon, shared: Path, gate: Gate, secrets: Secrets) -> Victim:
    """A job with a secret in its folder, in its TMPDIR and in its environment, held RUNNING
    until `gate` opens; at the end it writes back what it then finds of its secrets."""
    run_sh = script(
        f"""
        cat tmp-secret.txt > "$TMPDIR/secret.txt" && rm tmp-secret.txt
        info={q(shared)}/"victim-$JOBD_JOB_ID"
        {{ echo $$; pwd -P; echo "$TMPDIR"; id -u; }} > "$info.tmp" && mv "$info.tmp" "$info"
        {gate.shell}
        cat secret.txt > secret-at-end.txt
        printf %s "$SECRET" > env-at-end.txt
        cat "$TMPDIR/secret.txt" > tmp-at-end.txt
        """
    )
    files = {"run.sh": (run_sh, 0o755), "secret.txt": secrets.file, "tmp-secret.txt": secrets.tmp}
    job_id = unique_id("victim")
    daemon.submit(files, job_id=job_id, env={"SECRET": secrets.env})
    info = shared / f"victim-{job_id}"
    wait_until(info.exists, 30, f"victim {job_id} to start")
    pid, workdir, tmpdir, uid = info.read_text().split("\n")[:4]
    return Victim(job_id, int(pid), Path(workdir), Path(tmpdir), int(uid))


def write_targets(daemon: Daemon, victim: Victim, attacker_id: str) -> dict[str, Path]:
    names = {
        "victim_dir": victim.dir,
        "victim_tmp": victim.tmp,
        "data_dir": daemon.data_dir,
        "id": attacker_id,
    }
    return {probe: Path(path.format(**names)) for probe, path in WRITE_TARGETS.items()}


@dataclass
class Attack:
    id: str  # the attacker's job
    outcomes: dict[str, str]
    files: dict[str, bytes]
    victim: Victim
    victim_files: dict[str, bytes]
    written: dict[str, Path]  # where each write probe would have left a file


def attack(
    daemon: Daemon, shared: Path, gate: Gate, secrets: Secrets, probes: dict[str, str]
) -> Attack:
    """Run a job to its end and hold a victim, run the attacker with `probes` against them,
    then let the victim end."""
    assert daemon.proc is not None
    data_dir = daemon.data_dir
    finished = daemon.submit({"run.sh": script("true"), "secret.txt": secrets.file})["ID"]
    assert daemon.wait_done(finished)["Status"] == "SUCCESS"
    finished_dir = data_dir / "jobs" / finished
    victim = hold_victim(daemon, shared, gate, secrets)
    # what the probes aim at is really there (a refusal is not a wrong path)
    assert victim.dir == data_dir / "jobs" / victim.id / "work", victim
    for there in (
        finished_dir / "work" / "secret.txt",
        finished_dir / "result.zip",
        victim.dir / "secret.txt",
        victim.dir.parent / "input.zip",
        victim.tmp / "secret.txt",
        data_dir / "jobd.db",
    ):
        assert there.is_file(), f"{there} is not there for the attacker to aim at"
    jobd_pids = daemon_processes(daemon.proc.pid, secrets.token)
    for pid in jobd_pids:
        assert secrets.token.encode() in Path(f"/proc/{pid}/environ").read_bytes(), pid
    assert secrets.env.encode() in Path(f"/proc/{victim.pid}/environ").read_bytes()

    attacker_id = unique_id("attacker")
    written = write_targets(daemon, victim, attacker_id)
    aims = {
        "DATA_DIR": str(data_dir),
        "VICTIM_DIR": str(victim.dir),
        "VICTIM_TMP": str(victim.tmp),
        "VICTIM_PID": str(victim.pid),
        "FINISHED_DIR": str(finished_dir),
        "DAEMON_PIDS": " ".join(map(str, jobd_pids)),
        "SHARED": str(shared),
    }
    try:
        daemon.submit({"run.sh": (run_sh(probes), 0o755)}, job_id=attacker_id, env=aims)
        job = daemon.wait_done(attacker_id)
        assert job["Status"] == "SUCCESS", job
        files = output_files(job)
        # checked while the victim still runs: its TMPDIR goes when it ends
        got_in = sorted(probe for probe, path in written.items() if path.exists())
        assert not got_in, f"the attacker left files: {[str(written[p]) for p in got_in]}"
    finally:
        gate.open()
        left = [shared / name.format(id=attacker_id) for name in LEFT_IN_SHARED]
        for path in [*written.values(), *left]:
            with contextlib.suppress(OSError):
                path.unlink()
    victim_job = daemon.wait_done(victim.id)
    assert victim_job["Status"] == "SUCCESS", victim_job
    return Attack(
        attacker_id,
        outcomes(files["probes.txt"].decode()),
        files,
        victim,
        output_files(victim_job),
        written,
    )


def said_on_stderr(result: Attack, expected: dict[str, str]) -> str:
    """What each probe with an unexpected outcome said on stderr."""
    return "\n".join(
        f"{name}: {result.files.get(f'errors/{name}', b'(no stderr)').decode(errors='replace')}"
        for name, outcome in expected.items()
        if result.outcomes.get(name) != outcome
    )


def assert_victim_intact(result: Attack, secrets: Secrets) -> None:
    files = result.victim_files
    assert files["secret-at-end.txt"] == secrets.file.encode()
    assert files["env-at-end.txt"] == secrets.env.encode()
    assert files["tmp-at-end.txt"] == secrets.tmp.encode()
    intruders = [name for name in files if "intruder" in name]
    assert not intruders, f"the attacker wrote in the victim's folder: {intruders}"


@pytest.mark.parametrize("how", ["root", "user"], ids=["as-root", f"as-uid-{USER}"])
def test_a_hostile_job_reaches_nothing_outside_its_folder(
    jobd, tmp_path, shared, gates, secrets, how
):
    if how == "root" and os.geteuid() != 0:
        pytest.skip("jobd as root needs the tests to run as root")
    daemon = start(jobd, tmp_path, how, secrets.token)
    said = isolation(daemon)
    if how == "user" and (said["landlock"] or 0) < 6:
        pytest.skip(f"as uid {USER}, isolation needs Landlock ABI 6 (Linux 6.12): {said}")
    assert said["mode"] == "auto" and said["in_force"] is True, said
    if how == "root":
        assert said["job_users"] == "60000-60999", said
        assert said["cgroups"] in ("v1", "v2"), said
    else:
        assert said["job_users"] is None and said["cgroups"] is None, said
    probes = {**FORBIDDEN, **ALLOWED}
    if not said["landlock"]:  # a job user alone may list / and write in /tmp (1777)
        del probes["list_root"], probes["write_tmp"]

    result = attack(daemon, shared, gates(), secrets, probes)

    expected = {name: "denied" if name in FORBIDDEN else "allowed" for name in probes}
    assert result.outcomes == expected, said_on_stderr(result, expected)
    files = result.files
    for name, data in files.items():
        for what, secret in secrets.all().items():
            assert secret not in data, f"the {what} secret reached the attacker's {name}"
    assert b"JOBD_TOKEN" not in files["own-env.txt"]
    assert files["own.txt"] == b"mine\n"

    # its TMPDIR: private, empty at the start, under the data dir's scratch/, gone at the end
    tmpdir = Path(files["tmpdir.txt"].decode())
    assert tmpdir.parent == result.victim.tmp.parent == daemon.data_dir / "scratch", tmpdir
    assert tmpdir != result.victim.tmp
    assert files["tmpdir-at-start.txt"] == b""
    assert not tmpdir.exists(), f"the attacker's TMPDIR {tmpdir} outlived its job"

    uid = int(files["uid.txt"])
    if how == "root":  # a job user each, handed back when the job ends
        assert uid in JOB_USERS and result.victim.uid in JOB_USERS, (uid, result.victim)
        assert uid != result.victim.uid
        assert files["home.txt"] == files["tmpdir.txt"], "as root, HOME is the TMPDIR"
    else:
        assert uid == result.victim.uid == USER

    assert_victim_intact(result, secrets)
    assert daemon.proc is not None and daemon.proc.poll() is None, "jobd ended"
    assert isolation(daemon) == said


def test_with_isolation_off_a_job_reaches_what_jobd_reaches(jobd, tmp_path, shared, gates, secrets):
    """The old behaviour, for images whose jobs must reach outside their folder: jobs run as
    jobd's user, unconfined. (Only the probes that look are run here.)"""
    if os.geteuid() != 0:
        pytest.skip("the probes' outcomes without isolation are those of root")
    daemon = start(jobd, tmp_path, "off", secrets.token)
    said = isolation(daemon)
    assert said["mode"] == "off" and said["in_force"] is False, said

    result = attack(daemon, shared, gates(), secrets, {n: FORBIDDEN[n] for n in READ_ONLY})

    expected = dict.fromkeys(READ_ONLY, "allowed")
    assert result.outcomes == expected, said_on_stderr(result, expected)
    assert result.files["loot/read_store"].startswith(b"SQLite format 3\0")
    assert result.files["loot/read_victim_file"] == secrets.file.encode()
    assert int(result.files["uid.txt"]) == 0
    assert_victim_intact(result, secrets)


def test_a_folder_that_cannot_be_handed_over_fails_its_job_in_one_line(jobd, tmp_path, gates):
    """A job folder jobd may not give to a job user (here immutable, as a read-only or
    root-squashed mount would be): that job ends FAILED saying so; the next one runs."""
    if os.geteuid() != 0 or not shutil.which("chattr"):
        pytest.skip("needs root and chattr")
    tmp_path.chmod(0o711)
    daemon = jobd.start("--workers", "1", data_dir=tmp_path / "data")
    gate = gates()
    holder = daemon.submit({"run.sh": script(gate.shell)})["ID"]
    daemon.wait_status(holder, "RUNNING")
    stuck = daemon.submit({"run.sh": script("echo ran > ran.txt")})["ID"]  # queued behind it
    folder = daemon.data_dir / "jobs" / stuck
    locked = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if locked.returncode != 0:
        pytest.skip(f"this file system has no immutable flag: {locked.stderr.strip()}")
    try:
        gate.open()
        job = daemon.wait_done(stuck)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert job["Status"] == "FAILED", job
    assert "jobd could not confine run.sh: Operation not permitted (" in job["Message"], job
    assert "\n" not in job["Message"] and "Traceback" not in daemon.log()
    assert daemon.wait_done(daemon.submit({"run.sh": script("true")})["ID"])["Status"] == "SUCCESS"
