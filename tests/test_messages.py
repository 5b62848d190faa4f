"""Messages new users tripped over: a misspelt upload field, a body sent to the route that
takes the other kind, a port that is taken, a bench --tmp-dir that does not exist. Each is one
sentence that says what to do, and a refused upload keeps nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import (
    REPO_ROOT,
    assert_error,
    assert_status,
    b64,
    base_env,
    jobd_command,
    make_zip,
    script,
    unique_id,
)

pytestmark = pytest.mark.source_only

RUN_SH = script("echo ok")
GOOD_ZIP = make_zip({"run.sh": RUN_SH})
#: Incompressible, so the refused upload below streams megabytes to its staging file first.
BIG_ZIP = make_zip({"run.sh": RUN_SH, "data.bin": os.urandom(3 << 20)})
JSON_ROUTE = "/api/upload takes a JSON body"
PROCESS_TIMEOUT = 60


def _refused(server, resp: requests.Response, job_id: str | None, before: set[str]) -> str:
    """A 400 in the error shape, with nothing kept; its message."""
    error = assert_error(resp, 400)
    server.assert_nothing_written(before, job_id)
    return error["message"]


# --------------------------------------------------------------------------- unknown fields


@pytest.mark.parametrize(
    ("sent", "meant"),
    [
        ("timout", "timeout"),
        ("Timout", "timeout"),  # names match in any case; the message shows it as sent
        ("callback-url", "callback_url"),
        ("retries", "retry"),
        ("slurm_option", "slurm_options"),
    ],
)
def test_a_misspelt_upload_field_is_refused_with_did_you_mean(server, sent, meant):
    job_id = unique_id("typo")
    before = server.job_dirs()
    resp = server.upload({"run.sh": RUN_SH}, job_id=job_id, **{sent: 1})
    message = _refused(server, resp, job_id, before)
    assert f"unknown field '{sent}' in the upload" in message, message
    assert f"did you mean '{meant}'?" in message, message
    assert "jobd takes id, input, timeout" in message, message


def test_an_unknown_field_like_none_of_jobds_is_refused_with_the_list(server):
    job_id = unique_id("colour")
    before = server.job_dirs()
    resp = server.upload({"run.sh": RUN_SH}, job_id=job_id, colour="blue")
    message = _refused(server, resp, job_id, before)
    assert "unknown field 'colour'" in message and "did you mean" not in message, message
    assert "jobd takes id, input, timeout, retry, env" in message, message


def test_an_unknown_field_after_a_big_input_leaves_no_staging(server):
    """The field comes after `input`, so the zip was already streamed to disk when it is seen."""
    job_id = unique_id("late-typo")
    before = server.job_dirs()
    body = json.dumps({"id": job_id, "input": b64(BIG_ZIP), "timout": 30}).encode()
    message = _refused(server, server.post_raw(body), job_id, before)
    assert "did you mean 'timeout'?" in message, message


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(
            ("ID", "Input", "Status", "Message", "Output", "LastUpdated", "SlurmID", "Slurml"),
            id="go-spelling",
        ),
        pytest.param(
            ("id", "INPUT", "status", "MESSAGE", "output", "lastupdated", "slurmId", "SLURML"),
            id="other-cases",
        ),
    ],
)
def test_the_go_jobds_job_fields_are_still_taken_in_any_case(server, names):
    job_id = unique_id("go")
    values = (job_id, b64(GOOD_ZIP), "QUEUED", "", "", "2024-01-01T00:00:00Z", 0, False)
    resp = server.post_raw(json.dumps(dict(zip(names, values, strict=True))).encode())
    assert_status(resp, 201)
    assert resp.json()["ID"] == job_id
    assert server.wait_done(job_id)["Status"] == "SUCCESS"


def test_the_upload_schema_refuses_what_jobd_refuses(server):
    upload = server.api("GET", "/openapi.json").json()["components"]["schemas"]["Upload"]
    assert upload["additionalProperties"] is False, upload
    assert {"timeout", "Status", "LastUpdated", "Output"} <= upload["properties"].keys()


# --------------------------------------------------------------------------- wrong route


def test_a_misspelt_schedule_field_is_refused_with_did_you_mean(server):
    body = {"name": unique_id("typo").lower(), "schedul": "@daily", "input": b64(GOOD_ZIP)}
    error = assert_error(server.api("POST", "/api/schedules", json=body), 400)
    assert "unknown field 'schedul' in a schedule: did you mean 'schedule'?" in error["message"]
    named = server.api("GET", "/api/schedules").json()
    assert body["name"] not in {s["name"] for s in named}
    good = {key: value for key, value in body.items() if key != "schedul"}
    made = server.api("POST", "/api/schedules", json=good | {"schedule": "@daily"})
    assert_status(made, 201)
    patched = server.api("PATCH", f"/api/schedules/{body['name']}", json={"timezon": "UTC"})
    assert "did you mean 'timezone'?" in assert_error(patched, 400)["message"]


def test_json_sent_to_submit_names_the_json_route(server):
    before = server.job_dirs()
    resp = requests.post(f"{server.url}/submit", json={"input": b64(GOOD_ZIP)}, timeout=30)
    message = _refused(server, resp, None, before)
    assert message.startswith("/submit takes multipart/form-data"), message
    assert "use POST /api/upload" in message, message


def test_json_sent_to_upload_names_the_json_route(server):
    before = server.job_dirs()
    resp = server.api("POST", "/upload", json={"input": b64(GOOD_ZIP), "user_id": 1})
    message = _refused(server, resp, None, before)
    assert message.startswith("/upload takes multipart/form-data"), message
    assert "use POST /api/upload" in message, message


def test_a_form_sent_to_api_upload_names_the_form_routes(server):
    before = server.job_dirs()
    resp = server.api("POST", "/api/upload", files=[("run.sh", ("run.sh", RUN_SH))])
    message = _refused(server, resp, None, before)
    assert message.startswith(JSON_ROUTE), message
    assert "POST /submit" in message and "/upload with user_id" in message, message


def test_json_under_a_form_content_type_is_still_taken(server):
    """The body decides when it is JSON after all: only a form body is sent elsewhere."""
    job_id = unique_id("mislabelled")
    body = b"  \n" + json.dumps({"id": job_id, "input": b64(BIG_ZIP)}).encode()
    resp = server.post_raw(body, headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert_status(resp, 201)
    assert server.wait_done(job_id)["Status"] == "SUCCESS"


def test_a_form_still_reaches_submit(server):
    resp = requests.post(f"{server.url}/submit", files=[("run.sh", ("run.sh", RUN_SH))], timeout=30)
    assert_status(resp, 200)


# --------------------------------------------------------------------------- port in use


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command as a person runs it from a shell, without input."""
    return subprocess.run(
        argv,
        env=base_env(),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


def test_a_taken_port_says_how_to_choose_another(tmp_path: Path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", "--host", "127.0.0.1", "--port", str(port)]
        done = _run([*jobd_command(*argv), "--data-dir", str(tmp_path / "d")], tmp_path)
    assert done.returncode != 0, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0], lines
    assert "--port" in lines[0] and "JOBD_PORT" in lines[0], lines
    assert "Traceback" not in done.stderr and done.stdout == "", done


# --------------------------------------------------------------------------- bench --tmp-dir


def _bench(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, str(REPO_ROOT / "bench" / name), *args], cwd)


def _one_line_usage_error(done: subprocess.CompletedProcess[str], path: Path) -> str:
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"--tmp-dir {path}" in lines[0], lines
    return lines[0]


def test_bench_with_a_missing_tmp_dir_says_so_in_one_line(tmp_path: Path):
    missing = tmp_path / "some" / "fast" / "dir"
    line = _one_line_usage_error(
        _bench("bench.py", "--tmp-dir", str(missing), cwd=tmp_path), missing
    )
    assert "does not exist" in line, line


def test_bench_startup_with_an_uncreatable_tmp_dir_says_so_in_one_line(tmp_path: Path):
    (tmp_path / "a-file").write_text("not a folder")
    bad = tmp_path / "a-file" / "dir"
    line = _one_line_usage_error(_bench("startup.py", "--tmp-dir", str(bad), cwd=tmp_path), bad)
    assert "cannot create it" in line, line
