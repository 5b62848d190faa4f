"""A data dir jobd cannot use stops the start with one line that names the file and what to do,
a non-zero exit, and nothing changed on disk; never a traceback, never a daemon that looks
healthy and fails every upload."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import script

MOUNTS: list[Path] = []


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under root with a digest of its content (folders as 'dir')."""
    if not root.exists():
        return {}
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        found[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _bind_read_only(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    MOUNTS.append(path)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)


@pytest.fixture(autouse=True)
def _unmount():
    yield
    while MOUNTS:
        subprocess.run(["umount", str(MOUNTS.pop())], check=False)


def _a_used_data_dir(jobd, data: Path) -> None:
    """A data dir with a few finished jobs in it, its daemon stopped."""
    daemon = jobd.start(data_dir=data)
    for _ in range(3):
        daemon.wait_done(daemon.submit({"run.sh": script("echo hi > out.txt")})["ID"])
    daemon.stop()


def random_db(jobd, data: Path) -> None:
    data.mkdir()
    (data / "jobd.db").write_bytes(os.urandom(8192))


def truncated_db(jobd, data: Path) -> None:
    _a_used_data_dir(jobd, data)
    db = data / "jobd.db"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])


def db_is_a_folder(jobd, data: Path) -> None:
    (data / "jobd.db").mkdir(parents=True)


def db_read_only(jobd, data: Path) -> None:
    _a_used_data_dir(jobd, data)
    _bind_read_only(data / "jobd.db")


def dir_read_only(jobd, data: Path) -> None:
    _a_used_data_dir(jobd, data)
    _bind_read_only(data)


def below_a_file(jobd, data: Path) -> None:
    data.parent.mkdir(exist_ok=True)
    (data.parent / "a-file").write_text("not a folder")


CASES: dict[str, tuple[Callable[..., None], str, str]] = {
    # name: (make it, the path the line names, words it says)
    "random-bytes": (random_db, "jobd.db", "not a jobd database"),
    "truncated": (truncated_db, "jobd.db", "damaged"),
    "db-is-a-folder": (db_is_a_folder, "jobd.db", "cannot be opened"),
    "db-read-only": (db_read_only, "jobd.db", "cannot be written"),
    "dir-read-only": (dir_read_only, "", "must be able to write"),
    "below-a-file": (below_a_file, "a-file", "is a file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_data_dir_is_one_line_and_changes_nothing(jobd, tmp_path, case):
    make, named, says = CASES[case]
    data = tmp_path / "data"
    make(jobd, data)
    if case == "below-a-file":
        data = tmp_path / "a-file" / "data"
    before = _snapshot(tmp_path / "data")

    daemon = jobd.start(data_dir=data, wait_ready=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(timeout=20) != 0
    log = daemon.log()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in log, log
    assert named in errors[0] and says in errors[0], errors[0]
    assert "--data-dir" in errors[0], errors[0]
    assert _snapshot(tmp_path / "data") == before, "a failed start changed the data dir"
