"""Ocypod's HTTP queue API inside jobd: its quickstart as written, every route with its codes
and bodies, settings shown as Ocypod shows them, `?fields=`, tags, /info, the token, and
400s for bad names, durations, fields and types that store nothing."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
from conftest import assert_error, assert_status, unique_id

pytestmark = pytest.mark.source_only

JOB_KEYS = frozenset(
    {
        "id",
        "queue",
        "status",
        "tags",
        "created_at",
        "started_at",
        "ended_at",
        "last_heartbeat",
        "input",
        "output",
        "timeout",
        "heartbeat_timeout",
        "expires_after",
        "retries",
        "retries_attempted",
        "retry_delays",
        "ended",
    }
)
STATUSES = ("queued", "running", "failed", "completed", "cancelled", "timed_out")
DEFAULTS = {
    "timeout": "5m",
    "heartbeat_timeout": "0s",
    "expires_after": "5m",
    "retries": 0,
    "retry_delays": [],
}
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
NO_SUCH_JOB = 987654321
JSON = {"Content-Type": "application/json"}


# -- helpers ---------------------------------------------------------------------------------


def instant(text: str | None) -> float:
    """Seconds since the epoch of an RFC 3339 time in UTC ("...Z")."""
    match = RFC3339_Z.match(text or "")
    assert match, f"not an RFC 3339 time ending in Z: {text!r}"
    whole = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return whole.timestamp() + float(match.group(1) or 0)


def assert_location(resp: requests.Response, daemon, path: str) -> None:
    assert resp.headers.get("Location") in (path, daemon.url + path), dict(resp.headers)


def assert_empty(resp: requests.Response) -> None:
    assert resp.content == b"", f"a {resp.status_code} with a body: {resp.text[:300]!r}"


def assert_json_int(resp: requests.Response) -> int:
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    value = resp.json()
    assert isinstance(value, int) and not isinstance(value, bool), value
    return value


def new_queue(daemon, **settings: Any) -> str:
    name = unique_id("q")
    resp = daemon.api("PUT", f"/queue/{name}", json=settings)
    assert_status(resp, 201)
    return name


def post_job(daemon, queue: str, **fields: Any) -> int:
    resp = daemon.api("POST", f"/queue/{queue}/job", json=fields)
    assert_status(resp, 201)
    job_id = assert_json_int(resp)
    assert_location(resp, daemon, f"/job/{job_id}")
    return job_id


def dequeue(daemon, queue: str) -> dict[str, Any] | None:
    resp = daemon.api("GET", f"/queue/{queue}/job")
    assert_status(resp, 200, 204)
    if resp.status_code == 204:
        assert_empty(resp)
        return None
    return resp.json()


def start(daemon, queue: str, job_id: int) -> None:
    """Dequeue the next job of `queue`, which must be `job_id`."""
    got = dequeue(daemon, queue)
    assert got is not None and got["id"] == job_id, got


def get_job(daemon, job_id: int) -> dict[str, Any]:
    resp = daemon.api("GET", f"/job/{job_id}")
    assert_status(resp, 200)
    return resp.json()


def patch(daemon, job_id: int, **body: Any) -> requests.Response:
    return daemon.api("PATCH", f"/job/{job_id}", json=body)


def settings(daemon, queue: str) -> dict[str, Any]:
    resp = daemon.api("GET", f"/queue/{queue}")
    assert_status(resp, 200)
    return resp.json()


def size(daemon, queue: str) -> int:
    resp = daemon.api("GET", f"/queue/{queue}/size")
    assert_status(resp, 200)
    return assert_json_int(resp)


def queue_names(daemon) -> list[str]:
    resp = daemon.api("GET", "/queue")
    assert_status(resp, 200)
    return resp.json()


def job_ids(daemon, queue: str) -> dict[str, list[int]]:
    resp = daemon.api("GET", f"/queue/{queue}/job_ids")
    assert_status(resp, 200)
    return {status: sorted(ids) for status, ids in resp.json().items()}


def tagged(daemon, tag: str) -> list[int]:
    resp = daemon.api("GET", f"/tag/{tag}")
    assert_status(resp, 200)
    return resp.json()


# -- the quickstart ----------------------------------------------------------------------------


def test_quickstart_gives_ocypods_answers(server):
    health = server.api("GET", "/health")
    assert_status(health, 200)
    assert health.json()["status"] == "healthy", health.json()["problems"]

    created = server.api("PUT", "/queue/demo", json={"timeout": "10m"})
    assert_status(created, 201)
    assert_location(created, server, "/queue/demo")
    assert settings(server, "demo") == {
        "timeout": "10m",
        "heartbeat_timeout": "0s",
        "expires_after": "5m",
        "retries": 0,
        "retry_delays": [],
    }

    posted = server.api("POST", "/queue/demo/job", json={"input": [1, 2, 3]})
    assert_status(posted, 201)
    job_id = assert_json_int(posted)
    assert_location(posted, server, f"/job/{job_id}")

    status = server.api("GET", f"/job/{job_id}/status")
    assert_status(status, 200)
    assert status.json() == "queued"

    job = get_job(server, job_id)
    assert set(job) == JOB_KEYS, sorted(job)
    assert job["id"] == job_id
    assert job["queue"] == "demo"
    assert job["status"] == "queued"
    assert job["tags"] in (None, [])
    assert RFC3339_Z.match(job["created_at"]), job
    assert job["started_at"] is None and job["ended_at"] is None, job
    assert job["last_heartbeat"] is None, job
    assert job["input"] == [1, 2, 3]
    assert job["output"] is None
    assert job["timeout"] == "10m"
    assert job["heartbeat_timeout"] == "0s"
    assert job["expires_after"] == "5m"
    assert job["retries"] == 0 and job["retries_attempted"] == 0
    assert job["retry_delays"] in (None, [])
    assert job["ended"] is False

    assert dequeue(server, "demo") == {"id": job_id, "input": [1, 2, 3]}

    done = patch(server, job_id, status="completed", output=[2, 4, 6])
    assert_status(done, 204)
    assert_empty(done)

    fields = server.api("GET", f"/job/{job_id}?fields=status,ended_at,output")
    assert_status(fields, 200)
    body = fields.json()
    assert set(body) == {"status", "ended_at", "output"}, body
    assert body["status"] == "completed"
    assert RFC3339_Z.match(body["ended_at"] or ""), body
    assert body["output"] == [2, 4, 6]


# -- queues ------------------------------------------------------------------------------------


def test_queue_list_is_sorted_and_holds_each_queue_once(server):
    stem = unique_id("q")
    names = [f"{stem}-b", f"{stem}-a", f"{stem}.c", f"Q{stem}", f"{stem}_9"]
    for name in names:
        assert_status(server.api("PUT", f"/queue/{name}", json={}), 201)
    assert_status(server.api("PUT", f"/queue/{names[0]}", json={}), 204)
    listed = queue_names(server)
    assert isinstance(listed, list) and all(isinstance(n, str) for n in listed), listed
    assert listed == sorted(listed), listed
    for name in names:
        assert listed.count(name) == 1, (name, listed)


def test_put_creates_with_201_then_updates_with_204(server):
    name = unique_id("q")
    first = server.api("PUT", f"/queue/{name}", json={"timeout": "30s"})
    assert_status(first, 201)
    assert_location(first, server, f"/queue/{name}")
    assert settings(server, name) == DEFAULTS | {"timeout": "30s"}

    again = server.api("PUT", f"/queue/{name}", json={"timeout": "10m"})
    assert_status(again, 204)
    assert_empty(again)
    assert settings(server, name)["timeout"] == "10m"
    assert queue_names(server).count(name) == 1


def test_put_replaces_every_setting_a_field_left_out_takes_its_default(server):
    full = {
        "timeout": "10m",
        "heartbeat_timeout": "30s",
        "expires_after": "1h 15m 5s",
        "retries": 3,
        "retry_delays": ["30s", "10m"],
    }
    name = new_queue(server, **full)
    assert settings(server, name) == full

    assert_status(server.api("PUT", f"/queue/{name}", json={"retries": 1}), 204)
    assert settings(server, name) == DEFAULTS | {"retries": 1}

    assert_status(server.api("PUT", f"/queue/{name}", json={}), 204)
    assert settings(server, name) == DEFAULTS


def test_empty_settings_give_ocypods_defaults(server):
    assert settings(server, new_queue(server)) == DEFAULTS


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("30s", "30s"),
        ("10m", "10m"),
        ("600s", "10m"),
        ("300s", "5m"),
        ("1h 15m 5s", "1h 15m 5s"),
        ("1h15m5s", "1h 15m 5s"),
        ("0s", "0s"),
    ],
)
def test_durations_are_shown_as_ocypod_shows_them(server, given, shown):
    name = new_queue(
        server, timeout=given, heartbeat_timeout=given, expires_after=given, retry_delays=[given]
    )
    assert settings(server, name) == {
        "timeout": shown,
        "heartbeat_timeout": shown,
        "expires_after": shown,
        "retries": 0,
        "retry_delays": [shown],
    }
    job = get_job(server, post_job(server, name))
    assert (job["timeout"], job["heartbeat_timeout"], job["expires_after"]) == (shown,) * 3
    assert job["retry_delays"] == [shown]


def test_ocypods_compound_durations_are_taken(server):
    name = new_queue(server, timeout="1w2d7h", expires_after="1h 15m 5s")
    shown = settings(server, name)
    assert isinstance(shown["timeout"], str) and shown["timeout"] not in ("0s", "5m"), shown
    assert shown["expires_after"] == "1h 15m 5s"


def test_delete_queue_is_204_then_404(server):
    name = new_queue(server)
    deleted = server.api("DELETE", f"/queue/{name}")
    assert_status(deleted, 204)
    assert_empty(deleted)
    assert name not in queue_names(server)
    assert_error(server.api("GET", f"/queue/{name}"), 404)
    assert_error(server.api("DELETE", f"/queue/{name}"), 404)
    assert_status(server.api("PUT", f"/queue/{name}", json={}), 201)  # the name is free again


def test_deleting_a_queue_deletes_its_queued_jobs_and_their_tags(server):
    name = new_queue(server)
    tag = unique_id("tag")
    queued = [post_job(server, name, tags=[tag]) for _ in range(2)]
    assert sorted(tagged(server, tag)) == sorted(queued)
    assert_status(server.api("DELETE", f"/queue/{name}"), 204)
    for job_id in queued:
        assert_error(server.api("GET", f"/job/{job_id}"), 404)
    assert tagged(server, tag) == []
    assert_status(server.api("PUT", f"/queue/{name}", json={}), 201)
    assert size(server, name) == 0


def test_size_counts_queued_jobs_only(server):
    name = new_queue(server)
    assert size(server, name) == 0
    ids = [post_job(server, name) for _ in range(3)]
    assert size(server, name) == 3
    start(server, name, ids[0])
    assert size(server, name) == 2
    assert_status(patch(server, ids[0], status="completed"), 204)
    assert_status(server.api("DELETE", f"/job/{ids[1]}"), 204)
    assert size(server, name) == 1


def test_job_ids_lists_every_status(server):
    name = new_queue(server)
    other = new_queue(server)
    post_job(server, other)  # another queue's job is not listed
    ids = {status: post_job(server, name) for status in ("running", "completed", "failed")}
    ids["cancelled"] = post_job(server, name)
    ids["queued"] = post_job(server, name)
    for status in ("running", "completed", "failed"):
        start(server, name, ids[status])
    assert_status(patch(server, ids["completed"], status="completed"), 204)
    assert_status(patch(server, ids["failed"], status="failed"), 204)
    assert_status(patch(server, ids["cancelled"], status="cancelled"), 204)

    resp = server.api("GET", f"/queue/{name}/job_ids")
    assert_status(resp, 200)
    body = resp.json()
    assert set(body) == set(STATUSES), body
    assert {status: sorted(v) for status, v in body.items()} == {
        "queued": [ids["queued"]],
        "running": [ids["running"]],
        "failed": [ids["failed"]],
        "completed": [ids["completed"]],
        "cancelled": [ids["cancelled"]],
        "timed_out": [],
    }
    assert job_ids(server, new_queue(server)) == {status: [] for status in STATUSES}


def test_dequeue_hands_out_id_and_input_and_starts_the_job(server):
    name = new_queue(server)
    job_id = post_job(server, name, input={"some_key": [1, 2, 3]})
    resp = server.api("GET", f"/queue/{name}/job")
    assert_status(resp, 200)
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    assert resp.json() == {"id": job_id, "input": {"some_key": [1, 2, 3]}}
    job = get_job(server, job_id)
    assert job["status"] == "running"
    assert RFC3339_Z.match(job["started_at"] or ""), job
    assert job["ended_at"] is None and job["ended"] is False, job


def test_dequeue_from_an_empty_queue_is_204_with_no_body(server):
    name = new_queue(server)
    empty = server.api("GET", f"/queue/{name}/job")
    assert_status(empty, 204)
    assert_empty(empty)
    job_id = post_job(server, name)
    assert dequeue(server, name) == {"id": job_id, "input": None}
    assert dequeue(server, name) is None


def test_unknown_queue_is_404_on_every_route(server):
    name = unique_id("q")
    for method, path, body in [
        ("GET", f"/queue/{name}", None),
        ("DELETE", f"/queue/{name}", None),
        ("GET", f"/queue/{name}/size", None),
        ("GET", f"/queue/{name}/job_ids", None),
        ("GET", f"/queue/{name}/job", None),
        ("POST", f"/queue/{name}/job", {"input": 1}),
    ]:
        assert_error(server.api(method, path, json=body), 404)
    assert name not in queue_names(server)


@pytest.mark.parametrize("name", ["a%20b", "x:y", "n%C3%A2me", "a'b", "a+b"])
def test_bad_queue_names_are_400_and_create_nothing(server, name):
    before = queue_names(server)
    assert_error(server.api("PUT", f"/queue/{name}", json={}), 400)
    for method, path, body in [
        ("GET", f"/queue/{name}", None),
        ("DELETE", f"/queue/{name}", None),
        ("GET", f"/queue/{name}/size", None),
        ("GET", f"/queue/{name}/job_ids", None),
        ("GET", f"/queue/{name}/job", None),
        ("POST", f"/queue/{name}/job", {}),
    ]:
        assert_error(server.api(method, path, json=body), 400)
    assert queue_names(server) == before


BAD_SETTINGS = [
    pytest.param({"timeout": "ten minutes"}, id="duration-words"),
    pytest.param({"timeout": 5}, id="duration-number"),
    pytest.param({"heartbeat_timeout": "-1s"}, id="duration-negative"),
    pytest.param({"expires_after": ""}, id="duration-empty"),
    pytest.param({"timeot": "1m"}, id="unknown-field"),
    pytest.param({"retries": -1}, id="retries-negative"),
    pytest.param({"retries": "3"}, id="retries-string"),
    pytest.param({"retries": 1.5}, id="retries-float"),
    pytest.param({"retries": True}, id="retries-bool"),
    pytest.param({"retry_delays": "1s"}, id="delays-not-list"),
    pytest.param({"retry_delays": ["1s", "soon"]}, id="delays-bad-item"),
    pytest.param({"retry_delays": [1]}, id="delays-number"),
    pytest.param(["timeout", "1m"], id="not-an-object"),
    pytest.param(b"not json", id="not-json"),
    pytest.param(b'{"timeout": "1m"', id="cut-json"),
]


def send_settings(server, name: str, body: Any) -> requests.Response:
    if isinstance(body, bytes):
        return server.api("PUT", f"/queue/{name}", data=body, headers=JSON)
    return server.api("PUT", f"/queue/{name}", json=body)


@pytest.mark.parametrize("body", BAD_SETTINGS)
def test_bad_settings_are_400_and_create_no_queue(server, body):
    before = queue_names(server)
    name = unique_id("q")
    assert_error(send_settings(server, name, body), 400)
    assert queue_names(server) == before
    assert_error(server.api("GET", f"/queue/{name}"), 404)


@pytest.mark.parametrize("body", BAD_SETTINGS)
def test_bad_settings_are_400_and_change_no_queue(server, body):
    kept = {
        "timeout": "10m",
        "heartbeat_timeout": "30s",
        "expires_after": "0s",
        "retries": 2,
        "retry_delays": ["30s"],
    }
    name = new_queue(server, **kept)
    assert_error(send_settings(server, name, body), 400)
    assert settings(server, name) == kept


# -- jobs --------------------------------------------------------------------------------------


def test_post_job_gives_a_new_increasing_id_and_its_location(server):
    name = new_queue(server)
    resp = server.api("POST", f"/queue/{name}/job", json={})
    assert_status(resp, 201)
    first = assert_json_int(resp)
    assert_location(resp, server, f"/job/{first}")
    second = post_job(server, name, input="x")
    third = post_job(server, new_queue(server), input=None)
    assert first < second < third, (first, second, third)
    assert get_job(server, first)["input"] is None
    assert get_job(server, second)["input"] == "x"


def test_job_object_has_every_key_with_its_type(server):
    name = new_queue(server, timeout="10m", retries=2, retry_delays=["30s"])
    job_id = post_job(server, name, input={"k": [1, None, "s"]}, tags=["a", "b"])
    job = get_job(server, job_id)
    assert set(job) == JOB_KEYS, sorted(job)
    assert job["id"] == job_id and job["queue"] == name
    assert job["status"] == "queued" and job["ended"] is False
    assert job["tags"] == ["a", "b"]
    assert job["input"] == {"k": [1, None, "s"]} and job["output"] is None
    assert RFC3339_Z.match(job["created_at"]), job
    assert job["started_at"] is job["ended_at"] is job["last_heartbeat"] is None, job
    assert job["timeout"] == "10m" and job["heartbeat_timeout"] == "0s"
    assert job["expires_after"] == "5m"
    assert job["retries"] == 2 and job["retries_attempted"] == 0
    assert job["retry_delays"] == ["30s"]


def test_a_job_takes_its_queues_settings_unless_it_sets_its_own(server):
    name = new_queue(
        server,
        timeout="10m",
        heartbeat_timeout="30s",
        expires_after="1h 15m 5s",
        retries=2,
        retry_delays=["30s", "10m"],
    )
    inherited = get_job(server, post_job(server, name))
    assert {k: inherited[k] for k in DEFAULTS} == {
        "timeout": "10m",
        "heartbeat_timeout": "30s",
        "expires_after": "1h 15m 5s",
        "retries": 2,
        "retry_delays": ["30s", "10m"],
    }
    own = {
        "timeout": "30s",
        "heartbeat_timeout": "0s",
        "expires_after": "10m",
        "retries": 0,
        "retry_delays": ["5m"],
    }
    job = get_job(server, post_job(server, name, **own))
    assert {k: job[k] for k in DEFAULTS} == own
    # a later change to the queue leaves its jobs as they were made
    assert_status(server.api("PUT", f"/queue/{name}", json={"timeout": "30s"}), 204)
    assert get_job(server, inherited["id"])["timeout"] == "10m"


BAD_JOBS = [
    pytest.param({"tags": "x"}, id="tags-string"),
    pytest.param({"tags": [1]}, id="tags-numbers"),
    pytest.param({"tags": ["ok", None]}, id="tags-null-item"),
    pytest.param({"timeout": "ten minutes"}, id="duration-words"),
    pytest.param({"heartbeat_timeout": 5}, id="duration-number"),
    pytest.param({"expires_after": "-1s"}, id="duration-negative"),
    pytest.param({"retries": -1}, id="retries-negative"),
    pytest.param({"retries": "3"}, id="retries-string"),
    pytest.param({"retries": True}, id="retries-bool"),
    pytest.param({"retry_delays": ["1s", "later"]}, id="delays-bad-item"),
    pytest.param({"retry_delays": "1s"}, id="delays-not-list"),
    pytest.param({"inputt": 1}, id="unknown-field"),
    pytest.param([1, 2], id="not-an-object"),
    pytest.param(b"input=1", id="not-json"),
]


@pytest.mark.parametrize("body", BAD_JOBS)
def test_bad_job_bodies_are_400_and_store_nothing(server, body):
    name = new_queue(server)
    post_job(server, name)
    tag = unique_id("tag")
    before = job_ids(server, name)
    if isinstance(body, bytes):
        resp = server.api("POST", f"/queue/{name}/job", data=body, headers=JSON)
    else:
        if isinstance(body, dict) and "tags" not in body:
            body = {"tags": [tag], "input": [1], **body}
        resp = server.api("POST", f"/queue/{name}/job", json=body)
    assert_error(resp, 400)
    assert size(server, name) == 1
    assert job_ids(server, name) == before
    assert tagged(server, tag) == []


def test_fields_gives_exactly_the_keys_asked_for(server):
    name = new_queue(server)
    job_id = post_job(server, name, input=[1], tags=["t"])
    for asked in (["id"], ["status", "ended"], ["ended"], ["input", "tags", "retries"]):
        resp = server.api("GET", f"/job/{job_id}?fields={','.join(asked)}")
        assert_status(resp, 200)
        assert set(resp.json()) == set(asked), (asked, resp.json())
    every = server.api("GET", f"/job/{job_id}?fields={','.join(sorted(JOB_KEYS))}")
    assert_status(every, 200)
    assert every.json() == get_job(server, job_id)
    resp = server.api("GET", f"/job/{job_id}?fields=id,queue,ended")
    assert resp.json() == {"id": job_id, "queue": name, "ended": False}


@pytest.mark.parametrize("fields", ["nope", "id,nope", "id,,status", "ID"])
def test_an_unknown_field_is_400(server, fields):
    job_id = post_job(server, new_queue(server))
    assert_error(server.api("GET", f"/job/{job_id}?fields={fields}"), 400)


def test_status_route_gives_the_status_as_a_json_string(server):
    name = new_queue(server)
    job_id = post_job(server, name)
    seen = []
    for step in (None, "start", "cancel"):
        if step == "start":
            start(server, name, job_id)
        elif step == "cancel":
            assert_status(patch(server, job_id, status="cancelled"), 204)
        resp = server.api("GET", f"/job/{job_id}/status")
        assert_status(resp, 200)
        seen.append(resp.json())
    assert seen == ["queued", "running", "cancelled"]


def test_unknown_job_is_404_on_every_route(server):
    gone = post_job(server, new_queue(server))
    assert_status(server.api("DELETE", f"/job/{gone}"), 204)
    for job_id in (gone, NO_SUCH_JOB):
        for method, path, body in [
            ("GET", f"/job/{job_id}", None),
            ("GET", f"/job/{job_id}?fields=id", None),
            ("GET", f"/job/{job_id}/status", None),
            ("PATCH", f"/job/{job_id}", {"status": "completed"}),
            ("DELETE", f"/job/{job_id}", None),
            ("PUT", f"/job/{job_id}/heartbeat", None),
            ("GET", f"/job/{job_id}/output", None),
            ("PUT", f"/job/{job_id}/output", [1]),
        ]:
            assert_error(server.api(method, path, json=body), 404)
    for path in ("/job/abc", "/job/-1", "/job/1.5/status"):
        assert_error(server.api("GET", path), 400, 404)


# -- PATCH -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_patch_ends_a_running_job(server, status):
    name = new_queue(server)
    job_id = post_job(server, name)
    start(server, name, job_id)
    resp = patch(server, job_id, status=status, output={"result": 321})
    assert_status(resp, 204)
    assert_empty(resp)
    job = get_job(server, job_id)
    assert job["status"] == status
    assert job["ended"] is True  # failed with no retries left is ended
    assert RFC3339_Z.match(job["ended_at"] or ""), job
    assert job["output"] == {"result": 321}
    assert size(server, name) == 0


def test_patch_with_output_only_keeps_the_status(server):
    name = new_queue(server)
    job_id = post_job(server, name)
    start(server, name, job_id)
    assert_status(patch(server, job_id, output={"progress": 50}), 204)
    assert_status(patch(server, job_id), 204)  # {}: nothing to change
    job = get_job(server, job_id)
    assert job["status"] == "running" and job["output"] == {"progress": 50}
    assert job["ended_at"] is None


def test_cancelling_a_queued_job_takes_it_off_the_queue(server):
    name = new_queue(server)
    job_id = post_job(server, name)
    assert_status(patch(server, job_id, status="cancelled"), 204)
    job = get_job(server, job_id)
    assert job["status"] == "cancelled" and job["ended"] is True
    assert size(server, name) == 0
    assert dequeue(server, name) is None


@pytest.mark.parametrize(
    ("state", "body"),
    [
        pytest.param("queued", {"status": "completed"}, id="complete-queued"),
        pytest.param("queued", {"status": "failed"}, id="fail-queued"),
        pytest.param("queued", {"output": [1]}, id="output-queued"),
        pytest.param("queued", {"status": "cancelled", "output": [1]}, id="cancel+output-queued"),
        pytest.param("completed", {"status": "failed"}, id="fail-completed"),
        pytest.param("completed", {"status": "cancelled"}, id="cancel-completed"),
        pytest.param("completed", {"output": [1]}, id="output-completed"),
        pytest.param("cancelled", {"status": "completed"}, id="complete-cancelled"),
        pytest.param("failed", {"status": "completed"}, id="complete-failed"),
        pytest.param("failed", {"output": [1]}, id="output-failed"),
    ],
)
def test_patch_is_409_when_the_state_does_not_allow_it_and_changes_nothing(server, state, body):
    name = new_queue(server)
    job_id = post_job(server, name)
    if state != "queued":
        start(server, name, job_id)
        assert_status(patch(server, job_id, status=state, output="before"), 204)
    before = get_job(server, job_id)
    assert_error(patch(server, job_id, **body), 409)
    assert get_job(server, job_id) == before
    assert size(server, name) == (1 if state == "queued" else 0)


def test_a_failed_job_can_still_be_cancelled(server):
    name = new_queue(server)
    job_id = post_job(server, name)
    start(server, name, job_id)
    assert_status(patch(server, job_id, status="failed"), 204)
    assert_status(patch(server, job_id, status="cancelled"), 204)
    job = get_job(server, job_id)
    assert job["status"] == "cancelled" and job["ended"] is True


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"status": "done"}, id="unknown-status"),
        pytest.param({"status": "COMPLETED"}, id="status-case"),
        pytest.param({"status": 1}, id="status-number"),
        pytest.param({"stauts": "completed"}, id="unknown-field"),
        pytest.param({"status": "completed", "extra": 1}, id="extra-field"),
        pytest.param(["completed"], id="not-an-object"),
        pytest.param(b"completed", id="not-json"),
    ],
)
def test_bad_patch_bodies_are_400_and_change_nothing(server, body):
    name = new_queue(server)
    job_id = post_job(server, name)
    start(server, name, job_id)
    assert_status(patch(server, job_id, output="kept"), 204)
    before = get_job(server, job_id)
    if isinstance(body, bytes):
        resp = server.api("PATCH", f"/job/{job_id}", data=body, headers=JSON)
    else:
        resp = server.api("PATCH", f"/job/{job_id}", json=body)
    assert_error(resp, 400)
    assert get_job(server, job_id) == before


# -- DELETE, output, heartbeat route -----------------------------------------------------------


def test_delete_job_is_204_then_404_and_drops_it_from_queue_and_tag(server):
    name = new_queue(server)
    tag = unique_id("tag")
    running, queued, kept = (post_job(server, name, tags=[tag]) for _ in range(3))
    start(server, name, running)
    deleted = server.api("DELETE", f"/job/{queued}")
    assert_status(deleted, 204)
    assert_empty(deleted)
    assert_error(server.api("GET", f"/job/{queued}"), 404)
    assert_error(server.api("DELETE", f"/job/{queued}"), 404)
    assert size(server, name) == 1
    assert sorted(tagged(server, tag)) == sorted([running, kept])

    assert_status(server.api("DELETE", f"/job/{running}"), 204)  # running: deleted all the same
    assert_error(server.api("GET", f"/job/{running}/status"), 404)
    assert tagged(server, tag) == [kept]
    assert dequeue(server, name) == {"id": kept, "input": None}


def test_output_routes_read_and_write_a_running_jobs_output(server):
    name = new_queue(server)
    job_id = post_job(server, name)
    out = server.api("GET", f"/job/{job_id}/output")
    assert_status(out, 200)
    assert out.json() is None
    assert_error(server.api("PUT", f"/job/{job_id}/output", json=[1]), 409)  # queued

    start(server, name, job_id)
    for value in ([1, 2, 3], {"a": 1, "b": [2, 3, 4]}, "text", 0, None):
        put = server.api("PUT", f"/job/{job_id}/output", data=json.dumps(value), headers=JSON)
        assert_status(put, 204)
        assert_empty(put)
        got = server.api("GET", f"/job/{job_id}/output")
        assert_status(got, 200)
        assert got.json() == value
    assert_status(server.api("PUT", f"/job/{job_id}/output", json={"final": True}), 204)
    assert_error(server.api("PUT", f"/job/{job_id}/output", data=b"{not json", headers=JSON), 400)
    assert get_job(server, job_id)["output"] == {"final": True}

    assert_status(patch(server, job_id, status="completed"), 204)
    assert_error(server.api("PUT", f"/job/{job_id}/output", json="late"), 409)
    assert server.api("GET", f"/job/{job_id}/output").json() == {"final": True}


def test_heartbeat_route_is_204_for_a_running_job(server):
    name = new_queue(server)
    job_id = post_job(server, name)
    start(server, name, job_id)
    resp = server.api("PUT", f"/job/{job_id}/heartbeat")
    assert_status(resp, 204)
    assert_empty(resp)
    job = get_job(server, job_id)
    assert instant(job["last_heartbeat"]) >= instant(job["started_at"]), job


# -- tags, info, version, health ---------------------------------------------------------------


def test_tag_lists_the_ids_of_jobs_with_that_tag(server):
    name = new_queue(server)
    other = new_queue(server)
    user, batch = unique_id("user"), unique_id("batch")
    a = post_job(server, name, tags=[user, batch])
    b = post_job(server, other, tags=[user])
    c = post_job(server, name, tags=[batch])
    post_job(server, name)
    assert sorted(tagged(server, user)) == [a, b]
    assert sorted(tagged(server, batch)) == [a, c]
    assert tagged(server, unique_id("never")) == []
    assert get_job(server, a)["tags"] == [user, batch]
    start(server, name, a)
    assert_status(patch(server, a, status="completed"), 204)
    assert sorted(tagged(server, user)) == [a, b]  # an ended job keeps its tags


def test_info_counts_each_queues_jobs_by_status(server):
    name = new_queue(server)
    ids = [post_job(server, name) for _ in range(6)]
    for job_id in ids[:4]:
        start(server, name, job_id)
    assert_status(patch(server, ids[1], status="completed"), 204)
    assert_status(patch(server, ids[2], status="failed"), 204)
    assert_status(patch(server, ids[3], status="cancelled"), 204)
    empty = new_queue(server)

    resp = server.api("GET", "/info")
    assert_status(resp, 200)
    info = resp.json()
    assert isinstance(info.get("queues"), dict), info
    assert info["queues"][name] == {
        "queued": 2,
        "running": 1,
        "failed": 1,
        "completed": 1,
        "cancelled": 1,
        "timed_out": 0,
    }
    assert info["queues"][empty] == dict.fromkeys(STATUSES, 0)


def test_info_version_is_a_json_string(server):
    resp = server.api("GET", "/info/version")
    assert_status(resp, 200)
    version = resp.json()
    assert isinstance(version, str) and version.strip(), version


# -- the token ---------------------------------------------------------------------------------


def test_queue_routes_need_the_bearer_token(jobd):
    daemon = jobd.start("--token", "t")
    name = unique_id("q")
    for token in (None, "wrong"):
        assert_error(daemon.api("PUT", f"/queue/{name}", json={}, token=token), 401)
        assert_error(daemon.api("GET", "/queue", token=token), 401)
        assert_error(daemon.api("GET", "/info", token=token), 401)
        assert_error(daemon.api("GET", f"/job/{NO_SUCH_JOB}", token=token), 401)
        assert_error(daemon.api("GET", "/tag/x", token=token), 401)
    assert_status(daemon.api("GET", "/health", token=None), 200)

    listed = daemon.api("GET", "/queue", headers={"Authorization": "Bearer t"}, token=None)
    assert_status(listed, 200)
    assert listed.json() == []  # the refused PUTs created nothing
    created = daemon.api(
        "PUT", f"/queue/{name}", json={}, headers={"Authorization": "Bearer t"}, token=None
    )
    assert_status(created, 201)
    job_id = post_job(daemon, name, input=1)
    assert_error(daemon.api("GET", f"/queue/{name}/job", token=None), 401)
    assert size(daemon, name) == 1
    assert dequeue(daemon, name) == {"id": job_id, "input": 1}


# -- metrics and the status page ---------------------------------------------------------------


def test_queue_sizes_are_in_metrics_and_on_the_status_page(server):
    name = new_queue(server)
    ids = [post_job(server, name) for _ in range(3)]
    start(server, name, ids[0])

    scraped = server.api("GET", "/metrics")
    assert_status(scraped, 200)
    series = {
        status: re.search(
            rf'^jobd_queue_jobs{{queue="{re.escape(name)}",status="{status}"}} ([0-9.]+)$',
            scraped.text,
            re.MULTILINE,
        )
        for status in STATUSES
    }
    assert all(series.values()), scraped.text[-2000:]
    assert {s: float(m.group(1)) for s, m in series.items() if m} == {
        **dict.fromkeys(STATUSES, 0.0),
        "queued": 2.0,
        "running": 1.0,
    }

    page = server.api("GET", "/", headers={"Accept": "text/html"})
    assert_status(page, 200)
    row = re.search(rf"<tr><td class='mono'>{re.escape(name)}</td>(.*?)</tr>", page.text)
    assert row, page.text[-3000:]
    cells = re.findall(r"<td class='code'[^>]*>(\d+)</td>", row.group(1))
    assert cells[:2] == ["2", "1"], cells  # queued, running
