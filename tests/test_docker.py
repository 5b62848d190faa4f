"""The container path with a real Docker engine: the shipped image built from the project's
Dockerfile, jobd copied into research images with Dockerfile.multistage (an old-glibc Debian
without Python, and a busybox-only one without any libc), and run as users run them: stop,
kill, restart, health check, another user, a read-only root, a noexec /tmp.

scripts/test.sh starts the engine (scripts/docker-test-engine.sh, as root) and sets
DOCKER_HOST; the tests need the frozen binary (JOBD_EXE), whose image files
scripts/build-binary.sh leaves in dist/rootfs-<arch>/.
"""

from __future__ import annotations

import base64
import io
import json
import os
import platform
import subprocess
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import REPO_ROOT, base_env, free_port, script, unique_id, wait_until

EXE = os.environ.get("JOBD_EXE")
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
TAG = uuid.uuid4().hex[:8]
JOBD_IMAGE = "jobd-test/jobd"
RESEARCH = {
    "bullseye": f"jobd-test/research-bullseye:{TAG}",
    "busybox": f"jobd-test/research-busybox:{TAG}",
}


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    # the classic builder: BuildKit's client (buildx) is not part of Debian's docker.io
    env = base_env({"DOCKER_BUILDKIT": "0"})
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done


@pytest.fixture(scope="module")
def images() -> Iterator[dict[str, str]]:
    if not EXE:
        pytest.skip("needs the frozen binary: JOBD_EXE=dist/jobd (scripts/test.sh builds it)")
    if not os.environ.get("DOCKER_HOST") or docker("version", check=False).returncode != 0:
        pytest.skip("no Docker engine: scripts/test.sh starts one when run as root")
    if not (REPO_ROOT / "dist" / f"rootfs-{ARCH}" / "jobd").is_file():
        pytest.fail(f"dist/rootfs-{ARCH}/ is missing: run scripts/build-binary.sh")
    docker(
        "build", "-t", f"{JOBD_IMAGE}:{TAG}", "--build-arg", f"TARGETARCH={ARCH}", str(REPO_ROOT)
    )
    for base, image in RESEARCH.items():
        docker(
            "build",
            "-f",
            str(REPO_ROOT / "Dockerfile.multistage"),
            "--build-arg",
            f"JOBD_IMAGE={JOBD_IMAGE}",
            "--build-arg",
            f"JOBD_VERSION={TAG}",
            "--build-arg",
            f"BASE_IMAGE=jobd-test/{base}",
            "-t",
            image,
            str(REPO_ROOT),
        )
    try:
        yield {"jobd": f"{JOBD_IMAGE}:{TAG}", **RESEARCH}
    finally:
        docker("rmi", "-f", f"{JOBD_IMAGE}:{TAG}", *RESEARCH.values(), check=False)


class Container:
    """One container on the host's network, on a port of its own."""

    def __init__(self, image: str, *options: str, args: tuple[str, ...] = ()) -> None:
        self.name = f"jobd-test-{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        docker(
            "run", "-d", "--name", self.name, "--network", "host",
            "-e", f"JOBD_PORT={self.port}", *options, image, *args,
        )  # fmt: skip

    def healthy(self, timeout: float = 30) -> None:
        def answers() -> bool:
            try:
                return requests.get(self.url + "/health", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(answers, timeout, f"container {self.name} to answer /health:\n{self.logs()}")

    def logs(self) -> str:
        done = docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def state(self) -> dict:
        return json.loads(docker("inspect", self.name).stdout)[0]["State"]

    def exec(self, *argv: str) -> str:
        return docker("exec", self.name, *argv).stdout

    def submit(self, run_sh: str, job_id: str | None = None) -> str:
        job_id = job_id or unique_id("box")
        body = {"id": job_id, "input": _zip({"run.sh": script(run_sh)})}
        resp = requests.post(self.url + "/api/upload", json=body, timeout=30)
        assert resp.status_code == 201, resp.text
        return job_id

    def wait_done(self, job_id: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            resp = requests.get(f"{self.url}/api/get/{job_id}", params={"wait": 10}, timeout=30)
            if resp.status_code == 200:
                return resp.json()
        raise AssertionError(f"job {job_id} did not finish:\n{self.logs()}")

    def remove(self) -> None:
        docker("rm", "-f", self.name, check=False)


def _zip(files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100755 << 16
            archive.writestr(info, data)
    return base64.b64encode(buffer.getvalue()).decode()


def _output(job: dict) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(job["Output"])))
    return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    made: list[Container] = []
    try:
        yield made
    finally:
        for container in made:
            container.remove()


def test_the_scratch_image_serves_and_its_healthcheck_says_healthy(images, containers):
    box = Container(images["jobd"], "--health-interval", "1s")
    containers.append(box)
    box.healthy()
    wait_until(
        lambda: box.state().get("Health", {}).get("Status") == "healthy",
        30,
        "docker inspect to say healthy",
    )


@pytest.mark.parametrize("base", ["bullseye", "busybox"])
def test_a_job_round_trip_in_a_research_image(images, containers, tmp_path, base):
    box = Container(images[base])
    containers.append(box)
    box.healthy()
    probe = (
        "ldd --version | head -1 > libc.txt"
        if base == "bullseye"
        else "busybox | head -1 > libc.txt"
    )
    job = box.wait_done(box.submit(f"{probe}\necho done"))
    assert job["Status"] == "SUCCESS", job
    libc = _output(job)["libc.txt"].decode()
    assert ("2.31" in libc) if base == "bullseye" else ("BusyBox" in libc), libc

    # and with the client on the host, as a person would
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "run.sh").write_bytes(script("echo from-the-host > out.txt"))
    (folder / "run.sh").chmod(0o755)
    result = tmp_path / "result.zip"
    assert EXE
    code, said = run_to_files(
        [EXE, "submit", str(folder), "--wait", "--out", str(result)],
        base_env({"JOBD_URL": box.url}),
        tmp_path,
    )
    assert code == 0, said
    assert zipfile.ZipFile(result).read("out.txt") == b"from-the-host\n"


def run_to_files(argv: list[str], env: dict[str, str], folder: Path) -> tuple[int, str]:
    """Run a command with its output in files, not pipes (a pipe a stray descendant holds
    would keep a reader waiting after the command itself ended); a command that does not end
    in time fails with what each of its processes is waiting in, to tell where it hangs."""
    out_path = folder / "command.out"
    with open(out_path, "wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        code = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        tree = process_tree(process.pid)
        process.kill()
        process.wait()
        raise AssertionError(
            f"{argv} did not end in 120 s; output: {out_path.read_text()!r}\n{tree}"
        ) from None
    return code, out_path.read_text()


def process_tree(root: int) -> str:
    """Each process under `root`: its state, what it waits in, its kernel stack."""
    lines, todo = [], [root]
    while todo:
        pid = todo.pop()
        proc = Path(f"/proc/{pid}")
        found = {}
        for name in ("cmdline", "wchan", "stack", "status"):
            try:
                found[name] = (proc / name).read_bytes().decode(errors="replace")
            except OSError as exc:
                found[name] = f"({exc.strerror})"
        state = [ln for ln in found["status"].splitlines() if ln.startswith("State:")]
        lines.append(
            f"pid {pid} {found['cmdline'].replace(chr(0), ' ')} {state} wchan={found['wchan']}"
            f"\n{found['stack']}"
        )
        for task in proc.glob("task/*/children"):
            todo += [int(child) for child in task.read_text().split()]
    return "\n".join(lines)


def test_docker_stop_ends_jobs_at_once_and_start_runs_them_again(images, containers, tmp_path):
    data, shared = tmp_path / "data", tmp_path / "shared"
    data.mkdir()
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)
    box = Container(
        images["bullseye"],
        *("-v", f"{data}:/data/data", "-v", f"{shared}:/shared"),
        *("-e", "JOBD_JOB_WRITABLE=/shared"),
    )
    containers.append(box)
    box.healthy()
    # each run is a job user of its own: the second one appends to the first one's file
    job_id = box.submit("umask 000\necho run >> /shared/runs\nsleep 1000")
    wait_until(lambda: (shared / "runs").exists(), 30, "the job to start")

    began = time.monotonic()
    docker("stop", "-t", "10", box.name)
    took = time.monotonic() - began
    state = box.state()
    assert state["ExitCode"] == 0, state
    assert took < 8, f"docker stop took {took:.1f}s: jobd did not end its job on SIGTERM"

    docker("start", box.name)
    box.healthy()
    wait_until(lambda: (shared / "runs").read_text().count("run") == 2, 30, "the job to run again")
    assert requests.get(f"{box.url}/api/get/{job_id}", timeout=10).json()["Status"] == "RUNNING"


def test_five_docker_kills_leave_only_the_live_runs_folders_in_tmp(images, containers):
    box = Container(images["bullseye"])
    containers.append(box)
    box.healthy()
    for _ in range(5):
        docker("kill", box.name)
        docker("start", box.name)
        box.healthy()
    left = sorted(box.exec("ls", "-A", "/tmp").split())
    assert len(left) == 2, left
    assert {name.split("-")[0][:4] for name in left} == {"_MEI", "stat"}, left


def test_another_user_with_a_data_volume(images, containers, tmp_path):
    data = tmp_path / "userdata"
    data.mkdir()
    os.chown(data, 1000, 1000)
    box = Container(images["bullseye"], "--user", "1000:1000", "-v", f"{data}:/data")
    containers.append(box)
    box.healthy()
    job = box.wait_done(box.submit("id -u > uid.txt"))
    assert job["Status"] == "SUCCESS", job
    assert _output(job)["uid.txt"] == b"1000\n"
    assert (data / "data" / "jobd.db").stat().st_uid == 1000


def test_a_read_only_root_with_a_tmpfs_tmp(images, containers, tmp_path):
    data = tmp_path / "rodata"
    data.mkdir()
    box = Container(
        images["bullseye"], "--read-only", "--tmpfs", "/tmp:exec", "-v", f"{data}:/data"
    )
    containers.append(box)
    box.healthy()
    job = box.wait_done(box.submit("echo ok > ok.txt"))
    assert job["Status"] == "SUCCESS", job


def test_a_noexec_tmp_is_one_line_naming_tmpdir(images, containers):
    box = Container(images["bullseye"], "--tmpfs", "/tmp:noexec")
    containers.append(box)
    wait_until(lambda: not box.state()["Running"], 30, "the container to stop")
    assert box.state()["ExitCode"] == 1
    lines = [line for line in box.logs().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("jobd: TMPDIR (/tmp) is mounted noexec"), lines


#: run.sh of a job aimed at a running victim (its id in VICTIM); needles.txt holds the
#: victim's secret and jobd's token. One line per try: `name=ok` or `name=denied`.
ATTACKER = r"""
root=$(dirname "$(dirname "$(dirname "$PWD")")")
victim="$root/jobs/$VICTIM/work"
try() {
    name=$1; shift
    if "$@" >/dev/null 2>&1; then echo "$name=ok"; else echo "$name=denied"; fi
}
leaks() {  # another process's environment that we can read and that holds a needle
    for env in /proc/[0-9]*/environ; do
        grep -q -F -f needles.txt "$env" 2>/dev/null && return 0
    done
    return 1
}
outsiders() {  # a process outside this job's session that we may signal
    own=$(cut -d' ' -f6 /proc/$$/stat)
    for stat in /proc/[0-9]*/stat; do
        pid=${stat#/proc/}; pid=${pid%/stat}
        sid=$(cut -d' ' -f6 "$stat" 2>/dev/null) || continue
        [ "$sid" = "$own" ] && continue
        kill -0 "$pid" 2>/dev/null && return 0
    done
    return 1
}
{
try read_victim cat "$victim/secret.txt"
try list_victim ls "$victim"
try list_jobs ls "$root/jobs"
try read_store head -c 16 "$root/jobd.db"
try environ leaks
try signal_daemon kill -0 1
try signal_others outsiders
try write_data_dir touch "$root/planted"
try write_etc touch /etc/planted
try write_own sh -c 'echo mine > own.txt'
try tmpdir mktemp -p "$TMPDIR"
try read_image head -c 1 /etc/passwd
try list_image ls /usr/bin
} > attack.txt
"""

MAY = {"write_own", "tmpdir", "read_image", "list_image"}


@pytest.mark.parametrize("user", ["root", "1000"])
def test_a_hostile_job_reaches_nothing_outside_its_folder(images, containers, tmp_path, user):
    """The attacker in a research image, as root (a job user each, and Landlock) and as uid
    1000 (Landlock alone), with the operator's token in jobd's environment."""
    token, secret = uuid.uuid4().hex, uuid.uuid4().hex
    data = tmp_path / "data"
    data.mkdir()
    options = ["-e", f"JOBD_TOKEN={token}", "-v", f"{data}:/data/data"]
    if user != "root":
        os.chown(data, 1000, 1000)
        options = ["--user", "1000:1000", *options]
    box = Container(images["bullseye"], *options)
    containers.append(box)
    box.healthy()
    auth = {"Authorization": f"Bearer {token}"}
    health = requests.get(box.url + "/health", headers=auth, timeout=10).json()
    assert health["isolation"]["in_force"], health

    def upload(job_id: str, files: dict[str, bytes], env: dict[str, str]) -> None:
        body = {"id": job_id, "input": _zip(files), "env": env}
        resp = requests.post(box.url + "/api/upload", json=body, headers=auth, timeout=30)
        assert resp.status_code == 201, resp.text

    victim = unique_id("victim")
    hold = 'echo "$SECRET" > secret.txt\nwhile [ ! -e done ]; do sleep 0.1; done'
    upload(victim, {"run.sh": script(hold)}, {"SECRET": secret})
    wait_until(
        lambda: (
            requests.get(f"{box.url}/api/get/{victim}", headers=auth, timeout=10).json()["Status"]
            == "RUNNING"
        ),
        30,
        "the victim to run",
    )
    attacker = unique_id("attacker")
    needles = f"{secret}\n{token}\n".encode()
    upload(attacker, {"run.sh": script(ATTACKER), "needles.txt": needles}, {"VICTIM": victim})
    resp = requests.get(
        f"{box.url}/api/get/{attacker}", params={"wait": 60}, headers=auth, timeout=90
    )
    job = resp.json()
    assert job["Status"] == "SUCCESS", (job, box.logs())
    report = _output(job)["attack.txt"].decode()
    tries = dict(line.split("=") for line in report.split())
    assert len(tries) == 13, report
    wrong = {name: got for name, got in tries.items() if got != ("ok" if name in MAY else "denied")}
    assert not wrong, f"as {user}: {wrong}\n{box.logs()}"
    requests.post(f"{box.url}/api/cancel/{victim}", headers=auth, timeout=10)
    assert requests.get(box.url + "/health", headers=auth, timeout=10).status_code == 200
