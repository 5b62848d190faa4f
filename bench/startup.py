#!/usr/bin/env python3
"""Startup cost of the frozen binary (dist/jobd) against ``python -m jobd``.

    python bench/startup.py [--runs 20] [--health-runs 10] [--binary dist/jobd] [--tmp-dir DIR]

Measured, for both commands unless said otherwise:
- size: of the frozen binary, in MB (10**6 bytes) and MiB;
- --version: median wall time of ``subprocess.run([..., "--version"], capture_output=True)``
  over --runs runs; every run is a new process;
- healthy: median time from spawn of ``serve`` (loopback, a free port, a fresh data dir) to the
  first ``GET /health`` answering 200, polled every 5 ms with a 30 s deadline, over
  --health-runs runs; each daemon is then stopped by SIGTERM to the PID this script started
  (SIGKILL to that PID after 10 s) and its data dir removed.

The two commands take turns, run by run, so a drift of the machine weighs on both alike.
Targets apply to the binary; ``python -m jobd`` is shown beside it for comparison only.
The script exits 0 whatever the figures are (it is a report); it exits 1 when the binary is
missing or fails to start.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BINARY = REPO / "dist" / "jobd"

MB = 1_000_000  # jobd's convention: MB is 10**6 bytes
MIB = 1 << 20

# Targets for the frozen binary.
SIZE_TARGET_MB = 15.0
VERSION_TARGET_MS = 300.0
HEALTHY_TARGET_MS = 600.0

POLL_INTERVAL_S = 0.005
HEALTH_DEADLINE_S = 30.0
STOP_GRACE_S = 10.0
VERSION_TIMEOUT_S = 60.0


class StartFailed(Exception):
    """A command did not start: --version failed, or the daemon never answered /health."""


@dataclass
class Subject:
    """One way of running jobd, with its timings in milliseconds."""

    label: str
    command: list[str]
    frozen: bool
    version: str = ""
    version_ms: list[float] = field(default_factory=list)
    healthy_ms: list[float] = field(default_factory=list)
    error: str | None = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Startup cost of the frozen jobd binary against `python -m jobd`.",
    )
    parser.add_argument(
        "--runs", type=int, default=20, metavar="N", help="--version runs per command [20]"
    )
    parser.add_argument(
        "--health-runs",
        type=int,
        default=10,
        metavar="N",
        help="spawn-to-healthy runs per command [10]",
    )
    parser.add_argument(
        "--binary",
        type=Path,
        default=DEFAULT_BINARY,
        metavar="PATH",
        help=f"the frozen binary [{DEFAULT_BINARY.relative_to(REPO)}]",
    )
    parser.add_argument(
        "--tmp-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the daemons' temporary data dirs go [the system default]",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.health_runs < 1:
        parser.error("--runs and --health-runs must be at least 1")
    if args.tmp_dir is not None:
        try:
            args.tmp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            parser.exit(  # one line, not argparse's usage: the rest was fine
                2,
                f"startup.py: error: --tmp-dir {args.tmp_dir}: cannot create it"
                f" ({exc.strerror}); give a directory you can write to, or leave --tmp-dir"
                " out for the system's\n",
            )
    return args


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_version(subject: Subject) -> float:
    """One `--version` run; returns its wall time in ms."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [*subject.command, "--version"],
            capture_output=True,
            cwd=REPO,
            timeout=VERSION_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StartFailed(f"--version did not return within {VERSION_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise StartFailed(f"cannot run {subject.command[0]}: {exc}") from None
    took = (time.perf_counter() - started) * 1000
    out = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0 or not out.startswith("jobd"):
        err = done.stderr.decode(errors="replace").strip()
        raise StartFailed(f"--version exited {done.returncode}: {(out or err)[-500:]!r}")
    subject.version = out
    return took


def health_ok(port: int, timeout: float) -> bool:
    """True when GET /health answers 200; False when nothing answers yet."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the PID we started, SIGKILL that same PID after the grace; wait for its exit."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def log_tail(path: Path, chars: int = 800) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return text[-chars:]


def time_healthy(subject: Subject, tmp_dir: Path | None) -> float:
    """Spawn `serve` and poll /health until 200; returns spawn-to-healthy in ms."""
    root = Path(tempfile.mkdtemp(prefix="jobd-startup-", dir=tmp_dir))
    data_dir = root / "data"
    data_dir.mkdir()
    log_path = root / "daemon.log"
    port = free_port()
    command = [
        *subject.command,
        *("serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)),
    ]
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(log_path, "wb") as log:
            started = time.perf_counter()
            try:
                proc = subprocess.Popen(
                    command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
            except OSError as exc:
                raise StartFailed(f"cannot run {subject.command[0]}: {exc}") from None
            deadline = started + HEALTH_DEADLINE_S
            while True:
                remaining = deadline - time.perf_counter()
                if health_ok(port, timeout=max(0.05, min(2.0, remaining))):
                    took = (time.perf_counter() - started) * 1000
                    break
                code = proc.poll()
                if code is not None:
                    raise StartFailed(
                        f"serve exited {code} before /health answered: {log_tail(log_path)!r}"
                    )
                if time.perf_counter() >= deadline:
                    raise StartFailed(
                        f"/health did not answer 200 within {HEALTH_DEADLINE_S:.0f} s:"
                        f" {log_tail(log_path)!r}"
                    )
                time.sleep(POLL_INTERVAL_S)
        return took
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def measure(subjects: list[Subject], args: argparse.Namespace) -> None:
    """Alternate the subjects run by run. A failed binary ends the measuring; a failed
    `python -m jobd` is only dropped from the comparison."""

    def attempt(subject: Subject, run: Callable[[], None]) -> None:
        if subject.error is not None:
            return
        try:
            run()
        except StartFailed as exc:
            subject.error = str(exc)
            if subject.frozen:
                raise

    for _ in range(args.runs):
        for subject in subjects:
            attempt(subject, lambda s=subject: s.version_ms.append(time_version(s)))
    for _ in range(args.health_runs):
        for subject in subjects:
            attempt(
                subject,
                lambda s=subject: s.healthy_ms.append(time_healthy(s, args.tmp_dir)),
            )


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "FAIL"


def fmt_ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.0f} ms"


def fmt_range(values: list[float]) -> str:
    if not values:
        return ""
    return f"({min(values):.0f}-{max(values):.0f})"


def render(
    binary: Path, size: int, frozen: Subject, python: Subject, args: argparse.Namespace
) -> str:
    header = [
        f"jobd startup: {binary} vs python -m jobd",
        f"  machine: {platform.system()} {platform.release()} {platform.machine()},"
        f" {os.cpu_count()} CPUs; Python {platform.python_version()} ({sys.executable})",
        f"  {frozen.label}: {frozen.version or '?'}; python -m jobd: {python.version or '?'}",
        f"  runs: --version x{args.runs}, spawn-to-healthy x{args.health_runs};"
        " medians, (min-max) beside",
        "",
    ]
    columns = ("metric", "target", "binary", "verdict", "python -m jobd")
    rows = [
        (
            "binary size",
            f"<= {SIZE_TARGET_MB:.0f} MB",
            f"{size / MB:.2f} MB ({size / MIB:.2f} MiB)",
            verdict(size / MB, SIZE_TARGET_MB),
            "-",
        ),
        (
            "--version (median)",
            f"<= {VERSION_TARGET_MS:.0f} ms",
            f"{fmt_ms(frozen.version_ms)} {fmt_range(frozen.version_ms)}",
            verdict(statistics.median(frozen.version_ms), VERSION_TARGET_MS),
            f"{fmt_ms(python.version_ms)} {fmt_range(python.version_ms)}".strip(),
        ),
        (
            "healthy (median)",
            f"<= {HEALTHY_TARGET_MS:.0f} ms",
            f"{fmt_ms(frozen.healthy_ms)} {fmt_range(frozen.healthy_ms)}",
            verdict(statistics.median(frozen.healthy_ms), HEALTHY_TARGET_MS),
            f"{fmt_ms(python.healthy_ms)} {fmt_range(python.healthy_ms)}".strip(),
        ),
    ]
    widths = [max(len(row[i]) for row in (columns, *rows)) for i in range(len(columns))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
        ).rstrip()

    table = [line(columns), line(tuple("-" * width for width in widths))]
    table += [line(row) for row in rows]
    notes = [
        "",
        "TMPDIR unpack: the binary unpacks itself into $TMPDIR on every start (staticx, then",
        "  PyInstaller); that cost is inside its figures above. Not inspected: this script does",
        "  not look into /tmp.",
    ]
    if python.error is not None:
        notes.append(f"python -m jobd failed, figures partial: {python.error}")
    return "\n".join(header + table + notes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binary: Path = args.binary
    if not binary.is_file():
        print(
            f"startup: the frozen binary {binary} is missing; build it with"
            " scripts/build-binary.sh or give --binary PATH",
            file=sys.stderr,
        )
        return 1
    if not os.access(binary, os.X_OK):
        print(f"startup: the frozen binary {binary} is not executable", file=sys.stderr)
        return 1
    binary = binary.resolve()
    size = binary.stat().st_size
    frozen = Subject(label=str(binary), command=[str(binary)], frozen=True)
    python = Subject(label="python -m jobd", command=[sys.executable, "-m", "jobd"], frozen=False)
    try:
        measure([frozen, python], args)
    except StartFailed as exc:
        print(f"startup: the frozen binary {binary} failed to start: {exc}", file=sys.stderr)
        return 1
    print(render(binary, size, frozen, python, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
