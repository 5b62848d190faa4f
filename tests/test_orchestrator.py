"""job-orchestrator's client protocol (/submit, /retrieve, /retrieve_partial, /kill, /load, /)
on the same jobs as /api/*: a job submitted one way is seen the other way."""

from __future__ import annotations

import io
import zipfile

import pytest
import requests
from conftest import assert_error, output_files, proc_gone, read_pids, script, wait_until

PAYLOAD_KEYS = {"id", "input", "status", "loc", "pid", "killed"}


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return ("--workers", "2", "--kill-grace", "1s")


def submit(server, files: list[tuple[str, str, bytes]]) -> requests.Response:
    """Parts as (part name, file name, content), as job-orchestrator or curl -F send them."""
    parts = [(name, (filename, content)) for name, filename, content in files]
    return requests.post(f"{server.url}/submit", files=parts, timeout=30)


def payload_of(resp: requests.Response) -> dict:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body.keys() >= PAYLOAD_KEYS, body
    assert isinstance(body["id"], int) and body["input"] == {}, body
    return body


def retrieve_zip(server, number: int) -> zipfile.ZipFile:
    def finished() -> requests.Response | None:
        resp = requests.get(f"{server.url}/retrieve/{number}", timeout=30)
        return resp if resp.headers["Content-Type"] == "application/zip" else None

    resp = wait_until(finished, 30, f"job {number} to be retrievable as a zip")
    return zipfile.ZipFile(io.BytesIO(resp.content))


def test_submit_nested_files_then_retrieve_both_ways(server) -> None:
    run_sh = script("cat data/sub/in.txt | tr a-z A-Z > out.txt")
    first = submit(
        server,
        [("file", "run.sh", run_sh), ("data/sub/in.txt", "in.txt", b"nested\n")],
    )
    payload = payload_of(first)
    assert payload["status"] == "Prepared" and payload["killed"] is False

    archive = retrieve_zip(server, payload["id"])
    assert archive.read("out.txt") == b"NESTED\n"
    assert archive.read("data/sub/in.txt") == b"nested\n"
    assert "jobd.stdout" in archive.namelist()

    job = server.wait_done(str(payload["id"]))  # /api/get takes the integer too
    assert job["Status"] == "SUCCESS" and job["IntID"] == payload["id"]
    assert output_files(job)["out.txt"] == b"NESTED\n"
    again = server.wait_done(job["ID"])
    assert output_files(again) == output_files(job)


def test_a_job_from_api_upload_is_seen_through_retrieve(server) -> None:
    job = server.submit({"run.sh": script("exit 2")})
    done = server.wait_done(job["ID"])
    payload = payload_of(requests.get(f"{server.url}/retrieve/{done['IntID']}", timeout=10))
    assert payload["status"] == "Failed"


def test_retrieve_while_running_and_partial(server, gates) -> None:
    gate = gates()
    body = f"echo early > early.txt\n{gate.shell}\necho late > late.txt"
    number = payload_of(submit(server, [("file", "run.sh", script(body))]))["id"]
    wait_until(
        lambda: (
            payload_of(requests.get(f"{server.url}/retrieve/{number}", timeout=10))["status"]
            == "Running"
        ),
        20,
        "Running",
    )

    def early() -> zipfile.ZipFile | None:
        resp = requests.get(f"{server.url}/retrieve_partial/{number}", timeout=10)
        assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/zip"
        archive = zipfile.ZipFile(io.BytesIO(resp.content))
        return archive if "early.txt" in archive.namelist() else None

    archive = wait_until(early, 20, "early.txt in the partial zip")
    assert "late.txt" not in archive.namelist()
    gate.open()
    assert retrieve_zip(server, number).read("late.txt") == b"late\n"


def test_kill_ends_the_process_tree(server, shared) -> None:
    pids = shared / "pids"
    body = f"sleep 1000 &\necho $! >> {pids}\necho $$ >> {pids}\nwait"
    number = payload_of(submit(server, [("file", "run.sh", script(body))]))["id"]
    wait_until(lambda: pids.exists() and len(read_pids(pids)) == 2, 20, "the job's pids")
    killed = payload_of(requests.post(f"{server.url}/kill/{number}", timeout=30))
    assert killed["status"] == "Killed" and killed["killed"] is True
    assert all(proc_gone(pid) for pid in read_pids(pids))
    again = payload_of(requests.post(f"{server.url}/kill/{number}", timeout=30))
    assert again["status"] == "Killed"  # an ended job: 200, nothing changes
    assert requests.post(f"{server.url}/kill/999999", timeout=10).status_code == 404


def test_bad_submits_are_400_and_keep_nothing(server) -> None:
    before = server.job_dirs()
    run_sh = ("file", "run.sh", script("true"))
    for parts in (
        [run_sh, ("../escape.txt", "escape.txt", b"x")],
        [run_sh, ("file", "/etc/passwd", b"x")],
        [run_sh, ("data/../../x", "x", b"x")],
        [("file", "input.txt", b"no run.sh")],
    ):
        assert_error(submit(server, parts), 400)
    garbage = requests.post(
        f"{server.url}/submit",
        data=b"not multipart",
        headers={"Content-Type": "multipart/form-data; boundary=zz"},
        timeout=10,
    )
    assert_error(garbage, 400)
    assert server.job_dirs() == before
    assert server.staging() == []


def test_unknown_numbers_load_and_ping(server) -> None:
    assert requests.get(f"{server.url}/retrieve/999999", timeout=10).status_code == 404
    assert requests.get(f"{server.url}/retrieve_partial/999999", timeout=10).status_code == 404
    load = requests.get(f"{server.url}/load", timeout=10).json()
    assert isinstance(load, float | int) and 0 <= load <= 100
    assert requests.get(server.url + "/", timeout=10).status_code == 200
    assert requests.get(server.url + "/health", timeout=10).json()["status"] == "healthy"
