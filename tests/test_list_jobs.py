"""GET /api/jobs: newest first, without Output, a page at a time by keyset (?before=IntID),
filtered by status; bad parameters are a 400."""

from __future__ import annotations

import pytest
from conftest import assert_error, assert_status, script, unique_id

pytestmark = pytest.mark.source_only


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return (
        "--workers",
        "2",
    )


def listed(server, **params) -> list[dict]:
    resp = server.api("GET", "/api/jobs", params=params)
    assert_status(resp, 200)
    return resp.json()


def test_pages_newest_first_by_keyset(server):
    ids = [
        server.submit({"run.sh": script("true")}, job_id=unique_id("list"))["ID"] for _ in range(5)
    ]
    for job_id in ids:
        server.wait_done(job_id)
    first = listed(server, limit=3)
    assert [job["ID"] for job in first] == ids[::-1][:3]
    assert all("Output" not in job for job in first)
    second = listed(server, limit=3, before=first[-1]["IntID"])
    assert [job["ID"] for job in second][:2] == ids[::-1][3:5]
    numbers = [job["IntID"] for job in first + second]
    assert numbers == sorted(numbers, reverse=True) and len(set(numbers)) == len(numbers)


def test_a_status_filter(server, gates):
    gate = gates()
    held = server.submit({"run.sh": script(gate.shell)}, job_id=unique_id("held"))["ID"]
    server.wait_status(held, "RUNNING")
    running = listed(server, status="RUNNING")
    assert held in [job["ID"] for job in running]
    assert all(job["Status"] == "RUNNING" for job in running)
    gate.open()
    server.wait_done(held)
    assert held in [job["ID"] for job in listed(server, status="success")]


@pytest.mark.parametrize(
    "params",
    [{"status": "DONE"}, {"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"before": "-1"}],
)
def test_bad_parameters_are_a_400(server, params):
    assert_error(server.api("GET", "/api/jobs", params=params), 400)
