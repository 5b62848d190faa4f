"""`POST /api/retry/<id>`: a finished job runs again as a new job, from the input jobd kept
and with the same settings; the first job is left as it was. A job still pending, an unknown
one and one whose files are gone are refused with the code that says why."""

from __future__ import annotations

import time

import pytest
from conftest import assert_error, assert_job_shape, output_files, script, unique_id

pytestmark = pytest.mark.source_only

RUN_SH = script(
    """
    echo "run of $JOBD_JOB_ID with $GREETING"
    cat input.txt
    echo made > made.txt
    exit 3
    """
)


def test_a_retry_is_a_new_job_with_the_same_input_and_settings(server):
    first = server.submit(
        {"run.sh": RUN_SH, "input.txt": b"the input\n"},
        id=unique_id("first"),
        timeout=30,
        env={"GREETING": "hello"},
        retry={"max_attempts": 2, "initial_interval": 0},
    )
    done = server.wait_done(first["ID"])
    assert (done["Status"], done["ExitCode"], done["Attempt"]) == ("FAILED", 3, 2), done

    resp = server.api("POST", f"/api/retry/{first['ID']}")
    assert resp.status_code == 201, resp.text
    again = resp.json()
    assert_job_shape(again)
    assert again["ID"] != first["ID"] and again["IntID"] > done["IntID"]
    assert (again["Attempt"], again["MaxAttempts"], again["Timeout"]) == (1, 2, 30), again
    assert again["NextAttemptAt"] is None

    ended = server.wait_done(again["ID"])
    assert (ended["Status"], ended["ExitCode"], ended["Attempt"]) == ("FAILED", 3, 2), ended
    files = output_files(ended)
    assert files["jobd.stdout"] == f"run of {again['ID']} with hello\nthe input\n".encode()
    assert files["made.txt"] == b"made\n"
    assert files["input.txt"] == b"the input\n"
    # the first job is untouched: its own result, its own ID
    assert output_files(server.wait_done(first["ID"]))["jobd.stdout"].startswith(
        f"run of {first['ID']} ".encode()
    )


def test_a_pending_job_an_unknown_one_and_a_bad_id_are_refused(server):
    running = server.submit({"run.sh": script("sleep 30")}, id=unique_id("slow"))
    try:
        body = assert_error(server.api("POST", f"/api/retry/{running['ID']}"), 409)
        assert "still" in body["message"]
        assert_error(server.api("POST", "/api/retry/no-such-job"), 404)
        assert_error(server.api("POST", "/api/retry/99999999999"), 404)
        ids = [job["ID"] for job in server.api("GET", "/api/jobs?limit=1000").json()]
        assert ids.count(running["ID"]) == 1  # nothing was created
    finally:
        server.cancel(running["ID"])


def test_a_queued_retry_says_when_its_next_attempt_starts(server):
    job = server.submit(
        {"run.sh": script("exit 1")},
        id=unique_id("backoff"),
        retry={"max_attempts": 2, "initial_interval": "30s"},
    )
    deadline = time.monotonic() + 20
    seen = server.job(job["ID"])
    while seen["Attempt"] < 2 and time.monotonic() < deadline:
        seen = server.get(job["ID"], wait=1).json()
    try:
        assert seen["Status"] == "QUEUED" and seen["NextAttemptAt"], seen
    finally:
        server.cancel(job["ID"])
