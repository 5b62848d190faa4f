"""The examples of the README and of docs/, run as written: every `sh` block, the README first
and then the pages in the site's order, top to bottom in one shell, and the Python client's
example, against a real daemon with its address filled in. The few blocks that install, build
or configure something else are named here, with the reason. The pages build with mkdocs, and
every link between them leads somewhere, on the forge as on the site."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, base_env

BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: Blocks not run here, by how they begin (in any file).
NOT_RUN = {
    "python3 -m venv .venv": "installs jobd and serves on 8080: the test starts its own daemon",
    "export JOBD_TOKEN=$(python3": "serves on 8080 with a token: tests/test_auth_env.py does",
    "scripts/test.sh": "the test suite itself",
    "scripts/build-binary.sh": "builds the binary and the images: tests/test_docker.py does",
    "SERVICE_EXAMPLE_UPLOAD_URL": "job-orchestrator's settings, not commands",
    "pip install '.[test]' && python bench/bench.py": "a benchmark that runs for minutes",
    "pip install '.[test]' && python bench/cost.py": "a benchmark that runs for minutes",
    "# head node (reachable as head:8080)": "two hosts: tests/test_pull_workers.py runs it",
}


def nav_pages() -> list[Path]:
    """docs/ pages in the order of mkdocs.yml's nav."""
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())
    docs = REPO_ROOT / config["docs_dir"]
    return [docs / page for entry in config["nav"] for page in entry.values()]


#: The README first, then the pages in the site's order: later pages use what earlier ones made.
FILES = [REPO_ROOT / "README.md", *nav_pages()]


def blocks(language: str, path: Path) -> list[str]:
    return [text for lang, text in BLOCK.findall(path.read_text()) if lang == language]


def to_run() -> list[tuple[Path, str]]:
    """The `sh` blocks to run, in order."""
    return [
        (path, text)
        for path in FILES
        for text in blocks("sh", path)
        if not text.lstrip().startswith(tuple(NOT_RUN))
    ]


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


def test_the_nav_lists_every_page() -> None:
    pages = {path.name for path in (REPO_ROOT / "docs").glob("*.md")}
    assert sorted(path.name for path in nav_pages()) == sorted(pages)


def test_every_skipped_block_is_still_there() -> None:
    starts = [text.lstrip() for path in FILES for text in blocks("sh", path)]
    for head in NOT_RUN:
        assert any(text.startswith(head) for text in starts), f"no block starts {head!r}"


def test_the_examples_run_top_to_bottom(jobd, tmp_path: Path) -> None:
    daemon = jobd.start("--workers", "2", "--kill-grace", "1s")
    address = f"127.0.0.1:{daemon.port}"
    runnable = to_run()
    assert len(runnable) >= 10, runnable
    work = tmp_path / "work"
    work.mkdir()
    # each file starts in the work folder, as its reader would
    parts = [
        f"# {path.relative_to(REPO_ROOT)}\ncd {shlex.quote(str(work))}\n{text}"
        for path, text in runnable
    ]
    script = "set -eo pipefail\n" + "\n".join(parts).replace("127.0.0.1:8080", address)
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
    assert (work / "hello-results" / "count.txt").read_text() == count  # the walk-through
    assert (work / "result" / "count.txt").read_text() == count  # the same with curl
    assert (work / "demo-2-results" / "count.txt").read_text() == count  # docs/cli.md
    assert (work / "myjob" / "results" / "count.txt").read_text() == count  # /upload
    with zipfile.ZipFile(work / "result.zip") as zipped:  # /submit, then /retrieve/$id
        assert zipped.read("count.txt").decode() == count
    cancelled = daemon.api("GET", "/api/jobs", params={"status": "CANCELLED"}).json()
    assert [job["Status"] for job in cancelled] == ["CANCELLED"]  # the slow job
    schedules = {s["name"] for s in daemon.api("GET", "/api/schedules").json()}
    assert {"nightly", "nightly-qc"} <= schedules

    (python,) = [text for path in FILES for text in blocks("python", path) if "JobdClient" in text]
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


# --------------------------------------------------------------------------- links

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.MULTILINE)


def _prose(text: str) -> str:
    """The Markdown without its fenced blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def forge_anchors(path: Path) -> set[str]:
    """The heading anchors GitHub makes: lower case, punctuation dropped, spaces to hyphens."""
    anchors: set[str] = set()
    for heading in HEADING.findall(_prose(path.read_text())):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
        slug = "".join(c for c in text.lower() if c.isalnum() or c in " _-").replace(" ", "-")
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


@pytest.mark.source_only
@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_link_leads_somewhere_on_the_forge(path: Path) -> None:
    """Relative links name a file that exists and, on GitHub, a heading in it; mkdocs checks
    the same for the site (the README is not part of the site)."""
    broken = []
    prose = re.sub(r"`[^`\n]*`", "``", _prose(path.read_text()))
    for target in LINK.findall(prose):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        found = dest.exists() and (not anchor or anchor in forge_anchors(dest))
        if not found:
            broken.append(target)
    assert not broken, f"{path.name}: {broken}"


@pytest.mark.source_only
def test_the_docs_build_with_mkdocs(tmp_path: Path) -> None:
    """Strict: a link to a missing page or heading, or a page left out of the nav, fails."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
