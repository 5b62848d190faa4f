"""Fuzzer-found hostile inputs get a clear 4xx in the one JSON error shape, never a 500."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
import requests
from conftest import assert_error, assert_status, b64, make_zip, script, unique_id, wait_until

pytestmark = pytest.mark.source_only

RUN_SH = script("echo ok")
GOOD_ZIP = make_zip({"run.sh": RUN_SH})
TOKEN = "secret"


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return ("--workers", "4", "--kill-grace", "1s", "--callback-allow", "127.0.0.1")


# --------------------------------------------------------------------------- helpers


def _upload_body(job_id: str, **fields: object) -> dict[str, object]:
    return {"id": job_id, "input": b64(GOOD_ZIP), **fields}


def _with_raw_field(job_id: str, name: str, raw: bytes) -> bytes:
    """An otherwise good upload body with `raw` as the JSON text of field `name`."""
    body = json.dumps(_upload_body(job_id, **{name: 0})).encode()
    return body.replace(b'"%s": 0' % name.encode(), b'"%s": %s' % (name.encode(), raw))


def _reject_raw(server, body: bytes, job_id: str | None = None) -> dict:
    """POST a raw /api/upload body: a 400 in the error shape, and nothing kept."""
    before = server.job_dirs()
    error = assert_error(server.post_raw(body), 400)
    server.assert_nothing_written(before, job_id)
    return error


def _not_the_job(resp: requests.Response, job_id: str) -> None:
    """A 404 in the error shape that shows nothing of an existing job."""
    assert_error(resp, 404)
    assert job_id not in resp.text, f"{resp.request.path_url} answered with job {job_id}"


def _done_job(server, prefix: str = "job") -> dict:
    job_id = unique_id(prefix)
    server.submit({"run.sh": RUN_SH}, job_id=job_id)
    return server.wait_done(job_id)  # finished, whichever way: only its ID matters here


def _submit(server, data: bytes, content_type: str) -> requests.Response:
    return requests.post(
        f"{server.url}/submit", data=data, headers={"Content-Type": content_type}, timeout=30
    )


def _multipart(*parts: tuple[str, bytes]) -> tuple[bytes, str]:
    """A multipart body from (Content-Disposition value, content) pairs, written by hand."""
    boundary = "hostile-boundary-7f3a"
    body = b""
    for disposition, content in parts:
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        body += b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# --------------------------------------------------------------------------- 1. huge integer IDs


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/kill/42185232974282293248"),
        ("GET", "/retrieve/42185232974282293248"),
        ("GET", "/retrieve_partial/94072479451771813259902976"),
        ("GET", "/retrieve/9223372036854775808"),  # 2**63: one past SQLite's largest integer
        ("GET", "/api/get/42185232974282293248"),
        ("POST", "/api/cancel/94072479451771813259902976"),
    ],
)
def test_integer_ids_beyond_sqlite_are_404(server, method, path):
    assert_error(server.api(method, path), 404)


# --------------------------------------------------------------------------- 2. not-quite IDs


@pytest.fixture(scope="module")
def done_job(server) -> dict:
    """A finished job with an ID like the fuzzer's (q-done-...), shared by the module."""
    return _done_job(server, "q-done")


_SUPERSCRIPT = "⁰¹²³⁴⁵⁶⁷⁸⁹"


def _lookalikes(number: int) -> dict[str, str]:
    """The job's integer ID in digits that are not ASCII (Python's int() takes some)."""
    digits = [int(d) for d in str(number)]
    return {
        "superscript": "".join(_SUPERSCRIPT[d] for d in digits),
        "fullwidth": "".join(chr(0xFF10 + d) for d in digits),
        "arabic-indic": "".join(chr(0x0660 + d) for d in digits),
    }


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("GET", "/api/get/"),
        ("POST", "/api/cancel/"),
        ("GET", "/api/logs/"),
        ("GET", "/retrieve/"),
        ("GET", "/retrieve_partial/"),
        ("POST", "/kill/"),
    ],
)
def test_non_ascii_digits_name_no_job(server, done_job, method, route):
    job = done_job
    number = job["IntID"]
    assert isinstance(number, int) and number > 0, job
    assert_status(server.api("GET", f"/retrieve/{number}"), 200)  # the ASCII spelling finds it
    for text in _lookalikes(number).values():
        _not_the_job(server.api(method, route + quote(text, safe="")), job["ID"])
    # the literal spellings from the fuzzer's report, whatever job has number 1
    for encoded in ("%C2%B9", "%EF%BC%91"):
        assert_error(server.api(method, route + encoded), 404)
    assert server.job(job["ID"])["Status"] == job["Status"]  # not cancelled through an alias


@pytest.mark.parametrize(
    ("method", "route", "key", "suffix"),
    [
        ("GET", "/api/get/", "ID", "%FF"),
        ("GET", "/api/get/", "ID", "%C3"),  # a UTF-8 sequence cut short
        ("GET", "/api/get/", "ID", "%80%80"),  # continuation bytes with no lead byte
        ("POST", "/api/cancel/", "ID", "%FF"),
        ("GET", "/api/logs/", "ID", "%FF"),
        ("GET", "/api/get/", "IntID", "%FF"),
        ("GET", "/retrieve/", "IntID", "%FF"),
        ("GET", "/retrieve_partial/", "IntID", "%FF"),
        ("POST", "/kill/", "IntID", "%FF"),
    ],
)
def test_a_path_that_is_not_utf8_names_no_job(server, done_job, method, route, key, suffix):
    resp = server.api(method, f"{route}{done_job[key]}{suffix}")
    _not_the_job(resp, done_job["ID"])
    assert resp.headers["Content-Type"] == "application/json"
    assert server.job(done_job["ID"])["Status"] == done_job["Status"]


@pytest.mark.parametrize("path", ["/api/get/%EF%BC%91", "/api/get/caf%C3%A9", "/retrieve/%C2%B9"])
def test_a_valid_utf8_path_is_not_called_invalid(server, path):
    """A 404 for a well-encoded path that names no job must not blame its encoding."""
    error = assert_error(server.api("GET", path), 404)
    assert "not valid UTF-8" not in error["message"], error


# --------------------------------------------------------------------------- 3. JSON bodies


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda i: _with_raw_field(i, "x", b"[" * 30000 + b"]" * 30000), id="arrays"),
        pytest.param(lambda i: _with_raw_field(i, "x", b"[" * 30000), id="arrays-unclosed"),
        pytest.param(
            lambda i: _with_raw_field(i, "x", b'{"a":' * 30000 + b"1" + b"}" * 30000),
            id="objects",
        ),
        pytest.param(
            lambda i: _with_raw_field(i, "timeout", b"[" * 30000 + b"]" * 30000), id="in-timeout"
        ),
        pytest.param(lambda i: b"[" * 30000 + b"]" * 30000, id="whole-body"),
    ],
)
def test_json_nested_30000_deep_is_400(server, build):
    job_id = unique_id("deep")
    _reject_raw(server, build(job_id), job_id)


@pytest.mark.parametrize("field", ["timeout", "x"])
def test_a_5000_digit_number_is_400(server, field):
    job_id = unique_id("digits")
    error = _reject_raw(server, _with_raw_field(job_id, field, b"9" * 5000), job_id)
    assert "4300 digits" in error["message"] or "timeout" in error["message"], error


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"10000000000", id="1e10-seconds"),
        pytest.param(b'"99999999h"', id="99999999h"),
        pytest.param(str(366 * 86400 + 1).encode(), id="a-year-and-a-second"),
        # numbers too large for a float read as infinity: still over a year (README: a 400)
        pytest.param(b"1e999", id="1e999"),
        pytest.param(b"1" * 5000 + b".5", id="5000-digit-decimal"),
    ],
)
def test_a_timeout_over_a_year_is_refused_at_the_door(server, raw):
    job_id = unique_id("timeout")
    error = _reject_raw(server, _with_raw_field(job_id, "timeout", raw), job_id)
    assert "timeout" in error["message"], error


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("x", list(range(100_000)), id="array-of-100000-numbers"),
        pytest.param("x", [0] * 100_000, id="array-of-100000-zeros"),
        pytest.param("timeout", [1] * 100_000, id="array-in-timeout"),
        pytest.param("slurm_options", [1] * 100_000, id="array-in-slurm-options"),
        pytest.param("x", {str(n): n for n in range(20_000)}, id="object-of-20000-keys"),
        pytest.param("x", "y" * 70_000, id="string-of-70000-chars"),
    ],
)
def test_the_64kib_field_limit_holds_for_every_kind_of_value(server, field, value):
    job_id = unique_id("big")
    body = json.dumps(_upload_body(job_id, **{field: value})).encode()
    error = _reject_raw(server, body, job_id)
    assert "64 KiB" in error["message"], error


def test_an_escaped_emoji_is_utf8(server):
    """json.dumps writes an emoji as a surrogate pair; that is valid JSON and valid UTF-8."""
    job_id = unique_id("emoji")
    body = json.dumps(_upload_body(job_id, env={"NOTE": "smile \U0001f600 please"}))
    assert "\\ud83d\\ude00" in body
    resp = server.post_raw(body.encode())
    assert_status(resp, 201)
    assert resp.json()["ID"] == job_id
    assert server.wait_done(job_id)["ID"] == job_id


def test_an_emoji_in_the_id_is_refused_as_an_id_not_as_utf8(server):
    body = json.dumps({"id": "job-\U0001f600", "input": b64(GOOD_ZIP)}).encode()
    error = _reject_raw(server, body)
    assert "UTF-8" not in error["message"] and "id" in error["message"], error


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"id": "a", 1: 2}', id="number-as-name"),
        pytest.param(b'{"id": "a", "x": [1, \xff\xfe]}', id="raw-bytes-in-array"),
        pytest.param(b'{"id": "a", "x": tru\xff}', id="raw-bytes-in-literal"),
        pytest.param(b'{"id": "a", "x": \xff}', id="raw-byte-as-value"),
        pytest.param(b'{"id": "\xff\xfe"}', id="string-not-utf8"),
        pytest.param(b"{\xff\xfe: 1}", id="raw-bytes-as-name"),
        pytest.param(b'{"id": "a", "x": "\\ud83d"}', id="half-a-surrogate-pair"),
        pytest.param(b'{"id": "a", "x": "\\ud83d\\u0041"}', id="bad-low-surrogate"),
        pytest.param(b'{"id": "a", "x": "\\uZZZZ"}', id="bad-u-escape"),
        pytest.param(b'{"id": "a", "x": -}', id="lone-minus"),
        pytest.param(b"\xef\xbb\xbf\xff{}", id="garbage-after-bom"),
    ],
)
def test_json_errors_hold_no_bytes_repr(server, body):
    error = _reject_raw(server, body)
    message = error["message"]
    assert "b'" not in message and 'b"' not in message, message
    assert "\\xff" not in message, message


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"id": "a", "x": [1, \xff\xfe]}', id="in-array"),
        pytest.param(b'{"id": "a", "x": tru\xff}', id="in-literal"),
        pytest.param(b'{"id": "a", "x": {"k": \xc3}}', id="in-object"),
    ],
)
def test_raw_non_utf8_bytes_are_not_called_a_long_number(server, body):
    """Bytes that are not UTF-8 in a value: the message must not blame a number's digits."""
    error = _reject_raw(server, body)
    assert "digits" not in error["message"], error


# --------------------------------------------------------------------------- 4. callback_url


class _Receiver:
    """A loopback HTTP server that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                calls.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    hook = _Receiver()
    try:
        yield hook
    finally:
        hook.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:abc/x",
        "http://[",
        "http://[::1/x",
        "http://127.0.0.1:99999/x",
        "http://127.0.0.1:-1/x",
        "http://",
    ],
)
def test_malformed_callback_urls_are_400(server, url):
    job_id = unique_id("cburl")
    body = json.dumps(_upload_body(job_id, callback_url=url)).encode()
    error = _reject_raw(server, body, job_id)
    assert "callback_url" in error["message"], error


def test_a_good_callback_arrives_after_refused_ones(server, receiver):
    for url in ("http://127.0.0.1:abc/x", "http://["):
        assert_error(server.upload({"run.sh": RUN_SH}, callback_url=url), 400)
    job_id = unique_id("cbok")
    server.submit({"run.sh": RUN_SH}, job_id=job_id, callback_url=receiver.url)
    wait_until(lambda: any(c.get("ID") == job_id for c in receiver.calls), 20, "the callback")
    call = next(c for c in receiver.calls if c.get("ID") == job_id)
    assert call["Status"] in ("SUCCESS", "FAILED"), call


# --------------------------------------------------------------------------- 5. zips


def _zip_one(name: str, data: bytes, compression: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("run.sh", (2024, 1, 1, 0, 0, 0)), RUN_SH)
        info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
        info.compress_type = compression
        archive.writestr(info, data)
    return buffer.getvalue()


def _utf8_flag_with_bad_name() -> bytes:
    """An entry flagged UTF-8 (0x800) whose name bytes are not UTF-8, in both headers."""
    good = "r\u00e9.txt"
    data = _zip_one(good, b"x", zipfile.ZIP_DEFLATED)
    assert zipfile.ZipFile(io.BytesIO(data)).getinfo(good).flag_bits & 0x800
    encoded = good.encode()
    assert data.count(encoded) == 2  # local header and central directory
    return data.replace(encoded, b"r\xff\xfe.txt")


def _corrupt(compression: int, start: int) -> bytes:
    """A zip whose second entry's compressed data is overwritten with 0xFF from `start` on."""
    payload = b"".join(b"line %d of some compressible text\n" % i for i in range(2000))
    data = bytearray(_zip_one("data.txt", payload, compression))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("data.txt")
    offset = info.header_offset
    name_len = int.from_bytes(data[offset + 26 : offset + 28], "little")
    extra_len = int.from_bytes(data[offset + 28 : offset + 30], "little")
    begin = offset + 30 + name_len + extra_len + start
    assert begin + 32 < offset + 30 + name_len + extra_len + info.compress_size
    data[begin : begin + 32] = b"\xff" * 32
    return bytes(data)


@pytest.mark.parametrize(
    "archive",
    [
        pytest.param(_utf8_flag_with_bad_name(), id="utf8-flag-bad-name"),
        pytest.param(_corrupt(zipfile.ZIP_DEFLATED, 0), id="deflate-bad-block-type"),
        pytest.param(_corrupt(zipfile.ZIP_DEFLATED, 40), id="deflate-corrupt-middle"),
        pytest.param(_corrupt(zipfile.ZIP_LZMA, 0), id="lzma-corrupt-properties"),
        pytest.param(_corrupt(zipfile.ZIP_LZMA, 40), id="lzma-corrupt-middle"),
        pytest.param(_corrupt(zipfile.ZIP_BZIP2, 0), id="bzip2-corrupt-header"),
        pytest.param(_corrupt(zipfile.ZIP_BZIP2, 40), id="bzip2-corrupt-middle"),
    ],
)
def test_broken_zips_are_400_and_keep_nothing(server, archive):
    job_id = unique_id("zip")
    before = server.job_dirs()
    resp = server.api("POST", "/api/upload", json={"id": job_id, "input": b64(archive)})
    error = assert_error(resp, 400)
    server.assert_nothing_written(before, job_id)
    assert "None" not in error["message"], error
    assert str(server.data_dir) not in error["message"], error


# --------------------------------------------------------------------------- 6. /submit


def _files(*parts: tuple[str, str, bytes]) -> list[tuple[str, tuple[str, bytes]]]:
    return [(name, (filename, content)) for name, filename, content in parts]


RUN_PART = ("file", "run.sh", RUN_SH)


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([RUN_PART, ("a", "a", b"x"), ("a/b", "b", b"y")], id="a-then-a/b"),
        pytest.param([RUN_PART, ("a/b", "b", b"y"), ("a", "a", b"x")], id="a/b-then-a"),
        pytest.param([RUN_PART, ("run.sh/x", "x", b"y")], id="run.sh-then-run.sh/x"),
        pytest.param([("run.sh/x", "x", b"y"), RUN_PART], id="run.sh/x-then-run.sh"),
        pytest.param([RUN_PART, ("file", "run.sh", b"again")], id="run.sh-twice"),
    ],
)
def test_submit_parts_that_clash_are_400(server, parts):
    before = server.job_dirs()
    resp = requests.post(f"{server.url}/submit", files=_files(*parts), timeout=30)
    error = assert_error(resp, 400)
    assert str(server.data_dir) not in error["message"], error
    server.assert_nothing_written(before)


def test_submit_part_without_a_name_is_400(server):
    body, content_type = _multipart(
        ('form-data; filename="run.sh"', RUN_SH),
        ('form-data; name="data"; filename="in.txt"', b"x"),
    )
    before = server.job_dirs()
    assert_error(_submit(server, body, content_type), 400)
    server.assert_nothing_written(before)


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([("file", ".run.sh", RUN_SH)], id="file-.run.sh"),
        pytest.param([("file", "..run.sh", RUN_SH)], id="file-..run.sh"),
        pytest.param([(".run.sh", ".run.sh", RUN_SH)], id="named-.run.sh"),
        pytest.param([("..run.sh", "..run.sh", RUN_SH)], id="named-..run.sh"),
        pytest.param([("file", "run.sh.", RUN_SH)], id="file-run.sh."),
    ],
)
def test_submit_without_run_sh_says_so(server, parts):
    before = server.job_dirs()
    resp = requests.post(f"{server.url}/submit", files=_files(*parts), timeout=30)
    error = assert_error(resp, 400)
    assert "run.sh" in error["message"], error
    assert str(server.data_dir) not in error["message"], error
    assert str(server.data_dir.resolve()) not in error["message"], error
    server.assert_nothing_written(before)


def test_submit_binary_form_field_is_400_not_bad_multipart(server):
    before = server.job_dirs()
    resp = requests.post(
        f"{server.url}/submit",
        data={"note": b"\xff\xfe\x00binary"},
        files=_files(RUN_PART),
        timeout=30,
    )
    error = assert_error(resp, 400)
    assert "not valid multipart" not in error["message"], error
    assert "UTF-8" in error["message"], error
    server.assert_nothing_written(before)


# --------------------------------------------------------------------------- 7. Authorization


def test_bearer_scheme_is_case_insensitive(jobd):
    daemon = jobd.start("--token", TOKEN, "--workers", "2")
    job_id = unique_id("auth")
    daemon.submit({"run.sh": RUN_SH}, job_id=job_id)
    daemon.wait_done(job_id)
    for scheme in ("bearer", "BEARER", "bEaReR", "Bearer"):
        resp = daemon.api(
            "GET", f"/api/get/{job_id}", token=None, headers={"Authorization": f"{scheme} {TOKEN}"}
        )
        assert_status(resp, 200)
        assert resp.json()["ID"] == job_id
    for auth in ("bearer wrong", "bearer SECRET", f"basic {TOKEN}", TOKEN, "bearer"):
        resp = daemon.api("GET", f"/api/get/{job_id}", token=None, headers={"Authorization": auth})
        assert_error(resp, 401)
        assert job_id not in resp.text
    assert_error(daemon.api("GET", f"/api/get/{job_id}", token=None), 401)


# --------------------------------------------------------------------------- 8. log injection

FORGED = "2026-11-25 01:00:00,000 INFO jobd: job demo-1: SUCCESS"


def test_a_newline_in_a_path_cannot_forge_a_log_line(server):
    path = "/api/get/x%0A" + quote(FORGED, safe=":,")
    assert "%0A2026-11-25%2001:00:00,000%20INFO%20jobd:%20job%20demo-1:%20SUCCESS" in path
    assert_error(server.api("GET", path), 404)
    wait_until(lambda: "x\\x0a2026-11-25" in server.log(), 10, "the request in the log")
    lines = server.log().splitlines()
    forged = [line for line in lines if line.startswith("2026-11-25 01:00:00,000 INFO jobd: job")]
    assert not forged, forged


@pytest.mark.parametrize(
    ("method", "route"),
    [("GET", "/api/get/"), ("POST", "/api/cancel/"), ("GET", "/api/logs/")],
)
def test_control_bytes_in_a_path_stay_escaped_in_the_log(server, method, route):
    marker = unique_id("nul")
    path = f"{route}{marker}%00%0D%1Bend"
    assert_error(server.api(method, path), 404)
    wait_until(lambda: f"{marker}\\x00\\x0d\\x1bend" in server.log(), 10, "the request logged")
    text = server.log()
    assert "\x00" not in text and "\x1b" not in text, "a raw control byte reached the log"
    assert "\r" not in text.replace("\r\n", "\n"), "a raw carriage return reached the log"
