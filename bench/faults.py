"""Fault scenarios, measured: a full data disk, uploads larger than the free space, hard
kills of the frozen binary, and a shutdown with jobs that ignore SIGTERM. Prints one line
per figure.

    python bench/faults.py [--checkout DIR] [--exe dist/jobd]

Runs `python -m jobd` from DIR (default: this checkout), or the binary given with --exe for
the TMPDIR figure. Needs root (it mounts a 40 MB tmpfs) and loopback only.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, dict]:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, {"raw": text[:200].decode(errors="replace")}


def job_zip(files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100755 << 16
            archive.writestr(info, data)
    return base64.b64encode(buffer.getvalue()).decode()


class Daemon:
    def __init__(self, command: list[str], data: Path, env: dict[str, str], *flags: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [*command, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.log = open(data.parent / f"jobd-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*argv, "--data-dir", str(data), *flags],
            stdout=self.log,
            stderr=self.log,
            env=env,
            cwd=data.parent,  # not this checkout: `python -m` looks in its cwd first
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if call(self.url + "/health", timeout=1)[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("jobd did not start")

    def submit(self, job_id: str, files: dict[str, bytes]) -> tuple[int, dict]:
        body = json.dumps({"id": job_id, "input": job_zip(files)}).encode()
        return call(self.url + "/api/upload", body)

    def status(self, job_id: str) -> str:
        return call(f"{self.url}/api/get/{job_id}")[1].get("Status", "?")

    def wait_end(self, job_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        status = self.status(job_id)
        while status in ("QUEUED", "RUNNING") and time.monotonic() < deadline:
            time.sleep(0.1)
            status = self.status(job_id)
        return status

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def full_disk(command: list[str], env: dict[str, str], work: Path, flags: list[str]) -> None:
    disk = work / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(disk)], check=True)
    try:
        daemon = Daemon(command, disk / "data", env, "--workers", "2", *flags)
        fill = b"#!/bin/sh\nhead -c 100000000 /dev/zero > f\necho done\n"
        print("fill job upload:", daemon.submit("fill", {"run.sh": fill})[0])
        started = time.monotonic()
        status = daemon.wait_end("fill", 30)
        print(
            f"fill job after {time.monotonic() - started:.1f} s (30 s at most):",
            status,
            "-",
            call(f"{daemon.url}/api/get/fill")[1].get("Message"),
        )
        big = os.urandom(60_000_000)
        code, body = daemon.submit("big", {"run.sh": b"true", "big.bin": big})
        print("upload over the free space:", code, body.get("message", body))
        for path in (disk / "data" / "jobs" / "fill" / "work").glob("f"):
            path.unlink()
        gate = work / "gate"
        waiting = f"#!/bin/sh\nwhile [ ! -e {gate} ]; do sleep 0.05; done\n".encode()
        for name in ("w1", "w2"):
            daemon.submit(name, {"run.sh": waiting})
        time.sleep(2)
        running = sum(daemon.status(name) == "RUNNING" for name in ("w1", "w2"))
        print("workers still working after the fill job (of 2):", running)
        gate.touch()
        health = call(daemon.url + "/health")[1]
        print(
            "health after space was freed:", health.get("status"), "running:", health.get("running")
        )
        cancel = call(f"{daemon.url}/api/cancel/fill", b"")
        print("cancel of the fill job:", cancel[0])
        daemon.stop()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def hard_kills(exe: str, work: Path) -> None:
    tmpdir = work / "tmpdir"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir))
    for round_ in range(5):
        daemon = Daemon([exe], work / f"kill-{round_}", env)
        tree = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(daemon.proc.pid)], capture_output=True, text=True
        )
        pids = [daemon.proc.pid]
        while tree.stdout.split():
            children = [int(p) for p in tree.stdout.split()]
            pids += children
            tree = subprocess.run(
                ["ps", "-o", "pid=", "--ppid", ",".join(map(str, children))],
                capture_output=True,
                text=True,
            )
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        daemon.proc.wait()
    before = sum(f.stat().st_size for f in tmpdir.rglob("*") if f.is_file())
    print(
        f"TMPDIR after 5 hard kills: {before / 1e6:.1f} MB in {len(list(tmpdir.iterdir()))} folders"
    )
    daemon = Daemon([exe], work / "last", env)
    after = sum(f.stat().st_size for f in tmpdir.rglob("*") if f.is_file())
    print(
        f"TMPDIR after the next start (its own bundle included): {after / 1e6:.1f} MB"
        f" in {len(list(tmpdir.iterdir()))} folders"
    )
    daemon.stop()


def shutdown(command: list[str], env: dict[str, str], work: Path) -> None:
    """Seconds from SIGTERM to exit with 3 and 6 jobs that ignore SIGTERM (--kill-grace 5s)."""
    stubborn = b"#!/bin/sh\ntrap '' TERM\ntouch started.$$\nsleep 1000\n"
    for count in (3, 6):
        data = work / f"shutdown-{count}"
        daemon = Daemon(command, data, env, "--workers", str(count), "--kill-grace", "5s")
        for n in range(count):
            daemon.submit(f"stubborn-{n}", {"run.sh": stubborn})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(daemon.status(f"stubborn-{n}") == "RUNNING" for n in range(count)):
                break
            time.sleep(0.05)
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.proc.wait(120)
        print(f"shutdown with {count} stubborn jobs: {time.monotonic() - started:.1f} s")
        daemon.log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, default=ROOT)
    parser.add_argument("--exe", help="a frozen jobd, for the TMPDIR figure")
    parser.add_argument("--flags", default="--min-free 0", help="extra serve flags")
    args = parser.parse_args()
    if args.exe:
        args.exe = str(Path(args.exe).resolve())  # daemons start in their own folders
    env = dict(os.environ, PYTHONPATH=str(args.checkout))
    command = [sys.executable, "-m", "jobd"]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        full_disk(command, env, work, args.flags.split())
        shutdown([args.exe] if args.exe else command, env, work)
        if args.exe:
            hard_kills(args.exe, work)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
