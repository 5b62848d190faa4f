"""What Ocypod's queues promise over time, inside jobd: FIFO order, time-outs and heartbeat
time-outs seen within a second, retries that wait their delays (the last one repeating),
expiry of ended jobs, a deleted queue keeping its running and ended jobs, kill -9 losing
nothing and reusing no id, a restart that does not time out heartbeating workers, and every
job handed out exactly once to workers racing for it."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
from conftest import assert_error, assert_status, unique_id, wait_until
from test_storage_faults import fill

pytestmark = pytest.mark.source_only

#: jobd sees time-outs, retries and expiry within this long of their moment.
SEEN_WITHIN = 1.0
#: Room for a loaded two-core machine on top of that.
SLACK = 1.5
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


# -- helpers ---------------------------------------------------------------------------------


def instant(text: str | None) -> float:
    """Seconds since the epoch of an RFC 3339 time in UTC ("...Z")."""
    match = RFC3339_Z.match(text or "")
    assert match and text, f"not an RFC 3339 time ending in Z: {text!r}"
    whole = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return whole.timestamp() + float(match.group(1) or 0)


def new_queue(daemon, **settings: Any) -> str:
    name = unique_id("q")
    assert_status(daemon.api("PUT", f"/queue/{name}", json=settings), 201)
    return name


def post_job(daemon, queue: str, **fields: Any) -> int:
    resp = daemon.api("POST", f"/queue/{queue}/job", json=fields)
    assert_status(resp, 201)
    job_id = resp.json()
    assert isinstance(job_id, int) and not isinstance(job_id, bool), job_id
    return job_id


def dequeue(daemon, queue: str) -> dict[str, Any] | None:
    resp = daemon.api("GET", f"/queue/{queue}/job")
    assert_status(resp, 200, 204)
    return resp.json() if resp.status_code == 200 else None


def start(daemon, queue: str, job_id: int) -> None:
    got = dequeue(daemon, queue)
    assert got is not None and got["id"] == job_id, got


def get_job(daemon, job_id: int) -> dict[str, Any]:
    resp = daemon.api("GET", f"/job/{job_id}")
    assert_status(resp, 200)
    return resp.json()


def patch(daemon, job_id: int, **body: Any) -> requests.Response:
    return daemon.api("PATCH", f"/job/{job_id}", json=body)


def heartbeat(daemon, job_id: int) -> requests.Response:
    return daemon.api("PUT", f"/job/{job_id}/heartbeat")


def size(daemon, queue: str) -> int:
    resp = daemon.api("GET", f"/queue/{queue}/size")
    assert_status(resp, 200)
    return resp.json()


def tagged(daemon, tag: str) -> list[int]:
    resp = daemon.api("GET", f"/tag/{tag}")
    assert_status(resp, 200)
    return sorted(resp.json())


def watch(
    daemon, job_id: int, done: Callable[[dict[str, Any]], bool], until: float, what: str
) -> list[tuple[float, dict[str, Any]]]:
    """Poll the job until `done(job)`, failing at the monotonic time `until`; returns every
    (time the answer arrived, job) seen, in order."""
    seen: list[tuple[float, dict[str, Any]]] = []

    def check() -> bool:
        job = get_job(daemon, job_id)
        seen.append((time.monotonic(), job))
        return done(job)

    wait_until(check, max(until - time.monotonic(), 0.05), what)
    return seen


def seen_before(seen: list[tuple[float, dict[str, Any]]], moment: float) -> list[dict[str, Any]]:
    """The answers that arrived before `moment`: all computed before it on the server."""
    return [job for at, job in seen if at < moment]


# -- order -------------------------------------------------------------------------------------


def test_dequeue_is_first_in_first_out(server):
    name = new_queue(server)
    ids = [post_job(server, name, input=n) for n in range(6)]
    got = [dequeue(server, name) for _ in range(3)]
    ids += [post_job(server, name, input=n) for n in range(6, 8)]
    got += [dequeue(server, name) for _ in range(5)]
    assert got == [{"id": job_id, "input": n} for n, job_id in enumerate(ids)]
    assert dequeue(server, name) is None


# -- time-outs ---------------------------------------------------------------------------------


def test_a_dequeue_that_waits_takes_a_job_the_moment_it_is_queued(server):
    """jobd's `?wait=`: a worker need not poll; an empty queue still answers 204 in the end."""
    queue = new_queue(server)
    started = time.monotonic()
    empty = server.api("GET", f"/queue/{queue}/job", params={"wait": "0.3"})
    assert_status(empty, 204)
    assert time.monotonic() - started >= 0.3
    taken: list[requests.Response] = []
    waiting = threading.Thread(
        target=lambda: taken.append(server.api("GET", f"/queue/{queue}/job?wait=20"))
    )
    waiting.start()
    time.sleep(0.3)  # the input, not a synchronisation: the job comes after the worker asks
    queued_at = time.monotonic()
    job_id = post_job(server, queue, input={"n": 1})
    waiting.join(20)
    assert taken and taken[0].status_code == 200, taken
    assert taken[0].json() == {"id": job_id, "input": {"n": 1}}
    assert time.monotonic() - queued_at < SEEN_WITHIN
    assert_error(server.api("GET", f"/queue/{queue}/job", params={"wait": "soon"}), 400)


def test_running_jobs_time_out_past_their_timeout_or_heartbeat_timeout(server):
    name = new_queue(server, timeout="1s")
    by_timeout = post_job(server, name)
    by_heartbeat = post_job(server, name, timeout="0s", heartbeat_timeout="1s")  # never beats
    never = post_job(server, name, timeout="0s")  # "0s": no time-out at all
    t0 = time.monotonic()
    for job_id in (by_timeout, by_heartbeat, never):
        start(server, name, job_id)
    for job_id in (by_timeout, by_heartbeat):
        seen = watch(
            server,
            job_id,
            lambda job: job["status"] == "timed_out",
            t0 + 1 + SEEN_WITHIN + SLACK,
            f"job {job_id} to time out",
        )
        early = seen_before(seen, t0 + 1)
        assert early or job_id != by_timeout, "no look before the timeout passed"
        assert all(job["status"] == "running" for job in early), early
        job = seen[-1][1]
        assert job["ended"] is True, job  # no retries left
        assert instant(job["ended_at"]) >= instant(job["started_at"]) + 1 - 0.01, job
        assert_error(heartbeat(server, job_id), 409)
        assert_error(patch(server, job_id, status="completed"), 409)
        assert_error(server.api("PUT", f"/job/{job_id}/output", json=1), 409)
    assert get_job(server, by_heartbeat)["last_heartbeat"] is None
    assert get_job(server, never)["status"] == "running"
    assert size(server, name) == 0
    assert_status(patch(server, never, status="completed"), 204)


def test_heartbeats_keep_a_job_running_until_they_stop(server):
    name = new_queue(server, timeout="0s", heartbeat_timeout="1s")
    job_id = post_job(server, name)
    start(server, name, job_id)
    beats: list[str] = []
    last_sent = time.monotonic()
    end = last_sent + 2.4
    while time.monotonic() < end:
        last_sent = time.monotonic()
        assert_status(heartbeat(server, job_id), 204)
        job = get_job(server, job_id)
        assert job["status"] == "running", job
        beats.append(job["last_heartbeat"])
        time.sleep(0.3)  # a worker's pace, not a wait for the daemon
    assert len(set(beats)) >= 3, f"last_heartbeat did not move: {beats}"
    assert instant(beats[-1]) >= instant(beats[0]) + 1.5, beats

    seen = watch(
        server,
        job_id,
        lambda job: job["status"] == "timed_out",
        last_sent + 1 + SEEN_WITHIN + SLACK,
        "the job without heartbeats to time out",
    )
    assert all(job["status"] == "running" for job in seen_before(seen, last_sent + 1))
    assert seen[-1][1]["ended"] is True


def test_heartbeat_is_409_unless_the_job_is_running(server):
    name = new_queue(server)
    job_id = post_job(server, name)
    assert_error(heartbeat(server, job_id), 409)  # queued
    assert get_job(server, job_id)["last_heartbeat"] is None
    start(server, name, job_id)
    assert_status(heartbeat(server, job_id), 204)
    assert_status(patch(server, job_id, status="completed"), 204)
    assert_error(heartbeat(server, job_id), 409)  # completed

    failed = post_job(server, name)
    start(server, name, failed)
    assert_status(patch(server, failed, status="failed"), 204)
    assert_error(heartbeat(server, failed), 409)
    cancelled = post_job(server, name)
    assert_status(patch(server, cancelled, status="cancelled"), 204)
    assert_error(heartbeat(server, cancelled), 409)
    assert_error(heartbeat(server, 987654321), 404)


# -- retries -----------------------------------------------------------------------------------


def fail_and_watch_requeue(daemon, queue: str, job_id: int, delay: float, attempts: int):
    """Start the job, fail it, and check it is back in the queue no sooner than `delay` after
    and within `delay` + SEEN_WITHIN + SLACK, with `attempts` retries counted."""
    start(daemon, queue, job_id)
    failed_at = time.monotonic()
    assert_status(patch(daemon, job_id, status="failed", output={"attempt": attempts}), 204)
    waiting = get_job(daemon, job_id)
    assert waiting["status"] in ("failed", "queued"), waiting
    seen = watch(
        daemon,
        job_id,
        lambda job: job["status"] == "queued",
        failed_at + delay + SEEN_WITHIN + SLACK,
        f"retry {attempts} to be queued",
    )
    early = seen_before(seen, failed_at + delay)
    if delay:
        assert early, "no look before the retry delay passed"
    for job in early:
        assert job["status"] == "failed", job
        assert job["ended"] is False, job  # waiting for its retry: not ended
        assert job["retries_attempted"] == attempts - 1, job
    job = seen[-1][1]
    assert job["retries_attempted"] == attempts, job
    assert job["ended"] is False, job
    assert size(daemon, queue) == 1


def test_failed_jobs_wait_their_retry_delays_then_end(server):
    name = new_queue(server)
    job_id = post_job(server, name, retries=2, retry_delays=["1s", "2s"])
    fail_and_watch_requeue(server, name, job_id, 1.0, attempts=1)
    fail_and_watch_requeue(server, name, job_id, 2.0, attempts=2)

    start(server, name, job_id)
    assert_status(patch(server, job_id, status="failed"), 204)
    job = get_job(server, job_id)
    assert job["status"] == "failed" and job["ended"] is True, job
    assert job["retries"] == 2 and job["retries_attempted"] == 2, job
    assert size(server, name) == 0
    assert dequeue(server, name) is None


def test_a_job_takes_its_queues_retry_delays_and_the_last_one_repeats(server):
    name = new_queue(server, retries=3, retry_delays=["2s", "1s"])
    job_id = post_job(server, name, input="x")
    job = get_job(server, job_id)
    assert job["retries"] == 3 and job["retry_delays"] == ["2s", "1s"], job
    fail_and_watch_requeue(server, name, job_id, 2.0, attempts=1)
    fail_and_watch_requeue(server, name, job_id, 1.0, attempts=2)
    fail_and_watch_requeue(server, name, job_id, 1.0, attempts=3)  # the last delay again
    assert dequeue(server, name) == {"id": job_id, "input": "x"}
    assert_status(patch(server, job_id, status="completed"), 204)
    job = get_job(server, job_id)
    assert job["status"] == "completed" and job["ended"] is True, job


def test_without_retry_delays_a_failed_job_is_queued_again_at_once(server):
    name = new_queue(server, retries=1)
    job_id = post_job(server, name)
    fail_and_watch_requeue(server, name, job_id, 0.0, attempts=1)


def test_a_timed_out_job_with_retries_left_goes_back_to_the_queue(server):
    name = new_queue(server, timeout="1s", retries=1, retry_delays=["1s"])
    job_id = post_job(server, name)
    t0 = time.monotonic()
    start(server, name, job_id)
    seen = watch(
        server,
        job_id,
        lambda job: job["status"] == "timed_out",
        t0 + 1 + SEEN_WITHIN + SLACK,
        "the job to time out",
    )
    timed_out = seen[-1][1]
    assert timed_out["ended"] is False, timed_out  # a retry is left
    assert timed_out["retries_attempted"] == 0, timed_out
    back = watch(
        server,
        job_id,
        lambda job: job["status"] == "queued",
        time.monotonic() + 1 + SEEN_WITHIN + SLACK,
        "the timed-out job to be queued again",
    )
    assert back[-1][1]["retries_attempted"] == 1
    start(server, name, job_id)
    assert_status(patch(server, job_id, status="completed"), 204)


# -- expiry ------------------------------------------------------------------------------------


def test_ended_jobs_are_deleted_expires_after_their_end(server):
    name = new_queue(server, expires_after="1s")
    tag = unique_id("tag")
    expiring = post_job(server, name, tags=[tag])
    kept = post_job(server, name, tags=[tag], expires_after="0s")  # "0s": never
    start(server, name, expiring)
    start(server, name, kept)
    running = post_job(server, name, tags=[tag])
    start(server, name, running)  # running jobs never expire

    ended_at = time.monotonic()
    assert_status(patch(server, expiring, status="completed", output=[1]), 204)
    assert_status(patch(server, kept, status="completed"), 204)
    seen: list[tuple[float, int]] = []

    def gone() -> bool:
        code = server.api("GET", f"/job/{expiring}").status_code
        seen.append((time.monotonic(), code))
        return code == 404

    wait_until(gone, ended_at + 1 + SEEN_WITHIN + SLACK - time.monotonic(), "the job to expire")
    early = [code for at, code in seen if at < ended_at + 1]
    assert early and set(early) == {200}, seen
    assert_error(server.api("GET", f"/job/{expiring}/output"), 404)
    assert tagged(server, tag) == sorted([kept, running])
    assert get_job(server, kept)["status"] == "completed"
    assert get_job(server, running)["status"] == "running"
    resp = server.api("GET", f"/queue/{name}/job_ids")
    assert_status(resp, 200)
    assert all(expiring not in ids for ids in resp.json().values())


# -- deleting a queue --------------------------------------------------------------------------


def test_deleting_a_queue_keeps_its_running_and_ended_jobs(server):
    name = new_queue(server)
    tag = unique_id("tag")
    running, done, failed, queued = (post_job(server, name, tags=[tag]) for _ in range(4))
    for job_id in (running, done, failed):
        start(server, name, job_id)
    assert_status(patch(server, done, status="completed", output="ok"), 204)
    assert_status(patch(server, failed, status="failed"), 204)
    before = {job_id: get_job(server, job_id) for job_id in (running, done, failed)}

    assert_status(server.api("DELETE", f"/queue/{name}"), 204)
    assert_error(server.api("GET", f"/queue/{name}"), 404)
    assert_error(server.api("GET", f"/job/{queued}"), 404)
    assert {job_id: get_job(server, job_id) for job_id in before} == before
    assert tagged(server, tag) == sorted([running, done, failed])

    assert_status(heartbeat(server, running), 204)  # its worker carries on
    assert_status(server.api("PUT", f"/job/{running}/output", json=[1]), 204)
    assert_status(patch(server, running, status="completed"), 204)
    job = get_job(server, running)
    assert job["status"] == "completed" and job["output"] == [1] and job["ended"] is True

    assert_status(server.api("PUT", f"/queue/{name}", json={}), 201)
    assert size(server, name) == 0  # the deleted queue's jobs do not come back with its name


# -- durability --------------------------------------------------------------------------------


def snapshot(daemon, queue: str, job_ids: list[int], tags: list[str]) -> dict[str, Any]:
    def ok(path: str) -> Any:
        resp = daemon.api("GET", path)
        assert_status(resp, 200)
        return resp.json()

    return {
        "queues": ok("/queue"),
        "settings": ok(f"/queue/{queue}"),
        "size": ok(f"/queue/{queue}/size"),
        "job_ids": {k: sorted(v) for k, v in ok(f"/queue/{queue}/job_ids").items()},
        "jobs": {job_id: ok(f"/job/{job_id}") for job_id in job_ids},
        "outputs": {job_id: ok(f"/job/{job_id}/output") for job_id in job_ids},
        "tags": {tag: sorted(ok(f"/tag/{tag}")) for tag in tags},
    }


def test_kill9_keeps_queues_jobs_tags_and_outputs_and_reuses_no_id(jobd):
    daemon = jobd.start()
    settings = {
        "timeout": "10m",
        "heartbeat_timeout": "0s",
        "expires_after": "0s",
        "retries": 2,
        "retry_delays": ["30s", "10m"],
    }
    name = new_queue(daemon, **settings)
    spare = new_queue(daemon)
    tags = [unique_id("tag"), unique_id("tag")]
    done = post_job(daemon, name, input={"n": 1}, tags=tags[:1])
    running = post_job(daemon, name, input={"n": 2}, tags=tags)
    first = post_job(daemon, name, input={"n": 3}, tags=tags[1:], timeout="30s")
    second = post_job(daemon, name, input={"n": 4}, retries=0)
    start(daemon, name, done)
    assert_status(patch(daemon, done, status="completed", output={"result": [2, 4]}), 204)
    start(daemon, name, running)
    assert_status(heartbeat(daemon, running), 204)
    assert_status(daemon.api("PUT", f"/job/{running}/output", json={"progress": 50}), 204)
    newest = post_job(daemon, name, tags=tags)
    assert_status(daemon.api("DELETE", f"/job/{newest}"), 204)
    ids = [done, running, first, second]
    before = snapshot(daemon, name, ids, tags)
    assert before["settings"] == settings and before["size"] == 2

    daemon.kill9()
    daemon = jobd.start(data_dir=daemon.data_dir)

    assert snapshot(daemon, name, ids, tags) == before
    assert_status(daemon.api("GET", f"/queue/{spare}"), 200)
    assert_error(daemon.api("GET", f"/job/{newest}"), 404)
    later = post_job(daemon, spare)
    assert later > newest, f"id {later} after {newest} was deleted and jobd restarted"
    assert dequeue(daemon, name) == {"id": first, "input": {"n": 3}}
    assert dequeue(daemon, name) == {"id": second, "input": {"n": 4}}
    assert_status(patch(daemon, running, status="completed"), 204)
    assert get_job(daemon, running)["output"] == {"progress": 50}


def test_a_restart_does_not_time_out_jobs_whose_workers_keep_beating(jobd):
    daemon = jobd.start()
    name = new_queue(daemon, timeout="0s", heartbeat_timeout="3s")
    job_id = post_job(daemon, name)
    t0 = time.monotonic()
    start(daemon, name, job_id)
    assert_status(heartbeat(daemon, job_id), 204)

    daemon.kill9()
    daemon = jobd.start(data_dir=daemon.data_dir)
    restarted = time.monotonic()
    assert restarted - t0 < 2.5, f"the restart took {restarted - t0:.1f}s: not a short one"
    # Beat past the point where a restart that lost or ignored the heartbeats would have
    # timed the job out (3 s after its start, seen within a second).
    until = t0 + 3 + SEEN_WITHIN + SLACK
    while time.monotonic() < until:
        assert_status(heartbeat(daemon, job_id), 204)
        assert get_job(daemon, job_id)["status"] == "running"
        time.sleep(0.4)  # a worker's pace, not a wait for the daemon
    job = get_job(daemon, job_id)
    assert job["status"] == "running" and job["ended"] is False, job
    assert instant(job["last_heartbeat"]) > instant(job["started_at"]) + 2, job
    assert_status(patch(daemon, job_id, status="completed"), 204)


# -- concurrency -------------------------------------------------------------------------------


def test_workers_racing_to_dequeue_get_every_job_exactly_once(server):
    name = new_queue(server)
    inputs = {post_job(server, name, input={"n": n}): {"n": n} for n in range(200)}
    assert size(server, name) == 200
    handed: list[list[dict[str, Any]]] = [[] for _ in range(8)]
    errors: list[BaseException] = []
    go = threading.Barrier(8)

    headers = {"Authorization": f"Bearer {server.token}"} if server.token else {}

    def worker(mine: list[dict[str, Any]]) -> None:
        try:
            with requests.Session() as session:
                go.wait(10)
                for _ in range(400):  # bounded: 200 jobs among 8 workers
                    url = f"{server.url}/queue/{name}/job"
                    resp = session.get(url, headers=headers, timeout=60)
                    assert resp.status_code in (200, 204), (resp.status_code, resp.text)
                    if resp.status_code == 204:
                        return
                    mine.append(resp.json())
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(mine,)) for mine in handed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    assert not errors, errors

    got = [payload for mine in handed for payload in mine]
    ids = [payload["id"] for payload in got]
    assert len(ids) == len(set(ids)), "a job was handed out twice"
    assert sorted(ids) == sorted(inputs), "a job was never handed out"
    assert all(payload["input"] == inputs[payload["id"]] for payload in got)
    assert size(server, name) == 0
    resp = server.api("GET", f"/queue/{name}/job_ids")
    assert_status(resp, 200)
    assert sorted(resp.json()["running"]) == sorted(inputs)
    assert resp.json()["queued"] == []


# -- a full disk -------------------------------------------------------------------------------


def test_a_full_disk_is_507_that_keeps_nothing_then_jobs_go_on(jobd, small_disk):
    daemon = jobd.start("--min-free", "0", data_dir=small_disk / "data")
    name = new_queue(daemon)
    kept = post_job(daemon, name, input={"n": 1})
    ballast = small_disk / "filler"
    fill(ballast)
    big = {"input": "x" * 2_000_000, "tags": [unique_id("tag")]}

    for _ in range(3):  # and again: a failed write leaves the store usable
        refused = daemon.api("POST", f"/queue/{name}/job", json=big)
        assert_error(refused, 507)
        assert "full" in refused.json()["message"], refused.json()
    assert size(daemon, name) == 1
    assert tagged(daemon, big["tags"][0]) == []

    ballast.unlink()
    later = post_job(daemon, name, **big)
    assert later > kept
    assert dequeue(daemon, name) == {"id": kept, "input": {"n": 1}}
    assert dequeue(daemon, name) == {"id": later, "input": big["input"]}
    assert tagged(daemon, big["tags"][0]) == [later]
