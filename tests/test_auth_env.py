"""--token / JOBD_TOKEN: every API route but /health needs it; no secret reaches run.sh."""

from __future__ import annotations

import pytest
from conftest import (
    assert_error,
    assert_status,
    b64,
    make_zip,
    output_files,
    script,
    unique_id,
)

TOKEN = "s3cret-Token_for.tests"


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return ("--token", TOKEN, "--max-upload", "10KB", "--workers", "2")


BAD_AUTH = {
    "missing": None,
    "wrong token": "Bearer not-the-token",
    "prefix of token": f"Bearer {TOKEN[:-1]}",
    "token plus more": f"Bearer {TOKEN}x",
    "basic scheme": f"Basic {TOKEN}",
    "bare token": TOKEN,
    "empty bearer": "Bearer ",
}


def _headers(auth: str | None) -> dict[str, str]:
    return {} if auth is None else {"Authorization": auth}


@pytest.mark.parametrize("auth", BAD_AUTH.values(), ids=BAD_AUTH.keys())
def test_every_api_route_needs_the_token(server, auth):
    job_id = server.submit({"run.sh": script("true")})["ID"]
    before = server.job_dirs()
    body = {"id": unique_id("noauth"), "input": b64(make_zip({"run.sh": script("true")}))}
    attempts = [
        ("POST", "/api/upload", {"json": body}),
        ("GET", f"/api/get/{job_id}", {}),
        ("GET", f"/api/get/{job_id}?wait=1", {}),
        ("GET", "/api/get/no-such-job", {}),
        ("POST", f"/api/cancel/{job_id}", {}),
        ("POST", "/api/cancel/no-such-job", {}),
    ]
    for method, path, kwargs in attempts:
        resp = server.api(method, path, token=None, headers=_headers(auth), **kwargs)
        assert_error(resp, 401)
    server.assert_nothing_written(before, body["id"])
    assert server.wait_done(job_id)["Status"] == "SUCCESS"


def test_health_needs_no_token(server):
    assert_status(server.api("GET", "/health", token=None), 200)


def test_token_is_checked_before_size_and_json(server):
    before = server.job_dirs()
    for body in (b"{" + b" " * 20_000 + b"}", b"{not json"):
        assert_error(server.post_raw(body, token=None), 401)
    server.assert_nothing_written(before)


def test_right_token_is_accepted(server):
    resp = server.upload({"run.sh": script("true")})
    assert_status(resp, 201)
    assert server.wait_done(resp.json()["ID"])["Status"] == "SUCCESS"


def test_secrets_never_reach_run_sh(jobd):
    secret = "env-secret-4f1c9e"
    daemon = jobd.start(
        env={
            "JOBD_TOKEN": secret,
            "JOBD_KILL_GRACE": "2s",
            "JOBD_WORKERS": "2",
            "JOBD_SOMETHING_ELSE": "also-private-7d2a",
        }
    )
    assert daemon.token == secret
    assert_error(daemon.get("no-such-job", token=None), 401)
    files = {"run.sh": script("env > env.txt\ntr '\\0' '\\n' < /proc/$$/environ > environ.txt")}
    job = daemon.wait_done(daemon.submit(files)["ID"])
    assert job["Status"] == "SUCCESS", job
    out = output_files(job)
    for name in ("env.txt", "environ.txt"):
        text = out[name].decode(errors="replace")
        assert secret not in text, f"the token is visible in run.sh's {name}"
        assert "also-private-7d2a" not in text
        ours = ("JOBD_JOB_ID=", "JOBD_ATTEMPT=")  # jobd sets these two for run.sh
        leaked = [
            line
            for line in text.splitlines()
            if line.startswith("JOBD_") and not line.startswith(ours)
        ]
        assert not leaked, f"the daemon's JOBD_* variables reach run.sh: {leaked}"
        assert "PATH=" in text


def test_token_flag_is_not_visible_to_run_sh(server):
    files = {"run.sh": script("tr '\\0' '\\n' < /proc/$$/environ > environ.txt")}
    job = server.wait_done(server.submit(files)["ID"])
    assert TOKEN not in output_files(job)["environ.txt"].decode(errors="replace")


def test_token_flag_beats_env(jobd):
    daemon = jobd.start("--token", "from-flag", env={"JOBD_TOKEN": "from-env"})
    assert_error(daemon.get("no-such-job", token="from-flag"), 404)
    assert_error(daemon.get("no-such-job", token="from-env"), 401)


def test_pending_status_from_env(jobd, gates):
    daemon = jobd.start(env={"JOBD_PENDING_STATUS": "202"})
    gate = gates()
    job_id = daemon.submit({"run.sh": script(gate.shell)})["ID"]
    assert_status(daemon.get(job_id), 202)
    gate.open()
    assert daemon.wait_done(job_id)["Status"] == "SUCCESS"
