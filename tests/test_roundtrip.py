"""The round trip: upload a zip, run run.sh, get the result zip; how run.sh is run."""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
import zipfile
from pathlib import Path

from conftest import (
    JOB_PYTHON,
    assert_error,
    assert_job_shape,
    assert_sentence,
    assert_status,
    b64,
    make_zip,
    output_files,
    output_zip,
    proc_stat,
    script,
    unique_id,
)


def test_health_needs_nothing_and_reports_version(server):
    resp = server.api("GET", "/health", token=None)
    assert_status(resp, 200)
    body = resp.json()
    assert body["status"] == "healthy"
    assert isinstance(body.get("version"), str) and body["version"]


def test_round_trip(server):
    job_id = unique_id("roundtrip")
    files = {
        "run.sh": script(
            """
            tr a-z A-Z < input.txt > out.txt
            mkdir -p sub && echo nested > sub/deep.txt
            echo to-stdout
            echo to-stderr >&2
            pwd -P > cwd.txt
            """
        ),
        "input.txt": b"hello jobd\n",
        "data/": b"",
        "data/more.txt": b"more",
    }
    resp = server.upload(files, job_id=job_id)
    assert_status(resp, 201)
    created = resp.json()
    assert_job_shape(created)
    assert created["ID"] == job_id
    assert created["Status"] in {"QUEUED", "RUNNING", "SUCCESS"}
    assert created["Output"] == ""
    assert created["SlurmID"] == 0 and created["Slurml"] is False

    job = server.wait_done(job_id)
    assert job["ID"] == job_id
    assert job["Status"] == "SUCCESS", job
    assert job["ExitCode"] == 0
    assert job["StartedAt"] and job["FinishedAt"]

    out = output_files(job)
    # Rooted at the job directory, every file of it, and nothing else: the kept copy of the
    # input lives outside the job directory.
    assert set(out) == {
        "run.sh",
        "input.txt",
        "data/more.txt",
        "out.txt",
        "sub/deep.txt",
        "cwd.txt",
        "jobd.stdout",
        "jobd.stderr",
    }
    assert out["out.txt"] == b"HELLO JOBD\n"
    assert out["input.txt"] == b"hello jobd\n"
    assert out["data/more.txt"] == b"more"
    assert out["sub/deep.txt"] == b"nested\n"
    assert out["jobd.stdout"] == b"to-stdout\n"
    assert out["jobd.stderr"] == b"to-stderr\n"
    assert not any(name.endswith(".zip") for name in out)

    cwd = Path(out["cwd.txt"].decode().strip())
    jobs_root = (server.data_dir / "jobs").resolve()
    assert jobs_root in cwd.parents, f"run.sh ran in {cwd}, not under {jobs_root}"


def test_result_entries_are_not_prefixed(server):
    job = server.wait_done(server.submit({"run.sh": script("echo x > out.txt")})["ID"])
    names = output_zip(job).namelist()
    assert "out.txt" in names
    assert all(not n.startswith(("/", "./", "../")) for n in names), names


def test_generated_id_is_a_uuid(server):
    created = server.submit({"run.sh": script("true")})
    uuid.UUID(created["ID"])
    assert server.wait_done(created["ID"])["Status"] == "SUCCESS"


def test_failing_run_sh(server):
    job_id = unique_id("fails")
    server.submit(
        {"run.sh": script("echo partial > partial.txt\necho boom >&2\nexit 3")}, job_id=job_id
    )
    job = server.wait_done(job_id)
    assert job["Status"] == "FAILED"
    assert job["ExitCode"] == 3
    assert_sentence(job["Message"])
    assert "3" in job["Message"], job["Message"]
    out = output_files(job)
    assert out["jobd.stderr"] == b"boom\n"
    assert out["partial.txt"] == b"partial\n"


def test_run_sh_killed_by_a_signal_fails(server):
    job = server.wait_done(server.submit({"run.sh": script("kill -KILL $$")})["ID"])
    assert job["Status"] == "FAILED"
    assert job["ExitCode"] != 0
    assert_sentence(job["Message"])


def test_pending_job_answers_206_with_empty_output(server, gates):
    gate = gates()
    job_id = server.submit({"run.sh": script(gate.shell)})["ID"]
    server.wait_status(job_id, "RUNNING")
    resp = server.get(job_id)
    assert_status(resp, 206)
    job = resp.json()
    assert_job_shape(job)
    assert job["Status"] == "RUNNING"
    assert job["Output"] == ""
    assert job["ExitCode"] is None
    assert job["SlurmID"] == 0
    gate.open()
    assert server.wait_done(job_id)["Status"] == "SUCCESS"


def test_run_sh_without_shebang_runs_under_bin_sh(server):
    files = {"run.sh": script("readlink /proc/$$/exe > shell.txt", shebang=None)}
    job = server.wait_done(server.submit(files)["ID"])
    assert job["Status"] == "SUCCESS", job
    shell = output_files(job)["shell.txt"].decode().strip()
    assert shell == os.path.realpath("/bin/sh")


def test_shebang_picks_the_interpreter(server):
    body = "import sys\nopen('interp.txt', 'w').write(sys.executable)"
    files = {"run.sh": script(body, shebang=f"#!{Path(JOB_PYTHON).resolve()}")}
    job = server.wait_done(server.submit(files)["ID"])
    assert job["Status"] == "SUCCESS", job
    assert "interp.txt" in output_files(job)


def test_run_sh_gets_dev_null_as_stdin(server):
    files = {"run.sh": script("readlink /proc/$$/fd/0 > stdin.txt\ncat > stdin-data.txt")}
    # The test's daemon holds an open pipe as stdin: inheriting it would make `cat` hang.
    job = server.wait_done(server.submit(files, timeout=15)["ID"])
    assert job["Status"] == "SUCCESS", job
    out = output_files(job)
    assert out["stdin.txt"].decode().strip() == "/dev/null"
    assert out["stdin-data.txt"] == b""


def test_run_sh_has_its_own_session_and_process_group(server):
    job = server.wait_done(server.submit({"run.sh": script("cat /proc/$$/stat > stat.txt")})["ID"])
    assert job["Status"] == "SUCCESS", job
    fields = output_files(job)["stat.txt"].decode().rpartition(")")[2].split()
    pgrp, session = int(fields[2]), int(fields[3])
    daemon = proc_stat(server.proc.pid)
    assert daemon is not None
    assert pgrp != int(daemon[2]), "run.sh shares the daemon's process group"
    assert session != int(daemon[3]), "run.sh shares the daemon's session"
    assert pgrp == session, "run.sh's group does not lead its own session"


def test_output_reaches_job_files_from_the_first_byte(server):
    files = {
        "run.sh": script(
            """
            echo first-out
            echo first-err >&2
            cat jobd.stdout > seen-out.txt
            cat jobd.stderr > seen-err.txt
            """
        )
    }
    job = server.wait_done(server.submit(files)["ID"])
    out = output_files(job)
    assert out["seen-out.txt"] == b"first-out\n"
    assert out["seen-err.txt"] == b"first-err\n"


def test_run_sh_mode_in_zip_does_not_matter(server):
    files = {"run.sh": (script("echo ran > ran.txt"), 0o600)}
    job = server.wait_done(server.submit(files)["ID"])
    assert job["Status"] == "SUCCESS", job
    assert output_files(job)["ran.txt"] == b"ran\n"


def test_large_incompressible_payload_round_trips(server):
    payload = os.urandom(3 * 2**20 + 7)
    files = {"run.sh": script("sha256sum big.bin > sum.txt"), "big.bin": payload}
    job = server.wait_done(server.submit(files)["ID"])
    assert job["Status"] == "SUCCESS", job
    out = output_files(job)
    assert out["big.bin"] == payload
    assert out["sum.txt"].split()[0].decode() == hashlib.sha256(payload).hexdigest()


def _zip_whose_base64_has_slashes_and_padding() -> tuple[bytes, str]:
    for size in range(64, 256):
        data = make_zip({"run.sh": script("true"), "filler.bin": os.urandom(size)})
        encoded = b64(data)
        if "/" in encoded and encoded.endswith("="):
            return data, encoded
    raise AssertionError("could not build a zip whose base64 has '/' and padding")


def test_base64_without_padding_and_with_escaped_slashes(server):
    data, encoded = _zip_whose_base64_has_slashes_and_padding()
    variants = {
        "unpadded": encoded.rstrip("="),
        "escaped": encoded.replace("/", "\\/"),
        "unpadded-escaped": encoded.rstrip("=").replace("/", "\\/"),
    }
    for name, text in variants.items():
        job_id = unique_id(name)
        body = '{"id": "%s", "input": "%s"}' % (job_id, text)  # noqa: UP031
        resp = server.post_raw(body.encode())
        assert_status(resp, 201)
        job = server.wait_done(job_id)
        assert job["Status"] == "SUCCESS", (name, job)
        filler = zipfile.ZipFile(io.BytesIO(data)).read("filler.bin")
        assert output_files(job)["filler.bin"] == filler, name


def test_field_order_and_the_go_jobs_own_fields(server):
    """A Go client may send a whole job object: its other fields, any case, in any order."""
    job_id = unique_id("order")
    encoded = b64(make_zip({"run.sh": script("echo ok")}))
    body = json.dumps(
        {"Input": encoded, "status": "", "LASTUPDATED": "2024-01-01T00:00:00Z", "id": job_id}
    )
    resp = server.post_raw(body.encode())
    assert_status(resp, 201)
    assert resp.json()["ID"] == job_id
    assert server.wait_done(job_id)["Status"] == "SUCCESS"


def test_result_zip_does_not_follow_links(server):
    files = {
        "run.sh": script(
            """
            ln -s /etc/passwd leak
            ln -s /etc etcdir
            ln -s .. up
            echo ok > real.txt
            """
        )
    }
    job = server.wait_done(server.submit(files)["ID"])
    assert job["Status"] == "SUCCESS", job
    passwd = Path("/etc/passwd").read_bytes()
    archive = output_zip(job)
    names = archive.namelist()
    assert "real.txt" in names
    assert not [n for n in names if n.startswith(("etcdir/", "up/"))], names
    for info in archive.infolist():
        if not info.is_dir():
            assert archive.read(info) != passwd, f"{info.filename} holds /etc/passwd"


def test_get_unknown_and_invalid_ids_are_404(server):
    for job_id in ("no-such-job", ".hidden", "a" * 200, "bad%20id", "..%2Fjobd.db"):
        assert_error(server.get(job_id), 404)


def test_output_is_the_same_on_every_get(server):
    job_id = server.submit({"run.sh": script("echo stable > s.txt")})["ID"]
    first = server.wait_done(job_id)
    again = server.get(job_id)
    assert_status(again, 200)
    assert again.json()["Output"] == first["Output"]
