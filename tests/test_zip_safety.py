"""Zip slip, links, device files and zip bombs are refused before anything is written."""

from __future__ import annotations

import io
import stat
import struct
import uuid
import warnings
import zipfile
from pathlib import Path

import pytest
from conftest import assert_error, assert_status, b64, make_zip, script, unique_id

RUN_SH = script("echo ok")
MAX_UNPACKED = 1_000_000


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return ("--max-unpacked", "1MB", "--max-files", "50", "--workers", "2")


def _reject(server, files_or_zip, *statuses: int) -> None:
    data = files_or_zip if isinstance(files_or_zip, bytes) else make_zip(files_or_zip)
    job_id = unique_id("unsafe")
    before = server.job_dirs()
    resp = server.api("POST", "/api/upload", json={"id": job_id, "input": b64(data)})
    assert_error(resp, *statuses)
    server.assert_nothing_written(before, job_id)


def _markers_anywhere(root: Path, marker: str) -> list[Path]:
    return [p for p in root.rglob("*") if marker in p.name]


@pytest.mark.parametrize(
    "template",
    [
        "../{m}",
        "../../{m}",
        "a/../../{m}",
        "sub/dir/../../../{m}",
        "/tmp/{m}",
        "//tmp/{m}",
        "..",
        "../",
    ],
)
def test_zip_slip_is_400(server, template):
    marker = f"zipslip-{uuid.uuid4().hex[:10]}"
    name = template.format(m=marker)
    _reject(server, {"run.sh": RUN_SH, name: b"escaped"}, 400)
    assert not Path("/tmp", marker).exists()
    assert not _markers_anywhere(server.workdir, marker)


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("link", "/etc/passwd"),
        ("inside", "run.sh"),
        ("up", ".."),
        ("run.sh", "/bin/sh"),
    ],
)
def test_symlink_entries_are_400(server, name, target):
    files = {"run.sh": RUN_SH} if name != "run.sh" else {}
    files[name] = (target.encode(), stat.S_IFLNK | 0o777)
    _reject(server, files, 400)


@pytest.mark.parametrize("kind", [stat.S_IFCHR, stat.S_IFBLK], ids=["char-device", "block-device"])
def test_device_entries_are_400(server, kind):
    _reject(server, {"run.sh": RUN_SH, "dev": (b"", kind | 0o666)}, 400)


def test_duplicate_entries_are_400(server):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name
        data = make_zip([("run.sh", script("echo first")), ("run.sh", script("echo second"))])
    _reject(server, data, 400)


def test_missing_run_sh_is_400(server):
    _reject(server, {"readme.txt": b"no script here"}, 400)


def test_compressible_bomb_is_413(server):
    data = make_zip({"run.sh": RUN_SH, "bomb.bin": bytes(5 * MAX_UNPACKED)})
    assert len(data) < 50_000
    _reject(server, data, 413)


def _lie_about_size(data: bytes, name: str, claimed: int) -> bytes:
    """Patch an entry's uncompressed size in its local header and central directory entry."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    patched = bytearray(data)
    local = info.header_offset
    assert patched[local : local + 4] == b"PK\x03\x04"
    struct.pack_into("<I", patched, local + 22, claimed)
    central = patched.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", patched, central + 28)[0]
        if patched[central + 46 : central + 46 + name_len] == name.encode():
            struct.pack_into("<I", patched, central + 24, claimed)
            break
        central = patched.find(b"PK\x01\x02", central + 4)
    else:
        raise AssertionError(f"no central directory entry for {name}")
    return bytes(patched)


def test_bomb_with_lying_headers_is_refused(server):
    honest = make_zip({"run.sh": RUN_SH, "bomb.bin": bytes(5 * MAX_UNPACKED)})
    lying = _lie_about_size(honest, "bomb.bin", 1000)
    assert zipfile.ZipFile(io.BytesIO(lying)).getinfo("bomb.bin").file_size == 1000
    _reject(server, lying, 413, 400)


def test_many_small_entries_over_max_files_is_413(server):
    _reject(server, {"run.sh": RUN_SH, **{f"f{i}": b"" for i in range(60)}}, 413)


def test_safe_nested_paths_and_directories_are_accepted(server):
    files = {
        "run.sh": script("cat a/b/c.txt > out.txt"),
        "a/": b"",
        "a/b/": b"",
        "a/b/c.txt": b"deep",
        "dots..in..name.txt": b"fine",
    }
    resp = server.upload(files)
    assert_status(resp, 201)
    job = server.wait_done(resp.json()["ID"])
    assert job["Status"] == "SUCCESS", job
