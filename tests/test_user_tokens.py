"""--user-tokens: a user's token reaches only that user's jobs and schedules; another user's
job is a 404 exactly like an unknown one, the operator's --token sees everything."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import (
    Gate,
    assert_error,
    assert_status,
    b64,
    base_env,
    free_port,
    jobd_command,
    make_zip,
    script,
    unique_id,
    wait_until,
)

OPERATOR = "operator-Token.7c1e"
ALICE, ALICE_ID = "alice-token-5d0b9a", 11
BOB, BOB_ID = "bob-token-e83f42", 12
UNKNOWN_NUMBER = 987654321
HELLO = script("echo hello > out.txt")
TOKENS_FILE = f"""# users of this daemon
{ALICE_ID} {ALICE}

{BOB_ID}   {BOB}
"""


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("user-tokens")


@pytest.fixture(scope="module")
def server_flags(module_dir: Path) -> tuple[str, ...]:
    tokens = module_dir / "tokens"
    tokens.write_text(TOKENS_FILE)
    return (
        "--workers",
        "4",
        "--kill-grace",
        "1s",
        "--token",
        OPERATOR,
        "--user-tokens",
        str(tokens),
    )


@pytest.fixture(scope="module")
def gate(module_dir: Path):
    held = Gate(module_dir / "gate")
    try:
        yield held
    finally:
        held.open()


def as_user(server, token: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return server.api(method, path, token=token, **kwargs)


def upload_files(server, token: str, **fields: str) -> requests.Response:
    return as_user(
        server, token, "POST", "/upload", files=[("file", ("run.sh", HELLO))], data=fields
    )


def api_upload(server, token: str, files: dict[str, bytes], **fields: Any) -> dict[str, Any]:
    body = {"id": unique_id("ut"), "input": b64(make_zip(files)), **fields}
    resp = as_user(server, token, "POST", "/api/upload", json=body)
    assert_status(resp, 201)
    return resp.json()


@pytest.fixture(scope="module")
def alices(server, gate: Gate) -> dict[str, dict[str, Any]]:
    """Alice's jobs: one finished (sent with /api/upload), one held RUNNING at the gate."""
    done = api_upload(server, ALICE, {"run.sh": HELLO})
    running = api_upload(server, ALICE, {"run.sh": script(gate.shell)})
    assert server.wait_done(done["ID"])["Status"] == "SUCCESS"
    server.wait_status(running["ID"], "RUNNING")
    return {"done": done, "running": running}


def same_as_unknown(server, method: str, template: str, job: dict[str, Any]) -> None:
    """Bob asking for Alice's job gets exactly what he gets for a job that does not exist."""
    ref = job["IntID"] if "{n}" in template else job["ID"]
    unknown = UNKNOWN_NUMBER if "{n}" in template else f"no-such-{UNKNOWN_NUMBER}"
    theirs = as_user(server, BOB, method, template.format(n=ref, id=ref))
    missing = as_user(server, BOB, method, template.format(n=unknown, id=unknown))
    assert theirs.status_code == missing.status_code == 404, (template, theirs.text)
    if method == "HEAD":
        assert theirs.content == missing.content == b""
        return
    assert_error(theirs, 404)
    assert theirs.json() == {
        key: value.replace(str(unknown), str(ref)) if isinstance(value, str) else value
        for key, value in missing.json().items()
    }, template


READS = [
    ("GET", "/api/get/{id}"),
    ("GET", "/api/get/{n}"),
    ("GET", "/api/logs/{id}"),
    ("GET", "/download/{n}"),
    ("HEAD", "/download/{n}"),
    ("GET", "/download_partial/{n}"),
    ("GET", "/retrieve/{n}"),
    ("GET", "/retrieve_partial/{n}"),
]
CHANGES = [
    ("POST", "/api/cancel/{id}"),
    ("POST", "/terminate/{n}"),
    ("POST", "/kill/{n}"),
]


@pytest.mark.parametrize(("method", "template"), READS, ids=[f"{m} {t}" for m, t in READS])
def test_another_users_job_is_not_found_but_its_owner_and_the_operator_see_it(
    server, alices, method, template
):
    job = alices["done"]
    same_as_unknown(server, method, template, job)
    path = template.format(n=job["IntID"], id=job["ID"])
    for token in (ALICE, OPERATOR):
        assert_status(as_user(server, token, method, path), 200)


def test_another_user_cannot_end_a_job_and_its_owner_can(server, alices):
    job = alices["running"]
    for method, template in CHANGES:
        same_as_unknown(server, method, template, job)
    assert server.job(job["ID"])["Status"] == "RUNNING"
    same_as_unknown(server, "POST", "/api/retry/{id}", alices["done"])
    again = as_user(server, ALICE, "POST", f"/api/retry/{alices['done']['ID']}")
    assert_status(again, 201)
    assert again.json()["UserID"] == alices["done"]["UserID"]
    cancelled = as_user(server, ALICE, "POST", f"/api/cancel/{job['ID']}")
    assert_status(cancelled, 200)
    assert cancelled.json()["Status"] == "CANCELLED"
    assert_status(as_user(server, OPERATOR, "POST", f"/kill/{job['IntID']}"), 200)
    assert_status(as_user(server, ALICE, "POST", f"/terminate/{job['IntID']}"), 200)


def test_lists_hold_only_the_users_own_jobs(server, alices):
    bobs = api_upload(server, BOB, {"run.sh": HELLO})

    def listed(token: str, query: str = "") -> set[str]:
        resp = as_user(server, token, "GET", f"/api/jobs?limit=1000{query}")
        assert_status(resp, 200)
        return {job["ID"] for job in resp.json()}

    assert bobs["ID"] in listed(BOB) and not {j["ID"] for j in alices.values()} & listed(BOB)
    assert alices["done"]["ID"] in listed(ALICE) and bobs["ID"] not in listed(ALICE)
    assert alices["done"]["ID"] not in listed(BOB, "&status=SUCCESS")
    assert {alices["done"]["ID"], bobs["ID"]} <= listed(OPERATOR)
    everyone = as_user(server, ALICE, "GET", "/api/jobs?limit=1000").json()
    assert {job["UserID"] for job in everyone} == {ALICE_ID}

    page = {"Accept": "text/html"}
    bob_page = as_user(server, BOB, "GET", "/", headers=page)
    assert_status(bob_page, 200)
    assert bobs["ID"] in bob_page.text and alices["done"]["ID"] not in bob_page.text
    assert alices["done"]["ID"] in as_user(server, OPERATOR, "GET", "/", headers=page).text


def test_the_status_page_signs_a_user_in_to_their_own_jobs(server, alices):
    session = requests.Session()
    signed = session.post(server.url + "/", data={"token": BOB}, allow_redirects=False, timeout=10)
    assert_status(signed, 303)
    assert BOB not in signed.headers["Set-Cookie"]
    page = session.get(server.url + "/", headers={"Accept": "text/html"}, timeout=10)
    assert_status(page, 200)
    assert alices["done"]["ID"] not in page.text
    assert_error(session.get(f"{server.url}/api/get/{alices['done']['ID']}", timeout=10), 404)


def test_upload_is_the_tokens_users_and_no_one_elses(server):
    before = server.job_dirs()
    refused = upload_files(server, ALICE, user_id=str(BOB_ID))
    body = assert_error(refused, 403)
    assert str(BOB_ID) in body["message"] and ALICE not in refused.text
    server.assert_nothing_written(before)

    for fields in ({}, {"user_id": str(ALICE_ID)}):
        made = upload_files(server, ALICE, **fields)
        assert_status(made, 201)
        assert made.json()["user_id"] == ALICE_ID
        number = made.json()["id"]
        assert_error(as_user(server, BOB, "GET", f"/download/{number}"), 404)
        wait_until(
            lambda n=number: as_user(server, ALICE, "HEAD", f"/download/{n}").status_code == 200,
            20,
            f"job {number} to finish",
        )
    # the operator sends for anyone, and must say who
    assert_status(upload_files(server, OPERATOR, user_id=str(BOB_ID)), 201)
    assert_error(upload_files(server, OPERATOR), 400)


def test_jobs_sent_by_the_other_routes_are_the_users_too(server):
    job = api_upload(server, BOB, {"run.sh": HELLO})
    assert job["UserID"] == BOB_ID
    submitted = as_user(server, BOB, "POST", "/submit", files=[("file", ("run.sh", HELLO))])
    assert_status(submitted, 200)
    number = submitted.json()["id"]
    assert as_user(server, BOB, "GET", f"/api/get/{number}").json()["UserID"] == BOB_ID
    assert_error(as_user(server, ALICE, "GET", f"/api/get/{number}"), 404)
    assert_error(as_user(server, ALICE, "GET", f"/api/get/{job['ID']}"), 404)


def test_a_schedule_and_its_runs_are_its_users(server):
    name = f"nightly-{unique_id('s')[2:]}"
    body = {"name": name, "schedule": "@daily", "input": b64(make_zip({"run.sh": HELLO}))}
    assert_status(as_user(server, ALICE, "POST", "/api/schedules", json=body), 201)
    run = as_user(server, ALICE, "POST", f"/api/schedules/{name}/trigger")
    assert_status(run, 200)
    assert run.json()["run"]["UserID"] == ALICE_ID
    run_id = run.json()["run"]["ID"]

    paths = [
        ("GET", "/api/schedules/{}"),
        ("PATCH", "/api/schedules/{}"),
        ("POST", "/api/schedules/{}/trigger"),
        ("POST", "/api/schedules/{}/disable"),
        ("GET", "/api/schedules/{}/runs"),
        ("DELETE", "/api/schedules/{}"),
    ]
    for method, path in paths:
        extra = {"json": {"enabled": False}} if method == "PATCH" else {}
        theirs = as_user(server, BOB, method, path.format(name), **extra)
        missing = as_user(server, BOB, method, path.format("no-such-one"), **extra)
        assert_error(theirs, 404)
        assert theirs.json()["message"] == missing.json()["message"].replace("no-such-one", name)
    assert_error(as_user(server, BOB, "GET", f"/api/get/{run_id}"), 404)
    listed = as_user(server, BOB, "GET", "/api/schedules").json()
    assert name not in {schedule["name"] for schedule in listed}

    runs = as_user(server, ALICE, "GET", f"/api/schedules/{name}/runs")
    assert [job["ID"] for job in runs.json()] == [run_id]
    assert_status(as_user(server, OPERATOR, "GET", f"/api/schedules/{name}"), 200)
    assert_status(as_user(server, ALICE, "DELETE", f"/api/schedules/{name}"), 204)


def test_tokens_that_name_no_one_are_refused(server):
    for token in ("not-a-token", ALICE + "x", ALICE[:-1], None):
        assert_error(server.api("GET", "/api/jobs", token=token), 401)
    assert_error(server.api("GET", "/api/jobs", headers={"Authorization": ALICE}, token=None), 401)
    lower_scheme = {"Authorization": f"bearer {ALICE}"}
    assert_status(server.api("GET", "/api/jobs", headers=lower_scheme, token=None), 200)
    assert_status(server.api("GET", "/health", token=None), 200)


def test_metrics_are_the_operators_and_no_token_is_shown(server, alices):
    assert_error(as_user(server, ALICE, "GET", "/metrics"), 403)
    metrics = as_user(server, OPERATOR, "GET", "/metrics")
    assert_status(metrics, 200)
    services = as_user(server, ALICE, "GET", "/api/services").json()
    assert {user["user_id"] for s in services for user in s["users"]} <= {ALICE_ID}
    seen = [metrics.text, as_user(server, ALICE, "GET", "/openapi.json").text]
    # the access line of the last request is written after its answer: wait for it
    wait_until(lambda: "GET /openapi.json" in server.log(), 10, "the access log line")
    for text in (*seen, server.log()):
        for token in (ALICE, BOB, OPERATOR):
            assert token not in text


def test_user_tokens_without_an_operator_token_leave_nothing_open(jobd, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{ALICE_ID} {ALICE}\n")
    daemon = jobd.start("--workers", "1", env={"JOBD_USER_TOKENS": str(tokens)})
    for path in ("/api/jobs", "/", "/metrics", "/openapi.json", "/load"):
        assert_error(daemon.api("GET", path, token=None), 401)
    assert_status(daemon.api("GET", "/health", token=None), 200)
    assert_status(daemon.api("GET", "/api/jobs", token=ALICE), 200)
    assert_error(daemon.api("GET", "/metrics", token=ALICE), 403)


BAD_FILES = {
    "three fields": ("1 a-token extra\n", 1, "two fields"),
    "one field": ("# ok\n\nlonely\n", 3, "two fields"),
    "not a number": ("1 first\nalice second\n", 2, "whole number"),
    "negative": ("-3 first\n", 1, "whole number"),
    "repeated token": ("1 same-token\n2 other\n3 same-token\n", 3, "line 1"),
    "the operator's": (f"1 {OPERATOR}\n", 1, "operator"),
}


@pytest.mark.parametrize(("text", "line", "says"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_tokens_file_stops_the_start_with_one_line(tmp_path, text, line, says):
    tokens = tmp_path / "tokens"
    tokens.write_text(text)
    result = _serve(tmp_path, "--token", OPERATOR, "--user-tokens", str(tokens))
    _one_line_naming(result, str(tokens))
    assert re.search(rf"\bline {line}\b", result.stderr) and says in result.stderr, result.stderr
    assert "same-token" not in result.stderr and OPERATOR not in result.stderr


def test_an_unreadable_tokens_file_stops_the_start_with_one_line(tmp_path):
    missing = tmp_path / "no-such-file"
    _one_line_naming(_serve(tmp_path, "--user-tokens", str(missing)), str(missing))


def _serve(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    args = ["serve", "--host", "127.0.0.1", "--port", str(free_port())]
    args += ["--data-dir", str(tmp_path / "never"), *flags]
    return subprocess.run(
        jobd_command(*args),
        cwd=tmp_path,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _one_line_naming(result: subprocess.CompletedProcess[str], path: str) -> None:
    assert result.returncode != 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert path in lines[0], lines[0]
    assert not (Path(path).parent / "never").exists()
