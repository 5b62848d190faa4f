"""A value accepted at the door never breaks something later: every value a client sends is
checked when it arrives against what will be done with it, and one that could not be used is
a 400 naming the field (a 404 for an ID that can name no job), with nothing kept. Against a
real daemon; callbacks against a loopback receiver that records the bytes it was sent."""

from __future__ import annotations

import socket
import threading

import pytest
import requests
from conftest import (
    assert_error,
    assert_status,
    output_files,
    script,
    unique_id,
    wait_until,
)

pytestmark = pytest.mark.source_only

#: More digits than Python converts to an int (4300) without being told to.
HUGE = "9" * 5000
RUN_SH = script("echo done")
SECRET = "s3cret-d00r"


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return ("--workers", "2", "--callback-allow", "127.0.0.1", "--min-free", "0")


def short_error(resp: requests.Response, status: int, field: str) -> dict[str, object]:
    """A JSON error that names `field` and does not echo a whole 5000-character value."""
    body = assert_error(resp, status)
    assert field in str(body["message"]), body
    assert len(str(body["message"])) < 400, body
    return body


def form(daemon, route: str, fields=(), files=(("file", ("run.sh", RUN_SH)),)):
    return daemon.api("POST", route, files=list(files), data=list(fields))


# --------------------------------------------------------------------------- integers


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"limit={HUGE}", "limit"),
        (f"before={HUGE}", "before"),
        (f"before={2**63}", "before"),
        ("limit=", "limit"),
        ("before=", "before"),
        ("status=", "status"),
        ("limit=1&limit=2", "limit"),
        ("before=000000000000000000000000000001", None),  # leading zeros: still 1
    ],
)
def test_list_query_numbers_are_checked_before_they_are_converted(server, query, field):
    resp = server.api("GET", f"/api/jobs?{query}")
    if field is None:
        assert_status(resp, 200)
    else:
        short_error(resp, 400, field)


@pytest.mark.parametrize(
    ("route", "query", "field"),
    [
        ("get", "wait=", "wait"),
        ("get", f"wait={HUGE}x", "wait"),
        ("get", "partial=", "partial"),
        ("get", "wait=1&wait=2", "wait"),
        ("get", "wait=inf", "wait"),
        ("get", "wait=1_0", "wait"),
        ("logs", "follow=", "follow"),
        ("logs", "stream=", "stream"),
        ("logs", "follow=1&follow=0", "follow"),
    ],
)
def test_empty_or_repeated_query_values_are_400(server, route, query, field):
    job = server.submit({"run.sh": RUN_SH})
    server.wait_done(job["ID"])
    short_error(server.api("GET", f"/api/{route}/{job['ID']}?{query}"), 400, field)


@pytest.mark.parametrize(
    ("route", "fields", "field"),
    [
        ("/upload", [("user_id", HUGE)], "user_id"),
        ("/upload", [("user_id", str(2**63))], "user_id"),
        ("/upload", [("user_id", "1"), ("retry", HUGE)], "retry"),
        ("/submit", [("retry", HUGE)], "retry"),
        ("/submit", [("retry", "0")], "retry"),
        ("/upload", [("user_id", "1"), ("limits", '{"processes": ' + HUGE + "}")], "limits"),
        ("/submit", [("limits", '{"memory": "' + HUGE + 'M"}')], "limits.memory"),
    ],
)
def test_form_numbers_of_any_length_are_400s_naming_the_field(server, route, fields, field):
    before = server.job_dirs()
    short_error(form(server, route, fields), 400, field)
    server.assert_nothing_written(before)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limits": {"memory": HUGE}}, "limits.memory"),
        ({"limits": {"memory": HUGE + "G"}}, "limits.memory"),
        ({"timeout": HUGE + "s"}, "timeout"),
        ({"retry": {"initial_interval": HUGE}}, "retry.initial_interval"),
    ],
)
def test_upload_numbers_written_as_text_of_any_length_are_400s(server, body, field):
    before = server.job_dirs()
    short_error(server.upload({"run.sh": RUN_SH}, **body), 400, field)
    server.assert_nothing_written(before)


@pytest.mark.parametrize("field", ["timeout", "retry", "user_id"])
def test_json_numbers_of_any_length_are_400s_naming_the_field(server, field):
    before = server.job_dirs()
    body = b'{"input": "", "%s": %s}' % (field.encode(), HUGE.encode())
    for path in ("/api/upload", "/api/schedules"):
        short_error(server.api("POST", path, data=body), 400, repr(field))
    server.assert_nothing_written(before)


@pytest.mark.parametrize(
    "path",
    [
        f"/download/{HUGE}",
        f"/download_partial/{HUGE}",
        f"/retrieve/{HUGE}",
        f"/retrieve_partial/{HUGE}",
        f"/api/get/{HUGE}",
    ],
)
def test_ids_of_any_length_in_paths_are_404(server, path):
    body = assert_error(server.api("GET", path), 404)
    assert len(str(body["message"])) < 400 or path.startswith("/api/"), body


@pytest.mark.parametrize("path", [f"/kill/{HUGE}", f"/terminate/{HUGE}", f"/api/cancel/{HUGE}"])
def test_ending_a_job_of_an_id_of_any_length_is_404(server, path):
    assert_error(server.api("POST", path), 404)


# --------------------------------------------------------------------------- forms


@pytest.mark.parametrize(
    ("route", "fields", "files", "words"),
    [
        ("/upload", [("user_id", "1"), ("retyr", "3")], None, ["retyr", "did you mean 'retry'"]),
        ("/submit", [("retyr", "3")], None, ["retyr", "did you mean 'retry'"]),
        ("/upload", [("user_id", "1"), ("servise", "x")], None, ["did you mean 'service'"]),
        ("/submit", [("user_id", "1")], None, ["user_id", "/submit"]),
        ("/upload", [("user_id", "1"), ("user_id", "2")], None, ["user_id", "twice"]),
        ("/upload", [("user_id", "1"), ("user_id", "1")], None, ["user_id", "twice"]),
        ("/submit", [("retry", "2"), ("retry", "3")], None, ["retry", "twice"]),
        (
            "/upload",
            [("user_id", "1")],
            [("file", ("run.sh", RUN_SH)), ("service", ("svc.txt", b"gpu"))],
            ["service", "file part"],
        ),
        (
            "/upload",
            [],
            [("file", ("run.sh", RUN_SH)), ("user_id", ("id", b"1"))],
            ["user_id", "file part"],
        ),
        (
            "/submit",
            [],
            [("run.sh", ("run.sh", RUN_SH)), ("retry", ("r.txt", b"3"))],
            ["retry", "file part"],
        ),
    ],
    ids=[
        "upload-misspelt",
        "submit-misspelt",
        "upload-misspelt-service",
        "submit-user_id",
        "upload-two-user_ids",
        "upload-same-user_id-twice",
        "submit-two-retries",
        "upload-service-as-file",
        "upload-user_id-as-file",
        "submit-retry-as-file",
    ],
)
def test_form_fields_are_taken_exactly_or_refused(server, route, fields, files, words):
    before = server.job_dirs()
    resp = form(server, route, fields, files or (("file", ("run.sh", RUN_SH)),))
    body = assert_error(resp, 400)
    for word in words:
        assert word in body["message"], body
    server.assert_nothing_written(before)


def test_a_submit_file_named_as_its_path_may_share_a_field_name(server):
    """job-orchestrator names each part by its path: a file called `limits` is a file."""
    files = [("run.sh", ("run.sh", script("cat limits"))), ("limits", ("limits", b"mine\n"))]
    job = form(server, "/submit", files=files)
    assert_status(job, 200)
    number = job.json()["id"]
    wait_until(
        lambda: (
            server.api("GET", f"/retrieve/{number}").headers.get("Content-Type")
            == "application/zip"
        ),
        30,
        "the job's result",
    )


# --------------------------------------------------------------------------- callbacks


class RawReceiver:
    """A loopback HTTP server that records each request's bytes as sent and answers 204."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        break
                    data += piece
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(rest) < length and (piece := conn.recv(65536)):
                    rest += piece
                self.requests.append(head + b"\r\n\r\n" + rest)
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_hook():
    receiver = RawReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def _auth_upload(daemon, auth: dict[str, str], url: str = "http://127.0.0.1:9/x"):
    return daemon.upload(
        {"run.sh": RUN_SH}, job_id=unique_id("hook"), callback={"url": url, "auth": auth}
    )


@pytest.mark.parametrize(
    "header",
    [
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "content-length",
        "Connection",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Upgrade",
        "Expect",
        "Proxy-Authorization",
        "Content-Type",
        "Content-Encoding",
        "X-Key:",
        "X Key",
        "",
    ],
)
def test_an_api_key_header_that_frames_or_routes_the_request_is_400(server, header):
    before = server.job_dirs()
    body = assert_error(
        _auth_upload(server, {"type": "api_key", "header": header, "key": SECRET}), 400
    )
    assert "callback.auth.header" in body["message"], body
    server.assert_nothing_written(before)


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "bearer", "token": SECRET + "\u20ac"},
        {"type": "bearer", "token": SECRET + "\u0100"},
        {"type": "bearer", "token": " " + SECRET},
        {"type": "bearer", "token": SECRET + "\x85"},
        {"type": "api_key", "header": "X-Api-Key", "key": SECRET + "\u2603"},
        {"type": "api_key", "header": "X-Api-Key", "key": SECRET + "\r\nX-Evil: 1"},
        {"type": "basic", "username": "lab", "password": SECRET + "\x7f"},
    ],
    ids=["euro", "beyond-latin1", "leading-space", "c1-control", "snowman", "crlf", "del"],
)
def test_a_secret_no_header_can_carry_is_400_and_never_echoed(server, auth):
    before = server.job_dirs()
    body = assert_error(_auth_upload(server, auth), 400)
    assert "callback.auth." in body["message"], body
    assert SECRET not in body["message"] and "position" not in body["message"], body
    server.assert_nothing_written(before)
    assert SECRET not in server.log()


def test_a_secret_half_a_surrogate_pair_is_400(server):
    """json.loads takes an escaped lone surrogate inside an object: no header can hold it."""
    for auth in (
        '{"type": "bearer", "token": "a\\ud800"}',
        '{"type": "basic", "username": "a", "password": "b\\udfff"}',
    ):
        raw = '{"input": "", "callback": {"url": "http://127.0.0.1:9/x", "auth": ' + auth + "}}"
        assert_error(server.post_raw(raw.encode()), 400)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x\r\nX-Evil: 1",
        "http://127.0.0.1:9/a b",
        "http://127.0.0.1:9/\tx",
        "http://127.0.0.1:9/\u00fcber",
        "http://127.0.0.1:9/\x00",
        "ftp://127.0.0.1/x",
        "file:///etc/passwd",
        "http:///x",
        "http://127.0.0.1:0/x",
        "http://user:pw@127.0.0.1:9/x",
        "http://" + "a" * 64 + ".example/x",
        "http://127.0.0.1:9/" + "x" * 4096,
    ],
    ids=[
        "crlf",
        "space",
        "tab",
        "non-ascii",
        "nul",
        "ftp",
        "file",
        "no-host",
        "port-0",
        "userinfo",
        "label-over-63",
        "over-4096",
    ],
)
def test_a_callback_url_that_cannot_be_sent_is_400(server, url):
    before = server.job_dirs()
    for body in ({"callback_url": url}, {"callback": {"url": url}}):
        error = assert_error(server.upload({"run.sh": RUN_SH}, **body), 400)
        assert "callback_url" in error["message"], error
    server.assert_nothing_written(before)


@pytest.mark.parametrize(
    ("auth", "sent"),
    [
        ({"type": "bearer", "token": "cl\u00e9 " + SECRET}, b"Authorization: Bearer cl\xe9 "),
        (
            {"type": "api_key", "header": "X-Api-Key", "key": "\u00e9t\u00e9"},
            b"X-Api-Key: \xe9t\xe9",
        ),
        (
            {"type": "api_key", "header": "Authorization", "key": "Token t"},
            b"Authorization: Token t",
        ),
    ],
    ids=["latin1-bearer", "latin1-api-key", "api-key-authorization"],
)
def test_every_secret_taken_arrives_as_latin1_bytes(server, raw_hook, auth, sent):
    job = _auth_upload(server, auth, raw_hook.url)
    assert_status(job, 201)
    wait_until(lambda: raw_hook.requests, 20, "the callback")
    assert sent in raw_hook.requests[0], raw_hook.requests[0][:400]
    assert raw_hook.requests[0].count(b"\r\nHost:") == 1, raw_hook.requests[0][:400]


# --------------------------------------------------------------------------- env


def test_an_env_value_holding_half_a_surrogate_pair_is_400(server):
    before = server.job_dirs()
    raw = '{"input": "", "env": {"GREETING": "hi\\ud800"}}'
    body = assert_error(server.post_raw(raw.encode()), 400)
    assert "env" in body["message"], body
    server.assert_nothing_written(before)


def test_an_env_value_of_any_text_reaches_run_sh(server):
    text = "caf\u00e9 \U0001f600 line\nnext = x"
    job = server.submit(
        {"run.sh": script('printf %s "$GREETING" > out.txt')}, env={"GREETING": text}
    )
    done = server.wait_done(job["ID"])
    assert done["Status"] == "SUCCESS", done
    assert output_files(done)["out.txt"] == text.encode(), output_files(done)


def test_every_described_query_parameter_sent_empty_is_a_400(server):
    """Driven by /openapi.json, so a parameter added later is held to it too: the description
    gives none of them an empty value, and schemathesis seldom sends one. (The schedule routes
    are left to their own tests; the status page's filters say `allowEmptyValue`.)"""
    job = server.submit({"run.sh": RUN_SH})
    server.wait_done(job["ID"])
    spec = server.api("GET", "/openapi.json").json()
    checked = []
    for path, operations in spec["paths"].items():
        if path.startswith("/api/schedules"):
            continue
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") != "query" or parameter.get("allowEmptyValue"):
                    continue  # allowed empty: a page's filter form sends its empty fields
                name = parameter["name"]
                url = path.replace("{id}", job["ID"]).replace("{number}", str(job["IntID"]))
                url = url.replace("{lease}", "1")
                resp = server.api(method.upper(), f"{url}?{name}=")
                short_error(resp, 400, name)
                checked.append(f"{path}?{name}")
    assert len(checked) >= 7, checked
