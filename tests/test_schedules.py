"""Recurring jobs end to end with a real daemon and `@every`: forbid records SKIPPED, replace
cancels, allow overlaps, trigger and disable, the runs' history, restarts that neither skip
nor double, and bad schedules refused with nothing kept."""

from __future__ import annotations

import time

import pytest
from conftest import assert_error, assert_status, b64, make_zip, output_files, script, wait_until

pytestmark = pytest.mark.source_only


def create(daemon, name: str, run_sh: bytes, **fields):
    body = {"name": name, "schedule": "@every 2s", "input": b64(make_zip({"run.sh": run_sh}))}
    return daemon.api("POST", "/api/schedules", json=body | fields)


def runs(daemon, name: str) -> list[dict]:
    resp = daemon.api("GET", f"/api/schedules/{name}/runs")
    assert_status(resp, 200)
    return resp.json()


def test_forbid_records_a_skipped_run_while_one_runs(jobd):
    daemon = jobd.start()
    resp = create(daemon, "slow-qc", script("sleep 3"), env={"GREETING": "hi"})
    assert_status(resp, 201)
    assert resp.json()["concurrency"] == "forbid" and resp.json()["env"] == ["GREETING"]
    seen = wait_until(
        lambda: (
            (found := runs(daemon, "slow-qc"))
            and any(r["Status"] == "SKIPPED" for r in found)
            and found
        ),
        30,
        "a skipped run",
    )
    skipped = next(r for r in seen if r["Status"] == "SKIPPED")
    assert "concurrency forbid" in skipped["Message"], skipped
    assert all(r["Schedule"] == "slow-qc" and r["ID"].startswith("slow-qc-") for r in seen)
    assert [r["IntID"] for r in seen] == sorted((r["IntID"] for r in seen), reverse=True)
    got = daemon.get(skipped["ID"])
    assert_status(got, 200)
    assert got.json()["Output"] == ""


def test_replace_cancels_the_running_one_and_allow_overlaps(jobd):
    daemon = jobd.start("--workers", "4")
    assert_status(create(daemon, "swap", script("sleep 30"), concurrency="replace"), 201)
    wait_until(
        lambda: any(r["Status"] == "CANCELLED" for r in runs(daemon, "swap")), 30, "a replaced run"
    )
    assert_status(daemon.api("POST", "/api/schedules/swap/disable"), 200)

    assert_status(create(daemon, "pile", script("sleep 30"), concurrency="allow"), 201)
    wait_until(
        lambda: sum(r["Status"] == "RUNNING" for r in runs(daemon, "pile")) >= 2,
        30,
        "two runs at once",
    )
    assert_status(daemon.api("DELETE", "/api/schedules/pile"), 204)


def test_trigger_runs_now_and_disable_stops_the_fires(jobd):
    daemon = jobd.start()
    show = script('echo "$GREETING $JOBD_JOB_ID" > who.txt')
    assert_status(
        create(daemon, "on-demand", show, schedule="0 0 1 1 *", env={"GREETING": "hi"}), 201
    )
    resp = daemon.api("POST", "/api/schedules/on-demand/trigger")
    assert_status(resp, 200)
    run = resp.json()["run"]
    assert run["Schedule"] == "on-demand"
    job = daemon.wait_done(run["ID"])
    assert output_files(job)["who.txt"] == f"hi {run['ID']}\n".encode()

    assert_status(create(daemon, "every-two", script("true")), 201)
    wait_until(lambda: len(runs(daemon, "every-two")) >= 1, 20, "a first fire")
    disabled = daemon.api("POST", "/api/schedules/every-two/disable")
    assert disabled.json()["enabled"] is False and disabled.json()["next_fire"] is None
    count = len(runs(daemon, "every-two"))
    # a disabled schedule fires no more: watched over three of its slots (not a wait)
    window = time.monotonic() + 6
    while time.monotonic() < window:
        assert len(runs(daemon, "every-two")) == count, "a disabled schedule fired"
        time.sleep(0.5)
    assert_status(daemon.api("POST", "/api/schedules/every-two/enable"), 200)
    wait_until(lambda: len(runs(daemon, "every-two")) > count, 20, "fires after enable")


def test_a_restart_neither_skips_nor_doubles(jobd):
    daemon = jobd.start()
    assert_status(create(daemon, "steady", script("true"), schedule="@every 3s"), 201)
    wait_until(lambda: len(runs(daemon, "steady")) >= 1, 20, "a first fire")
    daemon.kill9()
    again = jobd.start(data_dir=daemon.data_dir)
    before = len(runs(again, "steady"))
    wait_until(lambda: len(runs(again, "steady")) >= before + 1, 20, "a fire after the restart")
    ids = [r["ID"] for r in runs(again, "steady")]
    assert len(ids) == len(set(ids)), ids


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"name": "Bad_Name"}, 400),
        ({"schedule": "61 * * * *"}, 400),
        ({"schedule": "@every 0s"}, 400),
        ({"timezone": "Mars/Olympus"}, 400),
        ({"concurrency": "sometimes"}, 400),
        ({"env": {"JOBD_X": "1"}}, 400),
        ({"retry": 0}, 400),
        ({"colour": "blue"}, 400),
    ],
)
def test_a_bad_schedule_is_refused_and_keeps_nothing(server, fields, status):
    body = {"name": "fine-name", "schedule": "@daily", "input": b64(make_zip({"run.sh": "true"}))}
    resp = server.api("POST", "/api/schedules", json=body | fields)
    assert_error(resp, status)
    assert not (server.data_dir / "schedules" / "fine-name.zip").exists()
    assert_error(server.api("GET", "/api/schedules/fine-name"), 404)


def test_a_taken_name_is_409_and_a_zip_without_run_sh_is_400(jobd):
    daemon = jobd.start()
    assert_status(create(daemon, "once", script("true"), schedule="@daily"), 201)
    assert_error(create(daemon, "once", script("true"), schedule="@daily"), 409)
    body = {"name": "no-run", "schedule": "@daily", "input": b64(make_zip({"x.txt": "x"}))}
    assert_error(daemon.api("POST", "/api/schedules", json=body), 400)
    listed = daemon.api("GET", "/api/schedules").json()
    assert [s["name"] for s in listed] == ["once"]
