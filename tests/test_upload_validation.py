"""Every bad upload gets its status and a sentence, in the documented order, and writes nothing."""

from __future__ import annotations

import json
import os

import pytest
from conftest import assert_error, assert_status, b64, make_zip, script, unique_id

MAX_UPLOAD = 64_000  # 64KB: MB/KB are powers of ten
MAX_FILES = 20
MAX_UNPACKED = 256_000
RUN_SH = script("echo ok")
GOOD_ZIP = make_zip({"run.sh": RUN_SH})


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return (
        "--max-upload",
        "64KB",
        "--max-files",
        str(MAX_FILES),
        "--max-unpacked",
        "256KB",
        "--workers",
        "2",
    )


def _reject(server, body: bytes, status: int, job_id: str | None = None) -> dict:
    before = server.job_dirs()
    body_json = assert_error(server.post_raw(body), status)
    server.assert_nothing_written(before, job_id)
    return body_json


def _body(job_id: str | None = None, input_: object = None, **fields: object) -> bytes:
    body: dict[str, object] = {} if job_id is None else {"id": job_id}
    if input_ is not None:
        body["input"] = input_
    body.update(fields)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="malformed-json"),
        pytest.param(b"", id="empty-body"),
        pytest.param(b"[]", id="json-array"),
        pytest.param(b'"just a string"', id="json-string"),
        pytest.param(b'{"input": "' + b64(GOOD_ZIP).encode() + b'"', id="truncated-json"),
    ],
)
def test_malformed_json_is_400(server, body):
    _reject(server, body, 400)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="missing-input"),
        pytest.param({"input": None}, id="null-input"),
        pytest.param({"input": 5}, id="number-input"),
        pytest.param({"input": ""}, id="empty-input"),
        pytest.param({"input": "@@@@not*base64!"}, id="bad-base64-chars"),
        pytest.param({"input": "abcde"}, id="bad-base64-length"),
        pytest.param({"input": b64(b"this is not a zip file at all")}, id="not-a-zip"),
        pytest.param({"input": b64(GOOD_ZIP[: len(GOOD_ZIP) // 2])}, id="truncated-zip"),
        pytest.param({"input": b64(make_zip({"other.sh": RUN_SH}))}, id="no-run-sh"),
        pytest.param({"input": b64(make_zip({"sub/run.sh": RUN_SH}))}, id="run-sh-in-subdir"),
        pytest.param({"input": b64(make_zip({"run.sh/": b"", "run.sh/x": b""}))}, id="run-sh-dir"),
        pytest.param({"input": b64(make_zip({}))}, id="empty-zip"),
        pytest.param({"input": b64(GOOD_ZIP), "timeout": "soon"}, id="timeout-not-number"),
        pytest.param({"input": b64(GOOD_ZIP), "timeout": -5}, id="timeout-negative"),
    ],
)
def test_bad_fields_are_400(server, fields):
    job_id = unique_id("bad")
    _reject(server, json.dumps({"id": job_id, **fields}).encode(), 400, job_id)


@pytest.mark.parametrize(
    "job_id",
    [
        "-leading-dash",
        ".hidden",
        "_under",
        "a/b",
        "../etc",
        "a b",
        "a" * 129,
        "na\u00efve",
        "a\nb",
        "a\\b",
        "x:y",
        42,
    ],
)
def test_malformed_id_is_400(server, job_id):
    _reject(server, _body(job_id, b64(GOOD_ZIP)), 400)


@pytest.mark.parametrize("job_id", ["a", "A.b_c-9", "0" + "x" * 127])
def test_well_formed_ids_are_accepted(server, job_id):
    resp = server.upload({"run.sh": RUN_SH}, job_id=job_id)
    assert_status(resp, 201)
    assert resp.json()["ID"] == job_id
    assert server.wait_done(job_id)["Status"] == "SUCCESS"


def test_duplicate_id_is_409_and_checked_before_zip_contents(server):
    job_id = unique_id("dup")
    server.submit({"run.sh": RUN_SH}, job_id=job_id)
    before = server.job_dirs()
    duplicates = {
        "valid zip": b64(GOOD_ZIP),
        "zip without run.sh": b64(make_zip({"x.txt": b"x"})),
        "unsafe zip": b64(make_zip({"run.sh": RUN_SH, "../evil": b"x"})),
        "too many files": b64(make_zip({f"f{i}": b"" for i in range(MAX_FILES + 5)})),
    }
    for what, encoded in duplicates.items():
        assert_error(server.post_raw(_body(job_id, encoded)), 409)
        assert server.job_dirs() == before, what
        assert server.staging() == [], what
    assert server.wait_done(job_id)["Status"] == "SUCCESS"


def test_fields_are_checked_before_duplicate_id(server):
    job_id = unique_id("dupfields")
    server.submit({"run.sh": RUN_SH}, job_id=job_id)
    before = server.job_dirs()
    for body in (_body(job_id), _body(job_id, b64(GOOD_ZIP), timeout="soon")):
        assert_error(server.post_raw(body), 400)
    assert server.job_dirs() == before
    assert server.staging() == []


def test_body_over_max_upload_is_413(server):
    job_id = unique_id("big")
    encoded = b64(make_zip({"run.sh": RUN_SH, "noise.bin": os.urandom(MAX_UPLOAD)}))
    _reject(server, _body(job_id, encoded), 413, job_id)


def test_size_is_checked_before_json(server):
    _reject(server, b"{" + b" " * (MAX_UPLOAD + 1000) + b"not json", 413)


def test_chunked_body_over_max_upload_is_413(server):
    job_id = unique_id("chunked")
    payload = _body(job_id, b64(make_zip({"run.sh": RUN_SH, "noise.bin": os.urandom(MAX_UPLOAD)})))

    def chunks():
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    before = server.job_dirs()
    resp = server.post_raw(chunks())
    assert_error(resp, 413)
    server.assert_nothing_written(before, job_id)


def test_too_many_entries_is_413(server):
    job_id = unique_id("files")
    files = {"run.sh": RUN_SH, **{f"f{i:03}.txt": b"x" for i in range(MAX_FILES + 10)}}
    _reject(server, _body(job_id, b64(make_zip(files))), 413, job_id)


def test_compressible_entry_over_max_unpacked_is_413(server):
    job_id = unique_id("unpacked")
    files = {"run.sh": RUN_SH, "zeros.bin": bytes(4 * MAX_UNPACKED)}
    encoded = b64(make_zip(files))
    assert len(encoded) < MAX_UPLOAD / 4
    _reject(server, _body(job_id, encoded), 413, job_id)


def test_total_unpacked_size_counts_every_entry(server):
    job_id = unique_id("total")
    part = MAX_UNPACKED // 3 + 1000
    files = {"run.sh": RUN_SH, **{f"part{i}.bin": bytes(part) for i in range(3)}}
    _reject(server, _body(job_id, b64(make_zip(files))), 413, job_id)


def test_within_limits_is_accepted(server):
    files = {"run.sh": RUN_SH, **{f"f{i}.bin": bytes(10_000) for i in range(MAX_FILES // 2)}}
    job = server.wait_done(server.submit(files)["ID"])
    assert job["Status"] == "SUCCESS", job
