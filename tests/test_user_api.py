"""Users of job-orchestrator's guide rely on /upload, /download and /terminate as it says."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import assert_error, assert_status, script, unique_id, wait_until

pytestmark = pytest.mark.source_only

JOB_WAIT = 20.0
HELLO = script('echo "hello" > out.txt')


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    # One worker: a job held at a gate keeps the next one QUEUED.
    return ("--workers", "1", "--kill-grace", "1s")


# --------------------------------------------------------------------------- helpers


def upload(daemon, files: list[tuple[str, bytes]], **fields: str) -> requests.Response:
    """POST /upload with one `file` part per (filename, data) and the given form fields."""
    parts = [("file", (name, data)) for name, data in files]
    return daemon.api("POST", "/upload", files=parts, data=fields)


def submit(daemon, files: list[tuple[str, bytes]], **fields: str) -> dict[str, Any]:
    fields.setdefault("user_id", "1")
    resp = upload(daemon, files, **fields)
    assert_status(resp, 201)
    body = resp.json()
    assert isinstance(body["id"], int) and not isinstance(body["id"], bool), body
    return body


def head(daemon, number: int | str) -> int:
    resp = daemon.api("HEAD", f"/download/{number}")
    assert resp.content == b"", f"HEAD /download/{number} has a body: {resp.content[:200]!r}"
    return resp.status_code


def wait_head(daemon, number: int | str, code: int, timeout: float = JOB_WAIT) -> None:
    seen: list[int] = []

    def reached() -> bool:
        seen.append(head(daemon, number))
        return seen[-1] == code

    try:
        wait_until(reached, timeout, f"HEAD /download/{number} to answer {code}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; codes seen: {sorted(set(seen))}") from None


def json_of(resp: requests.Response, code: int) -> dict[str, Any]:
    """A GET /download answer other than 200: JSON, never a zip."""
    assert_status(resp, code)
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    return resp.json()


def zip_files(resp: requests.Response) -> dict[str, bytes]:
    assert_status(resp, 200)
    assert resp.headers.get("Content-Type", "").startswith("application/zip"), resp.headers
    archive = zipfile.ZipFile(io.BytesIO(resp.content))
    return {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}


def wait_running(daemon, number: int) -> dict[str, Any]:
    return wait_until(
        lambda: (
            (b := json_of(daemon.api("GET", f"/download/{number}"), 202))["status"] == "Running"
            and b
        ),
        JOB_WAIT,
        f"job {number} to be Running",
    )


# --------------------------------------------------------------------------- 1. the guide


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def curl_status_line(out: str) -> int:
    first = out.splitlines()[0] if out else ""
    assert first.startswith("HTTP/"), f"curl -I printed no status line: {out!r}"
    return int(first.split()[1])


def guide_run(server, workdir: Path, submit_cmd: str) -> Path:
    """Submit with the guide's curl command, poll with `curl -I`, download with `curl -o` and
    unzip: returns the folder the results were unpacked in."""
    done = sh(f"{submit_cmd} -s -w '\\n%{{http_code}}'", workdir)
    assert done.returncode == 0, done.stderr
    body, _, code = done.stdout.rpartition("\n")
    assert code == "201", f"POST /upload: expected 201, got {code}: {body}"
    answer = json.loads(body)
    assert answer["user_id"] == 1 and answer["service"] == "example", answer
    assert answer["status"] == "Queued" and answer["dest_id"] == "", answer
    assert isinstance(answer["id"], int) and isinstance(answer["loc"], str), answer
    url = f"{server.url}/download/{answer['id']}"

    def status() -> int:
        head = sh(f"curl -I {url}", workdir)
        assert head.returncode == 0, head.stderr
        return curl_status_line(head.stdout)

    codes: list[int] = []
    wait_until(lambda: codes.append(status()) or codes[-1] == 200, JOB_WAIT, f"curl -I {url}")
    assert set(codes) <= {200, 202}, codes
    # Unpacked in a folder of its own: the zip holds run.sh too, and unzip would ask
    # whether to replace the run.sh next to it.
    results = workdir / "results"
    results.mkdir()
    got = sh(f"curl -o results.zip {url}", results)
    assert got.returncode == 0, got.stderr
    unpacked = sh("unzip results.zip", results)
    assert unpacked.returncode == 0, unpacked.stdout + unpacked.stderr
    return results


@pytest.mark.skipif(shutil.which("curl") is None, reason="the guide needs the curl binary")
@pytest.mark.skipif(shutil.which("unzip") is None, reason="the guide needs the unzip binary")
def test_your_first_job_guide_as_written(server, tmp_path: Path) -> None:
    first = tmp_path / "first"
    first.mkdir()
    made = sh(
        """cat > run.sh << 'EOF'
#!/bin/bash
echo "Hello from job-orchestrator!" > output.txt
echo "Processing complete at $(date)" >> output.txt
EOF
chmod +x run.sh""",
        first,
    )
    assert made.returncode == 0, made.stderr
    results = guide_run(
        server,
        first,
        f'curl -X POST {server.url}/upload -F "file=@run.sh" -F "user_id=1" -F "service=example"',
    )
    shown = sh("cat output.txt", results)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == "Hello from job-orchestrator!", shown.stdout
    assert lines[1].startswith("Processing complete at ") and len(lines[1]) > 30, lines

    second = tmp_path / "second"
    second.mkdir()
    made = sh(
        """echo "sample data" > input.txt
cat > run.sh << 'EOF'
#!/bin/bash
# Count lines and words in input
wc input.txt > stats.txt
# Transform the data
tr 'a-z' 'A-Z' < input.txt > output.txt
echo "Done!" >> output.txt
EOF
chmod +x run.sh""",
        second,
    )
    assert made.returncode == 0, made.stderr
    results = guide_run(
        server,
        second,
        f'curl -X POST {server.url}/upload -F "file=@run.sh" -F "file=@input.txt"'
        ' -F "user_id=1" -F "service=example"',
    )
    assert (results / "output.txt").read_text() == "SAMPLE DATA\nDone!\n"
    assert (results / "stats.txt").read_text().split() == ["1", "2", "12", "input.txt"]
    assert (results / "input.txt").read_text() == "sample data\n"


# --------------------------------------------------------------------------- 2. status codes


def test_download_codes_while_queued_running_and_done(server, gates) -> None:
    gate = gates()
    running = submit(server, [("run.sh", script(f"{gate.shell}\necho ran > out.txt"))])
    queued = submit(server, [("run.sh", HELLO)], service="example")
    body = wait_running(server, running["id"])
    assert body["id"] == running["id"] and body["user_id"] == 1, body
    assert head(server, running["id"]) == 202
    assert head(server, queued["id"]) == 202
    body = json_of(server.api("GET", f"/download/{queued['id']}"), 202)
    assert body["status"] == "Queued" and body["service"] == "example", body

    gate.open()
    for job in (running, queued):
        wait_head(server, job["id"], 200)
    resp = server.api("GET", f"/download/{running['id']}")
    assert zip_files(resp)["out.txt"] == b"ran\n"
    assert "filename=" in resp.headers.get("Content-Disposition", ""), resp.headers
    assert zip_files(server.api("GET", f"/download/{queued['id']}"))["out.txt"] == b"hello\n"


def test_download_codes_failed_and_cancelled(server, gates) -> None:
    failed = submit(server, [("run.sh", script("echo partway > partial.txt\necho oops\nexit 3"))])
    wait_head(server, failed["id"], 410)
    body = assert_error(server.api("GET", f"/download/{failed['id']}"), 410)
    assert body["exit_code"] == 3, body
    assert isinstance(body["logs"], str) and isinstance(body["partial"], str), body
    # Where the answer says the logs and partial results are, they are.
    logs = server.api("GET", body["logs"])
    assert_status(logs, 200)
    assert "oops" in logs.text
    assert zip_files(server.api("GET", body["partial"]))["partial.txt"] == b"partway\n"

    gate = gates()
    held = submit(server, [("run.sh", script(gate.shell))])
    waiting = submit(server, [("run.sh", HELLO)])
    wait_running(server, held["id"])
    assert head(server, waiting["id"]) == 202
    for job in (waiting, held):  # one queued, one running
        resp = server.api("POST", f"/terminate/{job['id']}")
        assert_status(resp, 200)
        assert resp.json()["status"] == "Cancelled", resp.json()
        assert head(server, job["id"]) == 410
        body = assert_error(server.api("GET", f"/download/{job['id']}"), 410)
        assert {"exit_code", "logs", "partial"} <= body.keys(), body


@pytest.mark.parametrize(
    "run_sh",
    [
        script("echo never > out.txt", shebang="#!/nonexistent/interpreter"),
        b"#!/bin/sh\r\necho windows > out.txt\r\n",
    ],
    ids=["missing-interpreter", "crlf"],
)
def test_download_code_for_a_job_that_could_not_start(server, run_sh: bytes) -> None:
    job = submit(server, [("run.sh", run_sh)])
    wait_head(server, job["id"], 400)
    assert_error(server.api("GET", f"/download/{job['id']}"), 400)


@pytest.mark.parametrize("number", ["999999999", "abc", "-1", "%C2%B9", "1.0", "0x1"])
def test_download_code_for_an_unknown_job(server, number: str) -> None:
    assert head(server, number) == 404
    assert_error(server.api("GET", f"/download/{number}"), 404)
    assert_error(server.api("GET", f"/download_partial/{number}"), 404)


def test_download_code_after_retention(jobd, gates) -> None:
    daemon = jobd.start("--workers", "2", "--retention", "1s", "--kill-grace", "1s")
    gate = gates()
    jobs = [
        submit(daemon, [("run.sh", HELLO)]),
        submit(daemon, [("run.sh", script("exit 3"))]),
        submit(daemon, [("run.sh", script(gate.shell))]),
    ]
    wait_running(daemon, jobs[2]["id"])
    assert_status(daemon.api("POST", f"/terminate/{jobs[2]['id']}"), 200)
    for job in jobs:
        wait_head(daemon, job["id"], 204, timeout=15)
        resp = daemon.api("GET", f"/download/{job['id']}")
        assert_status(resp, 204)
        assert resp.content == b"", resp.content[:200]


# --------------------------------------------------------------------------- 3. relative paths


def test_a_file_name_with_a_relative_path_is_kept_as_that_path(server) -> None:
    job = submit(
        server,
        [
            ("data/input.txt", b"nested input\n"),
            ("run.sh", b"#!/bin/sh\ncat data/input.txt > out.txt\n"),
        ],
    )
    wait_head(server, job["id"], 200)
    files = zip_files(server.api("GET", f"/download/{job['id']}"))
    assert files["out.txt"] == b"nested input\n"
    assert files["data/input.txt"] == b"nested input\n"


# --------------------------------------------------------------------------- 4. bad inputs


RUN_SH = [("run.sh", HELLO)]


@pytest.mark.parametrize(
    ("files", "fields", "named"),
    [
        (RUN_SH, {}, "user_id"),
        (RUN_SH, {"user_id": "abc"}, "user_id"),
        (RUN_SH, {"user_id": "-1"}, "user_id"),
        (RUN_SH, {"user_id": "1.5"}, "user_id"),
        (RUN_SH, {"user_id": ""}, "user_id"),
        (RUN_SH, {"user_id": "1", "service": "bad name"}, "service"),
        (RUN_SH, {"user_id": "1", "service": "x" * 65}, "service"),
        (RUN_SH, {"user_id": "1", "service": "a/b"}, "service"),
        (RUN_SH, {"user_id": "1", "service": ""}, "service"),
        ([("../x", b"x"), *RUN_SH], {"user_id": "1"}, "../x"),
        ([("/etc/x", b"x"), *RUN_SH], {"user_id": "1"}, "/etc/x"),
        ([("", b"x"), *RUN_SH], {"user_id": "1"}, "empty"),
        ([("data/", b"x"), *RUN_SH], {"user_id": "1"}, "data/"),
        ([("input.txt", b"x")], {"user_id": "1"}, "run.sh"),
    ],
    ids=[
        "user_id-missing",
        "user_id-abc",
        "user_id-negative",
        "user_id-fraction",
        "user_id-empty",
        "service-space",
        "service-65-chars",
        "service-slash",
        "service-empty",
        "file-dotdot",
        "file-absolute",
        "file-empty-name",
        "file-folder-name",
        "no-run.sh",
    ],
)
def test_bad_input_is_a_400_that_keeps_nothing(server, files, fields, named: str) -> None:
    before = server.job_dirs()
    body = assert_error(upload(server, files, **fields), 400)
    assert named in body["message"], body
    server.assert_nothing_written(before)


def test_a_service_name_of_64_characters_is_accepted(server) -> None:
    name = "s" * 32 + "-_" + "9" * 30
    job = submit(server, [("run.sh", HELLO)], service=name)
    assert job["service"] == name, job
    wait_head(server, job["id"], 200)


# --------------------------------------------------------------------------- 5. one integer ID


def test_upload_id_works_on_the_other_routes(server) -> None:
    job = submit(server, [("run.sh", HELLO)], service="example")
    wait_head(server, job["id"], 200)
    resp = server.api("GET", f"/api/get/{job['id']}")
    assert_status(resp, 200)
    got = resp.json()
    assert (got["IntID"], got["UserID"], got["Service"]) == (job["id"], 1, "example"), got
    assert zip_files(server.api("GET", f"/retrieve/{job['id']}"))["out.txt"] == b"hello\n"


def test_api_upload_job_is_at_download_by_its_int_id(server, gates) -> None:
    gate = gates()
    sent = server.submit(
        {"run.sh": script(f"{gate.shell}\necho api > out.txt")}, job_id=unique_id("api")
    )
    number = sent["IntID"]
    assert isinstance(number, int), sent
    body = json_of(server.api("GET", f"/download/{number}"), 202)
    assert body["id"] == number, body
    assert body["user_id"] is None and body["service"] == "default", body
    gate.open()
    wait_head(server, number, 200)
    assert zip_files(server.api("GET", f"/download/{number}"))["out.txt"] == b"api\n"


# --------------------------------------------------------------------------- 6. partial


def test_download_partial_of_a_running_job_has_what_it_wrote(server, gates) -> None:
    gate = gates()
    job = submit(
        server,
        [("run.sh", script(f"echo so-far > partial.txt\n{gate.shell}\necho end > final.txt"))],
    )
    wait_running(server, job["id"])

    def partial() -> dict[str, bytes] | None:
        files = zip_files(server.api("GET", f"/download_partial/{job['id']}"))
        return files if files.get("partial.txt") == b"so-far\n" else None

    files = wait_until(partial, JOB_WAIT, "partial.txt in /download_partial")
    assert "final.txt" not in files and "run.sh" in files, sorted(files)
    assert head(server, job["id"]) == 202
    gate.open()
    wait_head(server, job["id"], 200)


# --------------------------------------------------------------------------- 7. terminate


def test_terminate_running_ended_and_unknown_jobs(server, gates) -> None:
    gate = gates()
    job = submit(server, [("run.sh", script(gate.shell))])
    wait_running(server, job["id"])
    resp = server.api("POST", f"/terminate/{job['id']}")
    assert_status(resp, 200)
    assert resp.json()["id"] == job["id"] and resp.json()["status"] == "Cancelled", resp.json()
    assert head(server, job["id"]) == 410

    done = submit(server, [("run.sh", HELLO)])
    wait_head(server, done["id"], 200)
    resp = server.api("POST", f"/terminate/{done['id']}")
    assert_status(resp, 200)
    assert resp.json()["status"] == "Completed", resp.json()
    assert head(server, done["id"]) == 200
    assert zip_files(server.api("GET", f"/download/{done['id']}"))["out.txt"] == b"hello\n"

    for number in ("999999999", "abc"):
        assert_error(server.api("POST", f"/terminate/{number}"), 404)


# --------------------------------------------------------------------------- 8. services


def test_default_and_undeclared_services_on_a_fresh_daemon(jobd) -> None:
    daemon = jobd.start()
    plain = submit(daemon, [("run.sh", HELLO)])
    assert plain["service"] == "default" and plain["user_id"] == 1, plain
    other = submit(daemon, [("run.sh", HELLO)], user_id="7", service="anything-goes_1")
    assert other["service"] == "anything-goes_1" and other["user_id"] == 7, other
    for job in (plain, other):
        wait_head(daemon, job["id"], 200)
