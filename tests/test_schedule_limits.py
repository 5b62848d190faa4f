"""Nothing a client stores can break the schedules later: schedules that never fire, absurd
intervals, folders posing as zones and oversized numbers are 400s that keep nothing; a row
planted in the store is disabled with its reason while the others keep firing; the number of
schedules and their pace have flags; forbid holds however many slots a run outlasts; and slots
that do not fire leave one SKIPPED record per gap, saying why and how many."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import (
    Gate,
    assert_error,
    assert_status,
    b64,
    make_zip,
    output_files,
    script,
    wait_until,
)

from jobd.jobs import cron
from jobd.loop import SET_ASIDE_KEPT

pytestmark = pytest.mark.source_only

NEVER = ("0 0 30 2 *", "0 0 31 4 *")


def body(name: str, run_sh: bytes | str = "true", **fields) -> dict:
    zipped = b64(make_zip({"run.sh": run_sh}))
    return {"name": name, "schedule": "@daily", "input": zipped} | fields


def runs(daemon, name: str, limit: int = 50) -> list[dict]:
    resp = daemon.api("GET", f"/api/schedules/{name}/runs?limit={limit}")
    assert_status(resp, 200)
    return resp.json()


def store(daemon) -> sqlite3.Connection:
    """The daemon's own SQLite file, as an operator's hand (or a bug) would reach it."""
    db = sqlite3.connect(Path(daemon.data_dir) / "jobd.db", timeout=10, isolation_level=None)
    db.execute("PRAGMA busy_timeout=10000")
    return db


def plant(
    daemon, name: str, settings: dict | str, last_fire: float | None = None, created: float = 0
) -> None:
    """A schedule row written straight into the store, past every check of the API."""
    now = time.time()
    text = settings if isinstance(settings, str) else json.dumps(settings)
    with store(daemon) as db:
        db.execute(
            "INSERT INTO schedules (name, body, enabled, last_fire, created_at, updated_at)"
            " VALUES (?, ?, 1, ?, ?, ?)",
            (name, text, now if last_fire is None else last_fire, created or now, now),
        )


def settings(schedule: str) -> dict:
    return {"schedule": schedule, "timezone": "UTC", "concurrency": "forbid", "slurml": False}


# -- refused up front ----------------------------------------------------------------------


@pytest.mark.parametrize("text", NEVER)
def test_cron_dates_that_never_come_are_refused_by_the_parser(text):
    with pytest.raises(ValueError, match=r"does not fire within 10 years"):
        cron.parse(text)
    assert cron.parse("0 0 29 2 *").next_after(time.time()) > time.time()  # leap days do come


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"schedule": "0 0 30 2 *"}, "does not fire within 10 years"),
        ({"schedule": "0 0 31 4 *"}, "does not fire within 10 years"),
        ({"schedule": "@every 10000000000s"}, "365d at most"),
        ({"schedule": "@every 1000000000000s"}, "365d at most"),
        ({"schedule": "@every 1e300"}, "365d at most"),
        ({"schedule": "@every 366d"}, "365d at most"),
        ({"schedule": "@every " + "9" * 5000}, "longer than 200"),
        ({"schedule": "0 0 * * *" + " " * 300}, "'schedule'"),
        ({"schedule": "*/5 * * * * " + "x" * 300}, "longer than 200"),
        ({"timezone": "Europe"}, "not a known time zone"),
        ({"timezone": "A" * 256}, "not a known time zone"),
        ({"timezone": "Europe/../Europe/Amsterdam"}, "not a known time zone"),
        ({"timezone": "zone.tab"}, "not a known time zone"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_a_schedule_that_could_not_run_is_a_400_that_keeps_nothing(server, fields, words):
    resp = server.api("POST", "/api/schedules", json=body("never-kept") | fields)
    error = assert_error(resp, 400)
    field = next(iter(fields))
    assert f"'{field}'" in json.dumps(error) and words in json.dumps(error), error
    assert not (server.data_dir / "schedules" / "never-kept.zip").exists()
    assert_error(server.api("GET", "/api/schedules/never-kept"), 404)
    listed = server.api("GET", "/api/schedules")
    assert_status(listed, 200)
    assert "never-kept" not in [s["name"] for s in listed.json()]


@pytest.mark.parametrize(
    "change",
    [
        {"schedule": "0 0 30 2 *"},
        {"schedule": "@every 10000000000s"},
        {"timezone": "Europe"},
        {"timezone": "B" * 256},
    ],
    ids=lambda value: str(value)[:40],
)
def test_a_patch_to_a_schedule_that_could_not_run_is_a_400_that_changes_nothing(server, change):
    name = f"patched-{abs(hash(json.dumps(change))) % 10**8}"
    assert_status(server.api("POST", "/api/schedules", json=body(name, schedule="0 3 * * *")), 201)
    before = server.api("GET", f"/api/schedules/{name}").json()
    assert_error(server.api("PATCH", f"/api/schedules/{name}", json=change), 400)
    after = server.api("GET", f"/api/schedules/{name}")
    assert_status(after, 200)
    assert after.json() == before
    assert_status(server.api("GET", "/api/schedules"), 200)
    assert_status(server.api("DELETE", f"/api/schedules/{name}"), 204)


def test_a_limit_longer_than_pythons_digit_limit_is_a_400(server):
    assert_status(server.api("POST", "/api/schedules", json=body("many-digits")), 201)
    for limit in ("9" * 5000, "0" * 5000 + "1", "1" * 4301):
        error = assert_error(
            server.api("GET", f"/api/schedules/many-digits/runs?limit={limit}"), 400
        )
        assert "'limit'" in json.dumps(error)
    assert runs(server, "many-digits", 1000) == []


def test_max_schedules_and_min_interval_are_flags(jobd):
    daemon = jobd.start("--max-schedules", "2", "--min-schedule-interval", "2m")
    assert_status(daemon.api("POST", "/api/schedules", json=body("first")), 201)
    too_often = [
        body("second", schedule="@every 90s"),
        body("second", schedule="* * * * *"),
        body("second", schedule="0,1 3 * * *"),
    ]
    for asked in too_often:
        error = assert_error(daemon.api("POST", "/api/schedules", json=asked), 400)
        assert "--min-schedule-interval" in json.dumps(error), error
    assert_status(
        daemon.api("POST", "/api/schedules", json=body("second", schedule="*/2 * * * *")), 201
    )
    error = assert_error(daemon.api("POST", "/api/schedules", json=body("third")), 409)
    assert "--max-schedules" in json.dumps(error), error
    assert not (daemon.data_dir / "schedules" / "third.zip").exists()
    assert [s["name"] for s in daemon.api("GET", "/api/schedules").json()] == ["first", "second"]
    assert_error(daemon.api("PATCH", "/api/schedules/first", json={"schedule": "@every 1m"}), 400)
    assert daemon.api("GET", "/api/schedules/first").json()["schedule"] == "@daily"
    assert_status(daemon.api("DELETE", "/api/schedules/first"), 204)
    assert_status(daemon.api("POST", "/api/schedules", json=body("third")), 201)


def test_racing_creates_of_one_name_keep_the_winners_input(server):
    """Of creates racing for one name, one is a 201 and its zip is the one the runs use."""
    for round_ in range(4):
        name = f"race-{round_}"
        start = threading.Barrier(8)

        def create(i: int, name: str = name, start: threading.Barrier = start):
            start.wait(10)
            return server.api("POST", "/api/schedules", json=body(name, f"echo {i} > who"))

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(create, range(8)))
        codes = sorted(resp.status_code for resp in answers)
        assert codes == [201] + [409] * 7, [resp.text for resp in answers]
        winner = next(i for i, resp in enumerate(answers) if resp.status_code == 201)
        run = server.api("POST", f"/api/schedules/{name}/trigger").json()["run"]
        assert output_files(server.wait_done(run["ID"]))["who"] == f"{winner}\n".encode()
        assert_status(server.api("DELETE", f"/api/schedules/{name}"), 204)


def test_a_deleted_schedules_series_leave_metrics(server):
    assert_status(server.api("POST", "/api/schedules", json=body("counted")), 201)
    assert_status(server.api("POST", "/api/schedules/counted/trigger"), 200)
    series = 'jobd_schedule_runs_total{schedule="counted",status="started"} 1.0'
    assert series in server.api("GET", "/metrics").text
    assert_status(server.api("DELETE", "/api/schedules/counted"), 204)
    assert 'schedule="counted"' not in server.api("GET", "/metrics").text


# -- rows that got past the API --------------------------------------------------------------


def test_the_loop_disables_a_bad_row_with_its_reason_and_the_others_keep_firing(jobd):
    daemon = jobd.start()
    good = body("steady", schedule="@every 1s")
    assert_status(daemon.api("POST", "/api/schedules", json=good), 201)
    assert_status(daemon.api("POST", "/api/schedules", json=body("victim")), 201)
    wait_until(lambda: len(runs(daemon, "steady")) >= 1, 20, "a first fire")
    daemon.stop()
    with store(daemon) as db:
        db.execute(
            "UPDATE schedules SET body = ? WHERE name = 'victim'",
            (json.dumps(settings("0 0 30 2 *")),),
        )
    plant(daemon, "far-out", settings("@every 10000000000s"), last_fire=time.time() - 2e10)
    plant(daemon, "huge-wait", settings("@every 10000000000s"))
    plant(daemon, "garbled", "{not json")
    plant(daemon, "long-ago", settings("@every 1s"), last_fire=-1e300, created=1e300)
    kept = daemon.data_dir / "schedules"
    (kept / "long-ago.zip").write_bytes((kept / "steady.zip").read_bytes())
    plant(daemon, "no-input", settings("@every 1s"))
    again = jobd.start(data_dir=daemon.data_dir)
    bad = ("victim", "far-out", "huge-wait", "garbled", "no-input", "long-ago")

    def all_disabled() -> list[dict]:
        listed = again.api("GET", "/api/schedules")
        assert_status(listed, 200)
        found = {s["name"]: s for s in listed.json()}
        return [found[n] for n in bad] if not any(found[n]["enabled"] for n in bad) else []

    disabled = wait_until(all_disabled, 20, "the bad rows disabled")
    reasons = {s["name"]: s["disabled_reason"] for s in disabled}
    assert "does not fire within 10 years" in reasons["victim"], reasons
    assert "365d at most" in reasons["far-out"] and "365d at most" in reasons["huge-wait"]
    assert "not JSON" in reasons["garbled"], reasons
    assert "outside the years 1970 to 9999" in reasons["long-ago"], reasons
    assert "no-input.zip is missing" in reasons["no-input"], reasons
    for name in bad[:-1]:
        one = again.api("GET", f"/api/schedules/{name}")
        assert_status(one, 200)
        assert one.json()["enabled"] is False and one.json()["next_fire"] is None
        error = assert_error(again.api("POST", f"/api/schedules/{name}/enable"), 400)
        assert "cannot be enabled" in json.dumps(error)
        assert_error(again.api("POST", f"/api/schedules/{name}/trigger"), 400)
    assert again.api("GET", "/api/schedules/steady").json()["disabled_reason"] is None

    before = len(runs(again, "steady"))
    wait_until(lambda: len(runs(again, "steady")) >= before + 3, 20, "the good one firing on")
    for name in bad:  # said once, not once a tick, and shown in /health
        assert again.log().count(f"schedule {name}: disabled by jobd") == 1, again.log()
    health = again.api("GET", "/health").json()
    assert health["status"] == "degraded", health
    shown = [p for p in health["problems"] if "disabled by jobd" in p]
    assert len(shown) == min(len(bad), SET_ASIDE_KEPT), health  # the latest of them
    assert all(p.startswith("the schedules loop set aside schedule ") for p in shown), shown
    assert "Traceback" not in again.log() and "schedules failed" not in again.log()

    # enabled again it fires from now on, which it can
    enabled = again.api("POST", "/api/schedules/long-ago/enable")
    assert_status(enabled, 200)
    assert enabled.json()["disabled_reason"] is None and enabled.json()["next_fire"]
    wait_until(lambda: runs(again, "long-ago"), 20, "a fire of the one enabled again")

    # a PATCH that passes clears the reason; enabling it then works
    fixed = again.api("PATCH", "/api/schedules/victim", json={"schedule": "0 0 28 2 *"})
    assert_status(fixed, 200)
    assert fixed.json()["disabled_reason"] is None and fixed.json()["enabled"] is False
    enabled = again.api("POST", "/api/schedules/victim/enable")
    assert_status(enabled, 200)
    assert enabled.json()["enabled"] is True and enabled.json()["next_fire"]


# -- slots that do not fire ------------------------------------------------------------------


def _count(message: str) -> int:
    found = re.search(r"skipped: ([\d,]+) slots?", message)
    assert found, message
    return int(found.group(1).replace(",", ""))


def test_a_week_of_downtime_is_one_skipped_record_that_says_so(jobd):
    daemon = jobd.start()
    assert_status(
        daemon.api("POST", "/api/schedules", json=body("weekly-gap", schedule="@every 1s")), 201
    )
    wait_until(
        lambda: (found := runs(daemon, "weekly-gap")) and found[0]["Status"] == "SUCCESS",
        20,
        "a first run done",
    )
    daemon.stop()
    week = 7 * 86400
    with store(daemon) as db:
        db.execute(
            "UPDATE schedules SET last_fire = last_fire - ? WHERE name = 'weekly-gap'", (week,)
        )
    again = jobd.start(data_dir=daemon.data_dir)

    def gap_records() -> list[dict]:
        return [r for r in runs(again, "weekly-gap", 1000) if "did not fire" in r["Message"]]

    (gap,) = wait_until(gap_records, 20, "the downtime's record")
    assert gap["Status"] == "SKIPPED" and "downtime" in gap["Message"], gap
    assert week - 60 <= _count(gap["Message"]) <= week + 60, gap["Message"]
    before = len(runs(again, "weekly-gap", 1000))
    wait_until(lambda: len(runs(again, "weekly-gap", 1000)) >= before + 2, 20, "fires go on")
    assert len(gap_records()) == 1
    assert len(runs(again, "weekly-gap", 1000)) < 50  # not one record a missed slot


def test_slots_the_loop_was_late_for_leave_one_record_saying_so(jobd):
    daemon = jobd.start()
    late = body("late-one", schedule="@every 2s")
    assert_status(daemon.api("POST", "/api/schedules", json=late), 201)
    # a few fires: jobd has been up for the slots planted below, so none is downtime
    wait_until(lambda: len(runs(daemon, "late-one")) >= 6, 30, "six fires")
    planted = [0.0]

    def late_record() -> dict | None:
        found = [r for r in runs(daemon, "late-one", 1000) if "loop was late" in r["Message"]]
        if found:
            return found[0]
        if time.monotonic() - planted[0] > 5:
            # the last fire set back 9 s, as after a firing that took that long: the slots
            # fall on odd seconds from the old ones, so none of them ran. Again if a tick in
            # progress wrote its own last fire over it.
            planted[0] = time.monotonic()
            with store(daemon) as db:
                db.execute("UPDATE schedules SET last_fire = last_fire - 9 WHERE name = 'late-one'")
        return None

    gap = wait_until(late_record, 30, "a record of the late slots")
    assert gap["Status"] == "SKIPPED" and 3 <= _count(gap["Message"]) <= 5, gap["Message"]
    assert not any("downtime" in r["Message"] for r in runs(daemon, "late-one", 1000))


def test_forbid_holds_however_many_slots_the_run_outlasts(jobd, gates):
    daemon = jobd.start("--workers", "2")
    gate: Gate = gates()
    slow = script(f"{gate.shell}\n")
    assert_status(
        daemon.api("POST", "/api/schedules", json=body("hold", slow, schedule="@every 1s")), 201
    )
    running = wait_until(
        lambda: [r for r in runs(daemon, "hold", 1000) if r["Status"] == "RUNNING"], 20, "a run"
    )
    wait_until(
        lambda: any(r["Status"] == "SKIPPED" for r in runs(daemon, "hold")), 20, "a first skip"
    )
    # 150 newer records than the running run, as 150 slots of overlap would leave
    with store(daemon) as db:
        columns = [
            row[1] for row in db.execute("PRAGMA table_info(jobs)") if row[1] not in ("seq", "id")
        ]
        names = ", ".join(columns)
        db.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150)"
            f" INSERT INTO jobs (id, {names}) SELECT 'hold-planted-' || i, {names}"
            f" FROM n, (SELECT {names} FROM jobs WHERE schedule = 'hold' AND status = 'SKIPPED'"
            f" LIMIT 1)"
        )
    top = runs(daemon, "hold", 1)[0]["IntID"]
    newer = wait_until(
        lambda: [
            r for r in runs(daemon, "hold", 1000) if r["IntID"] > top and "forbid" in r["Message"]
        ],
        20,
        "a slot after the planted records",
    )
    assert running[0]["ID"] in newer[0]["Message"], newer[0]
    unfinished = [r for r in runs(daemon, "hold", 1000) if r["Status"] in ("QUEUED", "RUNNING")]
    assert [r["ID"] for r in unfinished] == [running[0]["ID"]]
    gate.open()
    daemon.wait_done(running[0]["ID"])


def test_deleting_schedules_as_they_fire_logs_no_errors(jobd):
    daemon = jobd.start("--workers", "4")
    names = [f"racer-{i}" for i in range(20)]
    for name in names:
        assert_status(
            daemon.api("POST", "/api/schedules", json=body(name, schedule="@every 1s")), 201
        )
    wait_until(lambda: all(runs(daemon, name, 1) for name in names), 30, "every one fired")
    for name in names:
        assert_status(daemon.api("DELETE", f"/api/schedules/{name}"), 204)
    assert_status(
        daemon.api("POST", "/api/schedules", json=body("after", schedule="@every 1s")), 201
    )
    wait_until(lambda: len(runs(daemon, "after")) >= 2, 20, "the loop going on")
    errors = [line for line in daemon.log().splitlines() if "ERROR" in line]
    assert errors == [], errors


# -- the loop on a made-up clock, in process ---------------------------------------------------


class _Intake:
    """Stands in for jobd's intake: `on_fire` runs where a run would be unpacked."""

    def __init__(self, on_fire) -> None:
        self.on_fire = on_fire

    def from_zip(self, source: Path, spec):
        return self.on_fire(source, spec)

    def limits(self, asked, service, slurml, *, clamp=False):
        return asked


@pytest.fixture
def loop(tmp_path):
    from jobd.jobs.schedules import Schedules
    from jobd.metrics import Metrics
    from jobd.store import Store
    from jobd.store.layout import Layout

    layout = Layout(tmp_path / "data")
    layout.prepare()
    db = Store(layout.db)
    metrics = Metrics(lambda: {}, lambda: 0.0, lambda: [], lambda: {}, lambda: 0)

    def make(on_fire) -> Schedules:
        return Schedules(db, layout, _Intake(on_fire), lambda job_id: None, metrics, 1 << 20)

    yield db, layout, make
    db.close()


def _row(db, layout, name: str, schedule: str, last_fire: float) -> None:
    from jobd.models import Schedule

    layout.schedule_zip(name).parent.mkdir(exist_ok=True)
    layout.schedule_zip(name).write_bytes(make_zip({"run.sh": "true"}))
    now = time.time()
    db.schedules.insert(Schedule(name, json.dumps(settings(schedule)), True, last_fire, now, now))


def test_a_delete_that_races_a_firing_logs_no_error(loop, caplog):
    db, layout, make = loop

    def deleted_meanwhile(source: Path, spec):
        db.schedules.delete(spec.schedule)  # DELETE /api/schedules/<name>, just now
        source.unlink()
        raise FileNotFoundError(source)

    schedules = make(deleted_meanwhile)
    now = time.time()
    for i in range(5):
        _row(db, layout, f"racer-{i}", "@every 1s", now - 10)
    caplog.set_level("INFO", logger="jobd")
    assert schedules.tick(now) is None  # nothing left to wait for
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []
    assert db.schedules.all() == []


def test_a_far_fire_never_overflows_the_loops_wait(loop):
    db, layout, make = loop
    schedules = make(lambda source, spec: pytest.fail("nothing is due"))
    now = time.time()
    _row(db, layout, "yearly", "@every 365d", now)
    _row(db, layout, "leap-day", "0 0 29 2 *", now)
    delay = schedules.tick(now)
    assert delay is not None and 0 < delay <= 3600
