"""A real jobd on a free loopback port, driven over HTTP with requests; zip and process helpers.

The daemon is started exactly as a user would start it (``python -m jobd serve ...``, or the frozen
binary named by ``JOBD_EXE``); nothing here imports jobd. Waits poll a condition against a
monotonic deadline; nothing sleeps a fixed time to synchronise.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import pty
import re
import select
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
JOB_TIMEOUT = 30.0
HTTP_TIMEOUT = 90.0

TERMINAL = frozenset({"SUCCESS", "FAILED", "CANCELLED"})
PENDING = frozenset({"QUEUED", "RUNNING"})
GO_KEYS = frozenset({"ID", "Status", "Message", "Output", "LastUpdated", "SlurmID", "Slurml"})
JOB_KEYS = GO_KEYS | {"ExitCode", "CreatedAt", "StartedAt", "FinishedAt"}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# Variables that would change how the daemon under test is configured; tests set them explicitly.
_CONFIG_ENV = re.compile(r"^(JOBD_.*|PORT|DATAPATH)$")

#: A folder outside every data dir that jobs may write to (gates, shared files): what an
#: operator shares with --job-writable, open to every job user. Made at the session's start.
OUTSIDE = Path("/nonexistent")

T = TypeVar("T")
FileSpec = bytes | str | tuple[bytes | str, int]


# --------------------------------------------------------------------------- waiting


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_id(prefix: str = "job") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------- zips and scripts


def make_zip(files: Mapping[str, FileSpec] | Iterable[tuple[str, FileSpec]]) -> bytes:
    """A deflated zip from {name: data} or (name, data) pairs; data may be (data, mode).

    A mode without file-type bits is a regular file; names ending in "/" are directories.
    Pairs allow duplicate names.
    """
    items = files.items() if isinstance(files, Mapping) else files
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, spec in items:
            data, mode = spec if isinstance(spec, tuple) else (spec, None)
            if isinstance(data, str):
                data = data.encode()
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3  # Unix, so external_attr carries st_mode
            info.compress_type = zipfile.ZIP_DEFLATED
            if name.endswith("/"):
                mode = stat.S_IFDIR | 0o755 if mode is None else mode
                info.external_attr = (mode << 16) | 0x10
            else:
                mode = 0o644 if mode is None else mode
                if stat.S_IFMT(mode) == 0:
                    mode |= stat.S_IFREG
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def script(body: str, shebang: str | None = "#!/bin/sh") -> bytes:
    """run.sh text from an indented block; `shebang=None` leaves the first line to the body."""
    text = textwrap.dedent(body).strip() + "\n"
    return ((shebang + "\n" if shebang else "") + text).encode()


def q(path: Path | str) -> str:
    """A path quoted for a shell script."""
    return shlex.quote(str(path))


def output_zip(job: dict[str, Any]) -> zipfile.ZipFile:
    assert job["Output"], f"job {job['ID']} has no Output: {job}"
    return zipfile.ZipFile(io.BytesIO(base64.b64decode(job["Output"], validate=True)))


def output_files(job: dict[str, Any]) -> dict[str, bytes]:
    """The regular files of a job's result zip, by name (directory entries left out)."""
    archive = output_zip(job)
    return {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}


# --------------------------------------------------------------------------- assertions


def assert_status(resp: requests.Response, *codes: int) -> None:
    assert resp.status_code in codes, (
        f"{resp.request.method} {resp.request.path_url}: expected {' or '.join(map(str, codes))},"
        f" got {resp.status_code}: {resp.text[:800]}"
    )


def assert_sentence(text: Any, what: str = "message") -> None:
    assert isinstance(text, str), f"{what} is not a string: {text!r}"
    assert len(text.strip().split()) >= 2, f"{what} is not a sentence for a person: {text!r}"


def assert_error(resp: requests.Response, *codes: int) -> dict[str, Any]:
    """The one JSON error shape: {"error": code-name, "message": sentence, "status": N}."""
    assert_status(resp, *codes)
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {resp.text[:500]!r}") from None
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"].strip(), body
    assert body.get("status") == resp.status_code, body
    assert_sentence(body.get("message"))
    return body


def assert_job_shape(job: dict[str, Any]) -> None:
    missing = JOB_KEYS - job.keys()
    assert not missing, f"job object lacks {sorted(missing)}: {job}"
    assert not {"Input", "Path"} & job.keys(), f"job object leaks Input/Path: {sorted(job)}"
    assert job["Status"] in TERMINAL | PENDING, job
    assert isinstance(job["ID"], str) and job["ID"], job
    assert isinstance(job["Message"], str), job
    assert isinstance(job["Output"], str), job
    assert isinstance(job["Slurml"], bool), job
    assert isinstance(job["SlurmID"], int), job
    if not job["Slurml"]:
        assert job["SlurmID"] == 0, job  # as the Go jobd sends for local jobs
    assert RFC3339.match(job["LastUpdated"] or ""), f"LastUpdated is not RFC 3339: {job}"
    assert RFC3339.match(job["CreatedAt"] or ""), f"CreatedAt is not RFC 3339: {job}"
    for key in ("StartedAt", "FinishedAt"):
        assert job[key] is None or RFC3339.match(job[key]), f"{key} is not RFC 3339: {job}"
    if job["Status"] in PENDING:
        assert job["Output"] == "", job
        assert job["FinishedAt"] is None, job


# --------------------------------------------------------------------------- processes


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from `state` on (the name may contain spaces), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rpartition(")")[2].split()


def proc_gone(pid: int) -> bool:
    """True when the process no longer runs: absent, or a zombie waiting to be reaped."""
    fields = proc_stat(pid)
    return fields is None or fields[0] in ("Z", "X")


def read_pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


class ProcessGuard:
    """Remembers PIDs that jobs report, and kills any still alive when the test ends.

    A safety net only: the assertions are on the daemon having ended them. A PID is killed
    only while it still names the process seen at watch time (same start time).
    """

    def __init__(self) -> None:
        self._watched: list[tuple[int, str]] = []

    def watch(self, *pids: int) -> None:
        for pid in pids:
            fields = proc_stat(pid)
            if fields is not None:
                self._watched.append((pid, fields[19]))  # field 22: start time

    def kill_survivors(self) -> None:
        for pid, started in self._watched:
            fields = proc_stat(pid)
            if fields is not None and fields[19] == started and fields[0] not in "ZX":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


class Gate:
    """A file a job waits for: lets a test hold a job RUNNING and release it when it chooses."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def shell(self) -> str:
        return f"while [ ! -e {q(self.path)} ]; do sleep 0.02; done"

    def open(self) -> None:
        self.path.touch()


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    events = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda event: (event[0], event[1]),  # an end before a start at the same instant
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def timed_job(shared: Path, name: str, body: str = "sleep 0.3") -> bytes:
    """A run.sh that appends its start and end times (date +%s.%N) to files in `shared`."""
    start, end = q(shared / f"{name}.start"), q(shared / f"{name}.end")
    return script(f"date +%s.%N >> {start}\n{body}\ndate +%s.%N >> {end}")


def read_times(shared: Path, name: str) -> tuple[list[float], list[float]]:
    def floats(suffix: str) -> list[float]:
        path = shared / f"{name}.{suffix}"
        return [float(x) for x in path.read_text().split()] if path.exists() else []

    return floats("start"), floats("end")


# --------------------------------------------------------------------------- the daemon


#: A Python that job users can run: the test runner's own may live under /root (0700).
JOB_PYTHON = next(
    (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)),
    sys.executable,
)


def jobd_command(*args: str) -> list[str]:
    exe = os.environ.get("JOBD_EXE")
    return [exe, *args] if exe else [sys.executable, "-m", "jobd", *args]


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test runner's environment without jobd settings, able to import the checkout."""
    env = {k: v for k, v in os.environ.items() if not _CONFIG_ENV.match(k)}
    env["JOBD_JOB_WRITABLE"] = str(OUTSIDE)
    if not os.environ.get("JOBD_EXE"):
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
    env.update(extra or {})
    return env


_LIVE: list[Daemon] = []


def on_a_terminal(
    argv: list[str],
    env: Mapping[str, str],
    cwd: Path,
    replies: Iterable[tuple[str, Callable[[int], None]]] = (),
) -> tuple[int, str]:
    """Run with stdin, stdout and stderr on a pseudo-terminal; its exit and all it drew.
    Each reply (text, action) runs, in turn, once its text is on the terminal; the action is
    given the terminal's side to type on."""
    main, side = pty.openpty()
    proc = subprocess.Popen(argv, stdin=side, stdout=side, stderr=side, env=env, cwd=cwd)
    os.close(side)
    drawn, pending = bytearray(), list(replies)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    block = os.read(main, 65536)
                except OSError:  # EIO: the other side is closed
                    break
                if not block:
                    break
                drawn += block
                while pending and pending[0][0].encode() in drawn:
                    pending.pop(0)[1](main)
            elif proc.poll() is not None:
                break
        return proc.wait(30), drawn.decode(errors="replace")
    finally:
        os.close(main)
        proc.kill()


class Daemon:
    """One jobd process and a small HTTP client for it."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        workdir: Path,
        port: int,
        data_dir: Path,
        wrapper: list[str] | None = None,
    ) -> None:
        self.argv = argv
        #: a command put before jobd's, which must exec it (so its PID is jobd's)
        self.wrapper = wrapper or []
        self.env = env
        self.workdir = workdir
        self.port = port
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / f"jobd-{port}-{uuid.uuid4().hex[:6]}.log"
        self.token: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle

    def start(self) -> Daemon:
        with open(self.log_path, "wb") as log:
            # stdin is a pipe held open: a job that inherited it instead of /dev/null would hang.
            self.proc = subprocess.Popen(
                [*self.wrapper, *jobd_command(*self.argv)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
            )
        _LIVE.append(self)
        return self

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> Daemon:
        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"jobd exited with {self.proc.returncode} before answering /health:\n"
                    + self.log()
                )
            try:
                return requests.get(self.url + "/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, timeout, f"jobd on {self.url} to answer /health\n{self.log()}")
        return self

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL: always only the PID this object started."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        if proc.stdin:
            proc.stdin.close()
        if self in _LIVE:
            _LIVE.remove(self)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)
        if self.proc.stdin:
            self.proc.stdin.close()
        if self in _LIVE:
            _LIVE.remove(self)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    # -- HTTP

    def api(self, method: str, path: str, *, token: str | None = "", **kwargs: Any):
        """A request with the daemon's token unless `token` is given (None: no header)."""
        headers = dict(kwargs.pop("headers", {}) or {})
        token = self.token if token == "" else token
        if token is not None:
            headers.setdefault("Authorization", f"Bearer {token}")
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return requests.request(method, self.url + path, headers=headers, **kwargs)

    def upload(
        self,
        files: Mapping[str, FileSpec] | Iterable[tuple[str, FileSpec]] | None = None,
        *,
        job_id: str | None = None,
        **fields: Any,
    ) -> requests.Response:
        body: dict[str, Any] = {}
        if job_id is not None:
            body["id"] = job_id
        if files is not None:
            body["input"] = b64(make_zip(files))
        body.update(fields)
        return self.api("POST", "/api/upload", json=body)

    def post_raw(self, data: bytes | Iterable[bytes], **kwargs: Any) -> requests.Response:
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return self.api("POST", "/api/upload", data=data, headers=headers, **kwargs)

    def submit(self, files: Mapping[str, FileSpec], **kwargs: Any) -> dict[str, Any]:
        resp = self.upload(files, **kwargs)
        assert_status(resp, 201)
        job = resp.json()
        assert_job_shape(job)
        return job

    def get(self, job_id: str, wait: float | str | None = None, **kwargs: Any):
        params = {} if wait is None else {"wait": str(wait)}
        return self.api("GET", f"/api/get/{job_id}", params=params, **kwargs)

    def cancel(self, job_id: str, **kwargs: Any) -> requests.Response:
        return self.api("POST", f"/api/cancel/{job_id}", **kwargs)

    def job(self, job_id: str) -> dict[str, Any]:
        resp = self.get(job_id)
        assert_status(resp, 200, 202, 206)
        return resp.json()

    def wait_done(self, job_id: str, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
        """Long-poll until the job is finished; returns the 200 job object."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"job {job_id} not finished after {timeout}s: {self.job(job_id)}"
                )
            resp = self.get(job_id, wait=round(min(remaining, 10.0), 3))
            assert_status(resp, 200, 202, 206)
            if resp.status_code == 200:
                job = resp.json()
                assert_job_shape(job)
                assert job["Status"] in TERMINAL, job
                return job

    def wait_status(self, job_id: str, status: str, timeout: float = JOB_TIMEOUT):
        return wait_until(
            lambda: (job := self.job(job_id))["Status"] == status and job,
            timeout,
            f"job {job_id} to be {status}",
        )

    # -- disk

    def job_dirs(self) -> set[str]:
        jobs = self.data_dir / "jobs"
        return set(os.listdir(jobs)) if jobs.is_dir() else set()

    def staging(self) -> list[str]:
        tmp = self.data_dir / "tmp"
        return [str(p.relative_to(tmp)) for p in tmp.rglob("*")] if tmp.is_dir() else []

    def assert_nothing_written(self, jobs_before: set[str], job_id: str | None = None) -> None:
        """A rejected upload left no job folder, no staged file, and no record of its ID."""
        assert self.job_dirs() == jobs_before, f"job folders changed: {self.job_dirs()}"
        assert self.staging() == [], f"staging area not empty: {self.staging()}"
        if job_id is not None:
            assert_error(self.get(job_id), 404)


class DaemonFactory:
    """Starts daemons under one directory and stops every one of them at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.chmod(0o711)  # job users pass on the way to their folders, as above /data
        self.daemons: list[Daemon] = []

    def start(
        self,
        *flags: str,
        env: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
        port: int | None = None,
        argv: list[str] | None = None,
        wait_ready: bool = True,
        wrapper: list[str] | None = None,
    ) -> Daemon:
        """`jobd serve` on loopback with `flags`; `argv` replaces the whole argument list;
        `wrapper` runs before jobd and execs it (e.g. to start it as another user)."""
        port = port or free_port()
        if data_dir is None:
            data_dir = self.root / f"data-{len(self.daemons)}"
        if argv is None:
            argv = ["serve", "--host", "127.0.0.1", "--port", str(port)]
            argv += ["--data-dir", str(data_dir), *flags]
        daemon = Daemon(argv, base_env(env), self.root, port, data_dir, wrapper)
        daemon.token = _token_from(argv, daemon.env)
        self.daemons.append(daemon)
        daemon.start()
        if wait_ready:
            daemon.wait_ready()
        return daemon

    def stop_all(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.stop()


def _token_from(argv: list[str], env: Mapping[str, str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--token" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--token="):
            return arg.split("=", 1)[1]
    return env.get("JOBD_TOKEN") or None


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    """Flags of the module's shared daemon; a module overrides this fixture to change them."""
    return ("--workers", "4", "--kill-grace", "1s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, server_flags: tuple[str, ...]):
    """One daemon shared by the tests of a module."""
    factory = DaemonFactory(tmp_path_factory.mktemp("jobd"))
    try:
        yield factory.start(*server_flags)
    finally:
        factory.stop_all()


# --------------------------------------------------------------------------- Slurm

SLURM_CLUSTER = REPO_ROOT / "scripts" / "slurm-test-cluster.sh"
#: The ID prefix of the job the session starts early (its Slurm name: jobd-<ID>).
TIME_LIMIT_PREFIX = "timelimit-"


@pytest.fixture(scope="session")
def slurm_conf() -> Iterator[str]:
    if os.environ.get("SLURM_CONF"):
        yield os.environ["SLURM_CONF"]
        return
    # not under pytest's tmp dirs: munged needs every parent of its socket to be traversable
    folder = Path(tempfile.mkdtemp(prefix="jobd-slurm-"))
    folder.chmod(0o755)
    up = subprocess.run([str(SLURM_CLUSTER), "up", str(folder)], capture_output=True, text=True)
    if up.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"no Slurm cluster could be started here: {up.stderr.strip()[-500:]}")
    try:
        yield str(folder / "slurm.conf")
    finally:
        subprocess.run([str(SLURM_CLUSTER), "down", str(folder)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def early_slurm_time_limit(tmp_path_factory: pytest.TempPathFactory, slurm_conf: str):
    """A Slurm job that runs into its one-minute time limit (Slurm counts them in minutes, and
    looks every 30 s), submitted through a daemon of its own as the session begins: the wait
    overlaps the other tests instead of adding 60-90 s to the run."""
    if os.environ.get("JOBD_EXE"):
        pytest.skip("the source pass checks Slurm's time limit")
    factory = DaemonFactory(tmp_path_factory.mktemp("early-slurm"))
    try:
        daemon = factory.start("--kill-grace", "1s", env={"SLURM_CONF": slurm_conf})
        job_id = unique_id(TIME_LIMIT_PREFIX.rstrip("-"))
        run_sh = script("#SBATCH --time=1\nsleep 600")
        daemon.submit({"run.sh": run_sh}, job_id=job_id, slurml=True)
        yield daemon, job_id
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def early_starts(request: pytest.FixtureRequest, outside: Path) -> None:
    """Fixtures named early_* that a collected test uses start with the first test (see
    pytest_collection_modifyitems), so that a wait no one can hurry runs beside the other
    tests. One that cannot start (no Slurm here) skips its own test when that asks for it."""
    for name in _early(request.session.items):
        with contextlib.suppress(pytest.skip.Exception):
            request.getfixturevalue(name)


def _early(items: list[pytest.Item]) -> list[str]:
    used = {
        n for item in items for n in getattr(item, "fixturenames", ()) if n.startswith("early_")
    }
    return sorted(used - {"early_starts"})


@pytest.fixture
def jobd(tmp_path: Path):
    """A factory for daemons with their own flags, data dirs, restarts or kill -9."""
    factory = DaemonFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def gates(tmp_path: Path):
    """Make gates with `gates()`; every gate is opened when the test ends, so no job hangs."""
    made: list[Gate] = []

    def make() -> Gate:
        gate = Gate(OUTSIDE / f"gate-{uuid.uuid4().hex[:8]}")
        made.append(gate)
        return gate

    try:
        yield make
    finally:
        for gate in made:
            gate.open()


@pytest.fixture(scope="session", autouse=True)
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUTSIDE, made; and the session's temporary folders let job users pass (not list), as
    the folders above a data dir such as /data do."""
    global OUTSIDE
    base = tmp_path_factory.getbasetemp()
    for folder in (base.parent, base):
        folder.chmod(0o711)
    OUTSIDE = base / "outside"
    OUTSIDE.mkdir()
    OUTSIDE.chmod(0o1777)
    return OUTSIDE


@pytest.fixture
def shared() -> Path:
    """An absolute directory that jobs write to, outside any job directory."""
    path = OUTSIDE / f"shared-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    path.chmod(0o1777)
    return path


#: The size of `small_disk`: a real tmpfs, for what a full disk does.
DISK_SIZE = "40m"


@pytest.fixture
def small_disk(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.fixture
def strays():
    guard = ProcessGuard()
    try:
        yield guard
    finally:
        guard.kill_survivors()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The early_* fixtures start with the first test. Against the binary, skip what only
    checks jobd's own logic (the same code as the source pass ran): the suite stays well
    under ten minutes with both passes."""
    if items and _early(items):
        first = getattr(items[0], "fixturenames", None)
        if first is not None:
            first.insert(0, "early_starts")
    if not os.environ.get("JOBD_EXE"):
        return
    skip = pytest.mark.skip(
        reason="jobd's own logic, the same in the binary: the source pass checks it"
    )
    for item in items:
        if item.get_closest_marker("source_only"):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for daemon in _LIVE:
            report.sections.append((f"jobd log {daemon.url}", daemon.log()[-6000:]))
