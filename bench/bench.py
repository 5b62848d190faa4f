#!/usr/bin/env python3
"""Benchmark jobd on this machine: latency, throughput and memory.

    python bench/bench.py [--jobs 200] [--payload-mb 500] [--skip-payload]

The script starts its own daemon on a free loopback port with a fresh data directory
(``python -m jobd serve``, or ``$JOBD_EXE serve`` when JOBD_EXE names a frozen binary),
measures, stops the daemon by the PID it started and removes every file it made.
It prints a report with PASS/FAIL per target of issue 2 and exits 0 whatever the
figures are; it exits 1 only when the daemon failed (did not start, died, or answered
something other than what the API promises).

Measured:
- latency: submit -> result of a trivial run.sh, one job at a time over one keep-alive
  connection, using the long-poll ``GET /api/get/<id>?wait=60``; beside it the physical
  floor, running the same run.sh directly with subprocess, in the same run;
- throughput: 200 trivial jobs submitted at once from a thread pool, then collected;
- memory: the daemon's peak RSS while an incompressible payload (500 MB by default) is
  uploaded and its result downloaded; the client streams both ways from/to disk too.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

# Targets from issue 2, for a 2-core machine.
LATENCY_TARGET_MS = 10.0
FLOOR_RATIO_TARGET = 4.0
THROUGHPUT_TARGET = 150.0
RSS_TARGET_MB = 80.0

MB = 1_000_000  # sizes follow jobd's convention: MB is 10**6 bytes
TRIVIAL_RUN_SH = b"#!/bin/sh\necho hello\n"
PAYLOAD_RUN_SH = b"#!/bin/sh\nls -l data.bin\n"
WARMUP_JOBS = 10
WAIT_S = 60  # the long-poll maximum jobd accepts
RESULT_DEADLINE_S = 600.0  # a job that is not finished by then means the daemon is stuck
STOP_GRACE_S = 10.0
RSS_INTERVAL_S = 0.02
# A multiple of 3, so base64 of consecutive chunks concatenates without inner padding.
B64_CHUNK = 3 * 1024 * 1024
IO_CHUNK = 1024 * 1024
HEAD_BYTES = 64 * 1024
BODY_PREFIX = b'{"input": "'
BODY_SUFFIX = b'"}'


class BenchError(Exception):
    """The daemon misbehaved, so the figures mean nothing and the run fails."""


# --------------------------------------------------------------------------- daemon


@dataclass
class Daemon:
    """One jobd process started by this script, known by its PID."""

    argv: list[str]
    base_url: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    health: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, cwd: Path, timeout_s: float) -> None:
        # JOBD_* variables of the caller (a token, say) must not change what is measured.
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBD_")}
        with open(self.log_path, "wb") as log:
            try:
                self.proc = subprocess.Popen(
                    self.argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
            except OSError as exc:
                raise BenchError(f"cannot start {self.argv[0]}: {exc}") from None
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        with new_session() as session:
            while True:
                self.check_alive("before answering /health")
                try:
                    r = session.get(f"{self.base_url}/health", timeout=2)
                    if r.status_code == 200:
                        self.health = r.json()
                        return
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"/health did not answer 200 within {timeout_s:g} s\n{self.log_tail()}"
                    )
                time.sleep(delay)  # polling a port that is not open yet: capped backoff
                delay = min(delay * 2, 0.2)

    def check_alive(self, when: str) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            raise BenchError(f"daemon exited with code {code} {when}\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; only ever the PID we started."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.notes.append(f"daemon ignored SIGTERM for {STOP_GRACE_S:g} s; killed")
            return
        if code not in (0, -signal.SIGTERM):
            self.notes.append(f"daemon exited with code {code} on SIGTERM")

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no daemon log)"
        return "daemon log (last lines):\n  " + "\n  ".join(text[-lines:])


def jobd_command() -> list[str]:
    exe = os.environ.get("JOBD_EXE")
    return [exe] if exe else [sys.executable, "-m", "jobd"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_daemon(
    workdir: Path, name: str, extra: list[str], timeout_s: float, notes: list[str]
) -> Iterator[Daemon]:
    """A fresh daemon with its own data dir under workdir, stopped on the way out."""
    home = workdir / name
    home.mkdir()
    port = free_port()
    argv = [
        *jobd_command(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(home / "data"),
        "--workers",
        str(os.cpu_count() or 1),
        *extra,
    ]
    daemon = Daemon(argv=argv, base_url=f"http://127.0.0.1:{port}", log_path=home / "daemon.log")
    try:
        progress(f"starting: {shlex.join(argv)}")
        daemon.start(home, timeout_s)
        yield daemon
        daemon.check_alive("during the benchmark")
    finally:
        daemon.stop()
        notes.extend(f"{name}: {note}" for note in daemon.notes)


# --------------------------------------------------------------------------- HTTP


def new_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only: never route through a configured proxy
    return session


def expect(r: requests.Response, status: int, what: str) -> None:
    if r.status_code != status:
        raise BenchError(f"{what}: expected {status}, got {r.status_code}: {r.text[:500]}")


def submit(
    session: requests.Session, base: str, body: bytes | JsonBase64Body, timeout_s: float = 60
) -> str:
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    r = session.post(f"{base}/api/upload", data=body, headers=headers, timeout=(5, timeout_s))
    expect(r, 201, "POST /api/upload")
    return str(r.json()["ID"])


def get_result(session: requests.Session, base: str, job_id: str) -> dict[str, object]:
    """Long-poll until the job is finished; a 206 only means the wait ended first."""
    deadline = time.monotonic() + RESULT_DEADLINE_S
    while True:
        r = session.get(f"{base}/api/get/{job_id}?wait={WAIT_S}", timeout=(5, WAIT_S + 30))
        if r.status_code == 200:
            return r.json()
        expect(r, 206, f"GET /api/get/{job_id}")
        if time.monotonic() > deadline:
            raise BenchError(f"job {job_id} not finished after {RESULT_DEADLINE_S:g} s")


def check_success(job: dict[str, object]) -> None:
    if job.get("Status") != "SUCCESS":
        raise BenchError(
            f"job {job.get('ID')} ended {job.get('Status')}: {job.get('Message')!r} "
            f"(ExitCode {job.get('ExitCode')})"
        )


# --------------------------------------------------------------------------- zips


def exec_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16  # a regular file, rwxr-xr-x
    return info


def trivial_body() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(exec_entry("run.sh"), TRIVIAL_RUN_SH)
    return BODY_PREFIX + base64.b64encode(buf.getvalue()) + BODY_SUFFIX


def check_trivial_output(job: dict[str, object]) -> None:
    """Once, untimed: the result zip really holds what run.sh printed."""
    output = base64.b64decode(str(job.get("Output", "")).replace("\\/", "/"))
    with zipfile.ZipFile(io.BytesIO(output)) as zf:
        names = set(zf.namelist())
        stdout = zf.read("jobd.stdout") if "jobd.stdout" in names else None
    if stdout != b"hello\n":
        raise BenchError(f"result zip of job {job.get('ID')}: jobd.stdout is {stdout!r}")


def build_payload(path: Path, size: int) -> None:
    """A stored (uncompressed) zip: run.sh plus `size` random bytes written in chunks."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(exec_entry("run.sh"), PAYLOAD_RUN_SH)
        info = zipfile.ZipInfo("data.bin", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16
        with zf.open(info, "w", force_zip64=size > 2**31) as out:
            remaining = size
            while remaining:
                n = min(IO_CHUNK, remaining)
                out.write(os.urandom(n))
                remaining -= n


class JsonBase64Body:
    """``{"input": "<base64 of a file>"}`` produced in chunks, never whole in memory.

    Having a length makes requests send a Content-Length instead of chunked encoding,
    as a client uploading a file from disk would.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size

    def __len__(self) -> int:
        return len(BODY_PREFIX) + 4 * math.ceil(self.size / 3) + len(BODY_SUFFIX)

    def __iter__(self) -> Iterator[bytes]:
        yield BODY_PREFIX
        with open(self.path, "rb") as f:
            while chunk := f.read(B64_CHUNK):
                yield base64.b64encode(chunk)
        yield BODY_SUFFIX


def decode_output(response_path: Path, zip_path: Path) -> str:
    """Stream-decode the ``Output`` of a saved job object to a zip; return its Status.

    The other fields are short, so both the Status and the start of Output lie within
    the first or last few kB of the file, whatever the key order.
    """
    size = response_path.stat().st_size
    with open(response_path, "rb") as f:
        head = f.read(HEAD_BYTES)
        f.seek(max(0, size - HEAD_BYTES))
        tail = f.read()
        status = re.search(rb'"Status"\s*:\s*"(\w+)"', head) or re.search(
            rb'"Status"\s*:\s*"(\w+)"', tail
        )
        start = re.search(rb'"Output"\s*:\s*"', head)
        if status is None or start is None:
            raise BenchError(f"result is not a job object: {head[:200]!r}")
        f.seek(start.end())
        with open(zip_path, "wb") as out:
            copy_base64_string(f, out)
    return status.group(1).decode()


def copy_base64_string(src: io.BufferedReader, out: io.BufferedWriter) -> None:
    """Decode a JSON string of base64 up to its closing quote, chunk by chunk."""
    pending = b""
    while True:
        chunk = src.read(IO_CHUNK)
        if not chunk:
            raise BenchError("result JSON ends inside Output")
        end = chunk.find(b'"')
        text = pending + (chunk if end < 0 else chunk[:end]).replace(b"\\", b"")
        if end >= 0:
            out.write(base64.b64decode(text + b"=" * (-len(text) % 4)))
            return
        cut = len(text) - len(text) % 4
        out.write(base64.b64decode(text[:cut]))
        pending = text[cut:]


def check_payload_result(zip_path: Path, size: int) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        listing = zf.read("jobd.stdout") if "jobd.stdout" in infos else b""
    data = infos.get("data.bin")
    if data is None or data.file_size != size or b"data.bin" not in listing:
        found = data.file_size if data else None
        raise BenchError(f"result zip: data.bin is {found} bytes (sent {size}); ls: {listing!r}")


# --------------------------------------------------------------------------- measurements


@dataclass
class Context:
    """What the parts of a run share besides the figures."""

    notes: list[str] = field(default_factory=list)
    health: dict[str, object] = field(default_factory=dict)
    create_us: float = 0.0


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    upload_times: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    burst_jobs: int = 0
    burst_submit_s: float = 0.0
    burst_total_s: float = 0.0
    payload_bytes: int = 0
    body_bytes: int = 0
    upload_s: float = 0.0
    first_byte_s: float = 0.0
    download_s: float = 0.0
    download_bytes: int = 0
    peak_rss_kb: int = 0
    peak_tree_kb: int = 0
    hwm_kb: int = 0
    rss_samples: int = 0


class LeanClient:
    """One keep-alive connection through http.client: the latency loop measures the daemon,
    not the ~0.3 ms per request that requests' own machinery adds on the client side."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        self._conn = http.client.HTTPConnection(host, int(port), timeout=WAIT_S + 30)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self._conn.request(method, path, body, headers)
        response = self._conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self._conn.close()


def timed_job(client: LeanClient, body: bytes) -> tuple[float, float, dict]:
    """(submit -> result, submit -> 201) in seconds, and the finished job."""
    t0 = time.perf_counter()
    status, answer = client.call("POST", "/api/upload", body)
    if status != 201:
        raise BenchError(f"POST /api/upload: expected 201, got {status}: {answer[:500]!r}")
    job_id = json.loads(answer)["ID"]
    t1 = time.perf_counter()
    while True:
        status, answer = client.call("GET", f"/api/get/{job_id}?wait={WAIT_S}")
        if status == 200:
            break
        if status != 206:
            raise BenchError(f"GET /api/get/{job_id}: expected 200, got {status}")
    elapsed = time.perf_counter() - t0
    job = json.loads(answer)
    check_success(job)
    return elapsed, t1 - t0, job


def measure_latency(base: str, body: bytes, count: int, res: Results) -> None:
    client = LeanClient(base)
    try:
        for i in range(WARMUP_JOBS):
            *_, job = timed_job(client, body)
            if i == 0:
                check_trivial_output(job)
        timings = [timed_job(client, body)[:2] for _ in range(count)]
    finally:
        client.close()
    res.latencies = [total for total, _ in timings]
    res.upload_times = [upload for _, upload in timings]


def measure_floor(workdir: Path, count: int) -> list[float]:
    """The same run.sh started directly: what no daemon can go below."""
    job_dir = workdir / "floor"
    job_dir.mkdir()
    run_sh = job_dir / "run.sh"
    run_sh.write_bytes(TRIVIAL_RUN_SH)
    run_sh.chmod(0o755)
    times: list[float] = []
    for i in range(WARMUP_JOBS + count):
        with open(job_dir / "out", "wb") as out, open(job_dir / "err", "wb") as err:
            t0 = time.perf_counter()
            subprocess.run(["./run.sh"], cwd=job_dir, stdout=out, stderr=err, check=True)
            elapsed = time.perf_counter() - t0
        if i >= WARMUP_JOBS:
            times.append(elapsed)
    return times


def measure_burst(base: str, body: bytes, count: int, threads: int, res: Results) -> None:
    """Submit `count` jobs at once from a pool, then collect them all with long-polls."""
    local = threading.local()
    sessions: list[requests.Session] = []

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = new_session()
            sessions.append(local.session)
        return local.session

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            t0 = time.perf_counter()
            ids = list(pool.map(lambda _: submit(session(), base, body), range(count)))
            res.burst_submit_s = time.perf_counter() - t0
            jobs = list(pool.map(lambda job_id: get_result(session(), base, job_id), ids))
            res.burst_total_s = time.perf_counter() - t0
    finally:
        for s in sessions:
            s.close()
    for job in jobs:
        check_success(job)
    res.burst_jobs = count


class RssSampler:
    """Samples VmRSS of the daemon (and of its whole process tree) every interval."""

    def __init__(self, pid: int, interval_s: float = RSS_INTERVAL_S) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_kb = 0
        self.peak_tree_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval_s):
                return

    def sample(self) -> None:
        own = proc_status_kb(self.pid, "VmRSS")
        # A frozen binary's bootloader may be the PID we started, with Python as its child.
        tree = own + sum(proc_status_kb(p, "VmRSS") for p in descendants(self.pid))
        self.peak_kb = max(self.peak_kb, own)
        self.peak_tree_kb = max(self.peak_tree_kb, tree)
        self.samples += 1


def proc_status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass  # the process ended between listing and reading
    return 0


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


def download_result(
    session: requests.Session, base: str, job_id: str, path: Path
) -> tuple[float, int]:
    """Long-poll the result and stream it to disk; return (time to first byte, size)."""
    deadline = time.monotonic() + RESULT_DEADLINE_S
    t0 = time.perf_counter()
    while True:
        url = f"{base}/api/get/{job_id}?wait={WAIT_S}"
        with session.get(url, stream=True, timeout=(5, WAIT_S + 300)) as r:
            if r.status_code == 200:
                first_byte = time.perf_counter() - t0
                size = 0
                with open(path, "wb") as out:
                    for chunk in r.iter_content(IO_CHUNK):
                        out.write(chunk)
                        size += len(chunk)
                return first_byte, size
            expect(r, 206, f"GET /api/get/{job_id}")
        if time.monotonic() > deadline:
            raise BenchError(f"job {job_id} not finished after {RESULT_DEADLINE_S:g} s")


def measure_memory(daemon: Daemon, workdir: Path, res: Results) -> None:
    zip_path = workdir / "payload.zip"
    response_path = workdir / "result.json"
    body = JsonBase64Body(zip_path)
    res.body_bytes = len(body)
    with new_session() as session, RssSampler(daemon.pid) as sampler:
        t0 = time.perf_counter()
        job_id = submit(session, daemon.base_url, body, timeout_s=600)
        res.upload_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        res.first_byte_s, res.download_bytes = download_result(
            session, daemon.base_url, job_id, response_path
        )
        res.download_s = time.perf_counter() - t1
    res.hwm_kb = proc_status_kb(daemon.pid, "VmHWM")
    res.peak_rss_kb, res.peak_tree_kb = sampler.peak_kb, sampler.peak_tree_kb
    res.rss_samples = sampler.samples
    zip_path.unlink()  # disk, not memory, is what the next check needs
    progress("checking the result (untimed)")
    result_zip = workdir / "result.zip"
    status = decode_output(response_path, result_zip)
    response_path.unlink()
    if status != "SUCCESS":
        raise BenchError(f"payload job {job_id} ended {status}")
    check_payload_result(result_zip, res.payload_bytes)
    result_zip.unlink()


# --------------------------------------------------------------------------- report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency_rows(res: Results) -> list[tuple[str, str, str, str]]:
    if not res.latencies:
        return []
    median = statistics.median(res.latencies)
    floor = statistics.median(res.floor)
    ratio = median / floor
    n = len(res.latencies)
    return [
        (
            f"submit->result latency, median ({n} jobs)",
            ms(median),
            "< 10 ms",
            verdict(median * 1000 < LATENCY_TARGET_MS),
        ),
        ("submit->result latency, p95", ms(percentile(res.latencies, 95)), "", ""),
        ("  of which submit->201, median", ms(statistics.median(res.upload_times)), "", ""),
        ("run.sh via subprocess (floor), median", ms(floor), "", ""),
        ("latency / floor", f"{ratio:.2f}x", "<= 4x", verdict(ratio <= FLOOR_RATIO_TARGET)),
    ]


def burst_rows(res: Results) -> list[tuple[str, str, str, str]]:
    if not res.burst_jobs:
        return []
    rate = res.burst_jobs / res.burst_total_s
    return [
        (
            f"throughput, {res.burst_jobs} jobs at once",
            f"{rate:.0f} jobs/s",
            ">= 150 jobs/s",
            verdict(rate >= THROUGHPUT_TARGET),
        ),
        (
            "  all submitted after / all done after",
            f"{res.burst_submit_s:.2f} s / {res.burst_total_s:.2f} s",
            "",
            "",
        ),
    ]


def memory_rows(res: Results) -> list[tuple[str, str, str, str]]:
    if not res.rss_samples:
        return []
    size_mb = res.payload_bytes / MB
    body_mb = res.body_bytes / MB

    def mb(kb: int) -> str:
        return f"{kb * 1024 / MB:.1f} MB"

    def rss_ok(kb: int) -> str:
        return verdict(kb * 1024 / MB < RSS_TARGET_MB)

    return [
        (
            f"daemon peak RSS, {size_mb:.0f} MB round trip (VmRSS every 20 ms)",
            mb(res.peak_rss_kb),
            "< 80 MB",
            rss_ok(res.peak_rss_kb),
        ),
        ("daemon peak RSS (VmHWM at the end)", mb(res.hwm_kb), "< 80 MB", rss_ok(res.hwm_kb)),
        ("  daemon process tree, peak sum of VmRSS", mb(res.peak_tree_kb), "", ""),
        (
            f"upload ({body_mb:.0f} MB of JSON)",
            f"{res.upload_s:.2f} s ({body_mb / res.upload_s:.0f} MB/s)",
            "",
            "",
        ),
        (
            f"result ({res.download_bytes / MB:.0f} MB): first byte / complete",
            f"{res.first_byte_s:.2f} s / {res.download_s:.2f} s",
            "",
            "",
        ),
    ]


def render(res: Results, header: list[str], notes: list[str]) -> str:
    rows = [("measure", "value", "target", "result")]
    rows += latency_rows(res) + burst_rows(res) + memory_rows(res)
    if len(rows) == 1:
        return "\n".join([*header, "", "nothing was measured", *notes])
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [*header, ""]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    client_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB
    lines += ["", f"bench client peak RSS: {client_mb:.1f} MB", *notes]
    return "\n".join(lines)


def filesystem_of(path: Path) -> str:
    """The type of the mount holding path: job directories cost far less on tmpfs."""
    best, kind = "", "?"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, kind = point, fields[2]
    return f"{kind} ({best})"


def create_cost_us(folder: Path, count: int = 200) -> float:
    """Median cost of creating a small file there: a job makes several, and on some disks
    (a VM's ext4 mounted with `discard`, after heavy deletes) it swings from 20 us to 1 ms."""
    probe = Path(tempfile.mkdtemp(dir=folder))
    try:
        times = []
        for i in range(count):
            t0 = time.perf_counter()
            fd = os.open(probe / f"f{i}", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
            os.close(fd)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e6
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def machine_header(ctx: Context, workdir: Path) -> list[str]:
    health = ctx.health
    return [
        "jobd benchmark",
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}",
        f"files:   {workdir.parent} on {filesystem_of(workdir)},"
        f" file create {ctx.create_us:.0f} us (median)",
        f"python:  {platform.python_implementation()} {platform.python_version()}",
        f"jobd:    {health.get('version', '?')} ({shlex.join(jobd_command())}), "
        f"--workers {os.cpu_count()}",
    ]


# --------------------------------------------------------------------------- main


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_jobs_part(args: argparse.Namespace, workdir: Path, res: Results, ctx: Context) -> None:
    body = trivial_body()
    with running_daemon(workdir, "jobs", [], args.start_timeout, ctx.notes) as daemon:
        ctx.health = daemon.health
        # Writes still queued from an earlier run (a 500 MB payload) slow every file create
        # for tens of seconds; flush them so each run measures jobd, not that backlog.
        os.sync()
        progress(f"latency: {WARMUP_JOBS} warm-up + {args.jobs} sequential jobs")
        measure_latency(daemon.base_url, body, args.jobs, res)
        progress(f"floor: {args.jobs} direct runs of run.sh")
        res.floor = measure_floor(workdir, args.jobs)
        progress(f"throughput: {args.burst} jobs at once, {args.threads} threads")
        measure_burst(daemon.base_url, body, args.burst, args.threads, res)


def run_payload_part(args: argparse.Namespace, workdir: Path, res: Results, ctx: Context) -> None:
    res.payload_bytes = int(args.payload_mb * MB)
    progress(f"memory: writing a {args.payload_mb:g} MB incompressible payload")
    build_payload(workdir / "payload.zip", res.payload_bytes)
    body_len = len(JsonBase64Body(workdir / "payload.zip"))
    limits = ["--max-upload", size_flag(body_len, 2 * 10**9)]
    limits += ["--max-unpacked", size_flag(res.payload_bytes, 4 * 10**9)]
    with running_daemon(workdir, "payload", limits, args.start_timeout, ctx.notes) as daemon:
        ctx.health = ctx.health or daemon.health
        progress("memory: uploading and downloading, sampling the daemon's RSS")
        measure_memory(daemon, workdir, res)


def size_flag(needed: int, default: int) -> str:
    """The issue's limits (2GB / 4GB), raised when a larger payload is asked for."""
    return f"{default // 10**9}GB" if needed < default else str(needed + 10 * MB)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=200,
        help="sequential jobs timed for latency and floor (default 200)",
    )
    p.add_argument(
        "--burst",
        type=positive_int,
        default=200,
        help="jobs submitted at once for throughput (default 200)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=16,
        help="client threads for the throughput burst (default 16)",
    )
    p.add_argument(
        "--payload-mb",
        type=float,
        default=500.0,
        help="size of the incompressible payload in MB of 10**6 bytes (default 500)",
    )
    p.add_argument("--skip-payload", action="store_true", help="skip the memory measurement")
    p.add_argument(
        "--start-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for /health after starting the daemon (default 30)",
    )
    p.add_argument(
        "--tmp-dir",
        default=None,
        help="where to put the temporary directory (default: the system's)",
    )
    args = p.parse_args(argv)
    if args.tmp_dir is not None:
        problem = tmp_dir_problem(args.tmp_dir)
        if problem:  # one line, not argparse's usage: the rest of the command line was fine
            p.exit(2, f"bench.py: error: --tmp-dir {args.tmp_dir} {problem}\n")
    return args


def tmp_dir_problem(path: str) -> str | None:
    """What keeps `path` from holding the bench's temporary directory, for a person."""
    if not os.path.exists(path):
        return (
            "does not exist; create it first (a fast disk, e.g. a folder in /dev/shm),"
            " or leave --tmp-dir out for the system's"
        )
    if not os.path.isdir(path):
        return "is not a directory; give a directory, or leave --tmp-dir out for the system's"
    if not os.access(path, os.W_OK | os.X_OK):
        return "is not writable by this user; give a directory you can write to"
    return None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = Results()
    ctx = Context()
    workdir = Path(tempfile.mkdtemp(prefix="jobd-bench-", dir=args.tmp_dir))
    ctx.create_us = create_cost_us(workdir)
    parts: list[Callable[[argparse.Namespace, Path, Results, Context], None]] = [run_jobs_part]
    if not args.skip_payload:
        parts.append(run_payload_part)
    failure = None
    try:
        for part in parts:
            part(args, workdir, res, ctx)
    except (BenchError, requests.RequestException) as exc:
        failure = f"the daemon failed: {exc}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(render(res, machine_header(ctx, workdir), ctx.notes))
    if failure:
        print(f"\n{failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
