"""The README's examples, run as written: every `sh` block, top to bottom in one shell, and
the Python client's example, against a real daemon with its address filled in. The few
blocks that install, build or configure something else are named here, with the reason."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO_ROOT, base_env

README = (REPO_ROOT / "README.md").read_text()
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: Blocks not run here, by how they begin.
NOT_RUN = {
    "pip install . && jobd": "installs jobd and serves on 8080: the test starts its own daemon",
    "scripts/test.sh": "the test suite itself",
    "scripts/build-binary.sh": "builds the binary and the images: tests/test_docker.py does",
    "SERVICE_EXAMPLE_UPLOAD_URL": "job-orchestrator's settings, not commands",
    "pip install '.[test]' && python bench/bench.py": "a benchmark that runs for minutes",
}


def blocks(language: str) -> list[str]:
    return [text for lang, text in BLOCK.findall(README) if lang == language]


def _jobd_on_path(tmp_path: Path) -> str:
    """A `jobd` command as a user has it: the binary, or the checkout's module."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "jobd"
    exe = os.environ.get("JOBD_EXE")
    if exe:
        shim.symlink_to(exe)
    else:
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m jobd "$@"\n')
        shim.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def test_every_skipped_block_is_still_in_the_readme() -> None:
    starts = [text.lstrip() for text in blocks("sh")]
    for head in NOT_RUN:
        assert any(text.startswith(head) for text in starts), f"no README block starts {head!r}"


def test_the_readme_examples_run_top_to_bottom(jobd, tmp_path: Path) -> None:
    daemon = jobd.start("--workers", "2", "--kill-grace", "1s")
    address = f"127.0.0.1:{daemon.port}"
    runnable = [text for text in blocks("sh") if not text.lstrip().startswith(tuple(NOT_RUN))]
    assert len(runnable) >= 8, runnable
    script = "set -eo pipefail\n" + "\n".join(runnable).replace("127.0.0.1:8080", address)
    work = tmp_path / "work"
    work.mkdir()
    env = base_env({"PATH": _jobd_on_path(tmp_path)})
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "Traceback" not in done.stderr

    count = "11 input.txt\n"
    assert (work / "result" / "count.txt").read_text() == count  # the curl walk-through
    assert (work / "demo-2-results" / "count.txt").read_text() == count  # the CLI
    assert (work / "myjob" / "results" / "count.txt").read_text() == count  # /upload
    with zipfile.ZipFile(work / "result.zip") as zipped:  # /submit, then /retrieve/$id
        assert zipped.read("count.txt").decode() == count
    cancelled = daemon.api("GET", "/api/jobs", params={"status": "CANCELLED"}).json()
    assert [job["Status"] for job in cancelled] == ["CANCELLED"]  # the slow job
    schedules = {s["name"] for s in daemon.api("GET", "/api/schedules").json()}
    assert {"nightly", "nightly-qc"} <= schedules

    (python,) = [text for text in blocks("python") if "JobdClient" in text]
    assert len(python.strip().splitlines()) <= 6
    ran = subprocess.run(
        [sys.executable, "-c", python.replace("127.0.0.1:8080", address)],
        cwd=work,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == f"SUCCESS 0 {count}\n"
    assert (work / "myjob-results" / "input.txt").read_text() == "some input\n"
