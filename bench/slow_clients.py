"""Slow and stalled clients against /health: 64 clients that ask for a 40 MB result and
never read it, 80 log followers that hang up, 300 idle connections. Prints /health's
latency (40 requests, each on a new connection) and the daemon's memory.

    python bench/slow_clients.py [--exe dist/jobd]

Without --exe it runs `python -m jobd` from this checkout. Loopback only; the daemon and
every socket are this script's own.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

RESULT = 40_000_000
STALLED, FOLLOWERS, IDLE, PROBES = 64, 80, 300, 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(url: str, body: bytes | None = None, timeout: float = 60) -> dict:
    headers = {"Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=timeout) as r:
        return json.loads(r.read() or b"{}")


def memory(pid: int) -> str:
    """Of the daemon: the largest process of the tree (a frozen jobd's launchers are small)."""
    tree, stack = [], [pid]
    while stack:
        each = stack.pop()
        tree.append(each)
        for task in Path(f"/proc/{each}/task").iterdir():
            stack += [int(child) for child in (task / "children").read_text().split()]
    biggest = max(tree, key=lambda each: _status(each)["VmRSS"])
    fields = _status(biggest)
    return f"RSS {fields['VmRSS'] * 1024 / 1e6:.1f} MB, peak {fields['VmHWM'] * 1024 / 1e6:.1f} MB"


def _status(pid: int) -> dict[str, int]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def health_latencies(port: int) -> list[float]:
    """Seconds per /health, on a new connection each; a request that takes over 10 s counts
    as 10 s."""
    took = []
    for _ in range(PROBES):
        started = time.perf_counter()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10).read()
            took.append(time.perf_counter() - started)
        except OSError:
            took.append(10.0)
    return took


def report(what: str, took: list[float]) -> None:
    ms = sorted(t * 1000 for t in took)
    print(
        f"{what}: /health median {statistics.median(ms):.1f} ms,"
        f" p95 {ms[int(len(ms) * 0.95) - 1]:.1f} ms, max {ms[-1]:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exe", help="a frozen jobd; default: python -m jobd")
    args = parser.parse_args()
    command = [args.exe] if args.exe else [sys.executable, "-m", "jobd"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as scratch:
        log = open(Path(scratch) / "jobd.log", "wb")  # noqa: SIM115
        data = f"{scratch}/data"
        data = f"{scratch}/data"
        daemon = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data],
            stdout=log,
            stderr=log,
        )
        sockets: list[socket.socket] = []
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    request(base + "/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.05)
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                info = zipfile.ZipInfo("run.sh")
                info.external_attr = 0o100755 << 16
                archive.writestr(info, f"#!/bin/sh\nhead -c {RESULT} /dev/urandom > r.bin\n")
            zipped = base64.b64encode(buffer.getvalue()).decode()
            request(base + "/api/upload", json.dumps({"id": "big", "input": zipped}).encode())
            request(base + "/api/get/big?wait=60")  # done, and read once in full
            running = {"id": "follow-me", "input": base64.b64encode(_sleeper()).decode()}
            request(base + "/api/upload", json.dumps(running).encode())

            report("idle daemon", health_latencies(port))
            print("memory before:", memory(daemon.pid))
            for _ in range(STALLED):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"GET /api/get/big HTTP/1.1\r\nHost: x\r\n\r\n")
                sockets.append(sock)
            for _ in range(FOLLOWERS):
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(b"GET /api/logs/follow-me?follow=true HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(IDLE):
                sockets.append(socket.create_connection(("127.0.0.1", port)))
            what = f"{STALLED} stalled downloads, {FOLLOWERS} hung-up followers, {IDLE} idle"
            report(f"{what}, as they arrive", health_latencies(port))
            report(f"{what}, once they wait", health_latencies(port))
            print("memory with them:", memory(daemon.pid))
        finally:
            for sock in sockets:
                sock.close()
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            log.close()
    return 0


def _sleeper() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("run.sh")
        info.external_attr = 0o100755 << 16
        archive.writestr(info, "#!/bin/sh\nsleep 600\n")
    return buffer.getvalue()


if __name__ == "__main__":
    sys.exit(main())
