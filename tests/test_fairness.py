"""Services' limits and fair turns, measured from inside the jobs (start and end times written
outside the job dirs): runs per user and per service hold and are used, users take turns,
and the turns survive kill -9."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from conftest import (
    assert_status,
    max_overlap,
    q,
    read_times,
    script,
    timed_job,
    wait_until,
)

pytestmark = pytest.mark.source_only


def _upload(daemon, run_sh: bytes, user: int, service: str | None = None) -> int:
    data = {"user_id": str(user)} | ({"service": service} if service else {})
    resp = requests.post(
        f"{daemon.url}/upload", files=[("file", ("run.sh", run_sh))], data=data, timeout=30
    )
    assert_status(resp, 201)
    return resp.json()["id"]


def _done(daemon, number: int) -> bool:
    return requests.head(f"{daemon.url}/download/{number}", timeout=30).status_code == 200


def _intervals(shared: Path, names: list[str]) -> list[tuple[float, float]]:
    found = []
    for name in names:
        starts, ends = read_times(shared, name)
        assert len(starts) == 1 and len(ends) == 1, f"{name} ran {len(starts)} times"
        found.append((starts[0], ends[0]))
    return found


def test_runs_per_user_and_max_runs_hold_and_are_used(jobd, shared):
    daemon = jobd.start("--workers", "4", "--runs-per-user", "2", "--max-runs", "3")
    names = {user: [f"u{user}-{n}" for n in range(4)] for user in (1, 2)}
    numbers = [
        _upload(daemon, timed_job(shared, name, "sleep 0.5"), user)
        for user in (1, 2)
        for name in names[user]
    ]
    wait_until(lambda: all(_done(daemon, n) for n in numbers), 60, "all eight jobs")

    for user in (1, 2):
        assert max_overlap(_intervals(shared, names[user])) == 2, f"user {user}: not 2 at once"
    everyone = _intervals(shared, names[1] + names[2])
    assert max_overlap(everyone) == 3, "the service ran more or fewer than 3 at once"


def test_with_one_run_at_a_time_users_take_turns(jobd, shared, gates):
    daemon = jobd.start("--workers", "2", "--max-runs", "1")
    gate = gates()
    first = _upload(daemon, timed_job(shared, "gate", gate.shell), 0)
    wait_until(lambda: (shared / "gate.start").exists(), 20, "the first job to start")
    order = [f"u1-{n}" for n in range(4)] + [f"u2-{n}" for n in range(4)]
    numbers = [_upload(daemon, timed_job(shared, name, "true"), int(name[1])) for name in order]
    (listed,) = requests.get(f"{daemon.url}/api/services", timeout=10).json()
    assert (listed["name"], listed["queued"], listed["running"]) == ("default", 8, 1), listed
    assert listed["users"] == [
        {"user_id": 0, "queued": 0, "running": 1},
        {"user_id": 1, "queued": 4, "running": 0},
        {"user_id": 2, "queued": 4, "running": 0},
    ], listed
    metrics = requests.get(f"{daemon.url}/metrics", timeout=10).text
    assert 'jobd_service_jobs{service="default",status="QUEUED"} 8.0' in metrics, metrics
    gate.open()
    wait_until(lambda: all(_done(daemon, n) for n in [first, *numbers]), 60, "every job")

    started = sorted(order, key=lambda name: read_times(shared, name)[0][0])
    assert started == ["u1-0", "u2-0", "u1-1", "u2-1", "u1-2", "u2-2", "u1-3", "u2-3"], started
    assert max_overlap(_intervals(shared, ["gate", *order])) == 1


def test_a_users_turn_survives_kill_9(jobd, shared, gates):
    """User 1 was served last before the kill; after the restart user 2, never served, goes
    first, although user 1's interrupted job is older."""
    daemon = jobd.start("--workers", "1")
    gate = gates()
    marker = shared / "runs"
    holder = script(f"umask 000\necho u1 >> {q(marker)}\n{gate.shell}")  # u2: another job user
    _upload(daemon, holder, 1)
    wait_until(marker.exists, 20, "user 1's job to start")
    second = _upload(daemon, script(f"echo u2 >> {q(marker)}\n{gate.shell}"), 2)
    daemon.kill9()

    again = jobd.start("--workers", "1", data_dir=daemon.data_dir)
    wait_until(lambda: len(marker.read_text().split()) == 2, 20, "a job to start again")
    assert marker.read_text().split() == ["u1", "u2"], "user 1 went first again after the kill"
    gate.open()
    wait_until(lambda: _done(again, second), 30, "user 2's job")


def test_services_have_their_own_limits(jobd, shared):
    daemon = jobd.start("--workers", "4", "--service", "solo:max_runs=1", "--runs-per-user", "4")
    solo = [f"solo-{n}" for n in range(3)]
    free = [f"free-{n}" for n in range(3)]
    numbers = [_upload(daemon, timed_job(shared, name, "sleep 0.4"), 1, "solo") for name in solo]
    numbers += [_upload(daemon, timed_job(shared, name, "sleep 0.4"), 1) for name in free]
    wait_until(lambda: all(_done(daemon, n) for n in numbers), 60, "every job")
    assert max_overlap(_intervals(shared, solo)) == 1, "the solo service ran two at once"
    assert max_overlap(_intervals(shared, free)) == 3, "the default service was held back"

    listed = {s["name"]: s for s in requests.get(f"{daemon.url}/api/services", timeout=10).json()}
    assert listed["solo"]["max_runs"] == 1 and listed["solo"]["declared"], listed
    assert listed["default"]["runs_per_user"] == 4 and listed["default"]["max_runs"] == 4


def test_a_services_own_timeout_and_retention(jobd):
    daemon = jobd.start("--retention", "1h", "--service", "brief:timeout=1s,retention=1s")
    slow = _upload(daemon, script("sleep 30"), 1, "brief")
    kept = _upload(daemon, script("true"), 1)
    wait_until(lambda: _done(daemon, kept), 30, "the default service's job")
    job = wait_until(
        lambda: (
            (j := requests.get(f"{daemon.url}/api/get/{slow}", timeout=10).json())["Status"]
            == "FAILED"
            and j
        ),
        30,
        "the brief service's job to time out",
    )
    assert job["Message"].startswith("timed out after 1s"), job
    wait_until(
        lambda: requests.head(f"{daemon.url}/download/{slow}", timeout=10).status_code == 204,
        30,
        "the brief service's retention",
    )
    assert _done(daemon, kept), "a default-service job went with the brief service's retention"
