"""The daemon's periodic work as ticks driven with a made-up clock, against a real SQLite store,
real files and a real HTTP server on loopback; and the wait slots' give-back rules."""

from __future__ import annotations

import contextlib
import http.server
import sqlite3
import threading
import time
from typing import ClassVar

import pytest
from conftest import wait_until

from jobd.config.services import Services, ServiceSettings
from jobd.errors import Unavailable
from jobd.http.slots import WaitSlots
from jobd.jobs.callbacks import Callbacks
from jobd.jobs.queue_monitor import QueueMonitor
from jobd.jobs.queues import Queues
from jobd.jobs.retention import Retention
from jobd.loop import Loop
from jobd.models import Job, JobStatus, QueueStatus
from jobd.store import Store
from jobd.store.layout import Layout

pytestmark = pytest.mark.source_only


@pytest.fixture
def store(tmp_path):
    layout = Layout(tmp_path / "data")
    layout.prepare()
    store = Store(layout.db)
    yield store, layout
    store.close()


def finished_job(store: Store, job_id: str, callback_url: str | None = None) -> Job:
    now = time.time()
    job = Job(job_id, JobStatus.QUEUED, callback_url=callback_url, created_at=now, updated_at=now)
    store.jobs.insert(job)
    ended = store.jobs.transition(job_id, JobStatus.SUCCESS, [JobStatus.QUEUED], "done", 0)
    assert ended is not None
    return ended


def test_retention_removes_a_job_only_once_its_time_is_up(store):
    store, layout = store
    job = finished_job(store, "old")
    layout.job_dir("old").mkdir()
    retention = Retention(store, layout, 3600, Services(ServiceSettings(5, 1)))

    assert retention.tick(job.finished_at + 3599) == retention.interval
    assert layout.job_dir("old").exists()
    assert not store.jobs.get("old").expired

    retention.tick(job.finished_at + 3601)
    assert not layout.job_dir("old").exists()
    assert store.jobs.get("old").expired
    assert 0.2 <= retention.interval <= 60


def tick_at(loop: Loop, now: float) -> float | None:
    """One tick at `now`, with the loop's clock standing still at `now` while it runs."""
    loop.clock = lambda: now
    return loop.tick(now)


class _Hook(http.server.BaseHTTPRequestHandler):
    """Answers 500 to the first `fail` requests, then 204; keeps every body."""

    fail = 1
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(500 if len(self.bodies) <= self.fail else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook():
    _Hook.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/done", _Hook.bodies
    server.shutdown()
    server.server_close()


def test_callbacks_retry_after_the_gap_the_clock_says(store, hook):
    store, _ = store
    url, bodies = hook
    job = finished_job(store, "called", callback_url=url)
    outcomes: list[str] = []
    callbacks = Callbacks(store, lambda job_id: store.jobs.get(job_id), 300, outcomes.append)
    start = job.finished_at

    assert tick_at(callbacks, start) == pytest.approx(1.0)  # failed: the first retry in 1 s
    assert outcomes == ["failed"] and len(bodies) == 1
    assert tick_at(callbacks, start + 0.5) == pytest.approx(0.5)  # not due: nothing sent
    assert len(bodies) == 1

    assert tick_at(callbacks, start + 1) is None  # delivered: nothing left to do
    assert outcomes == ["failed", "delivered"]
    assert b'"ID": "called"' in bodies[1] and b'"Output"' not in bodies[1]


def test_callbacks_give_up_once_retry_for_has_passed(store, hook):
    store, _ = store
    url, _ = hook
    _Hook.fail = 100
    try:
        job = finished_job(store, "abandoned", callback_url=url)
        outcomes: list[str] = []
        callbacks = Callbacks(store, lambda job_id: store.jobs.get(job_id), 5, outcomes.append)
        now = job.finished_at
        for _ in range(10):
            delay = tick_at(callbacks, now)
            if delay is None:
                break
            now += delay
        assert outcomes[-1] == "abandoned"
        assert now - job.finished_at <= 5
        assert store.outbox.next_at() is None
    finally:
        _Hook.fail = 1


def test_a_callback_row_no_request_can_carry_is_given_up_and_the_rest_delivered(store, hook):
    """A row planted in the store with a URL the door refuses: given up at once, said in
    /health, and the next delivery goes out."""
    store, layout = store
    url, bodies = hook
    _Hook.fail = 0
    try:
        bad = finished_job(store, "bad", callback_url=url)
        finished_job(store, "good", callback_url=url)
        with contextlib.closing(sqlite3.connect(layout.db)) as db, db:
            db.execute("UPDATE outbox SET url = ? WHERE job_id = 'bad'", (url + "\r\nHost: x",))
        outcomes: list[str] = []
        callbacks = Callbacks(store, lambda job_id: store.jobs.get(job_id), 300, outcomes.append)
        tick_at(callbacks, bad.finished_at + 1)
        assert sorted(outcomes) == ["abandoned", "delivered"], outcomes
        assert len(bodies) == 1 and b'"good"' in bodies[0]
        (problem,) = callbacks.problems()
        assert problem.startswith("the callbacks loop set aside job bad's callback: given up:")
        assert store.outbox.next_at() is None
    finally:
        _Hook.fail = 1


class _Counter(Loop):
    thread_name = "counter"

    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0

    def tick(self, now: float) -> float | None:
        self.ticks += 1
        return None  # only when kicked


def test_a_loop_ticks_at_start_and_on_each_kick_and_stops():
    loop = _Counter()
    loop.start()
    try:
        wait_until(lambda: loop.ticks == 1, what="the first tick")
        loop.kick()
        wait_until(lambda: loop.ticks == 2, what="a tick after the kick")
    finally:
        loop.stop()
    assert loop._thread is not None and not loop._thread.is_alive()


class _Wayward(Loop):
    """Asks for waits a clock cannot take, then fails, then works."""

    thread_name = "wayward"

    def __init__(self, delays: list[object]) -> None:
        super().__init__()
        self.delays = delays
        self.ticks = 0

    def tick(self, now: float) -> float | None:
        self.ticks += 1
        delay = self.delays[min(self.ticks, len(self.delays)) - 1]
        if isinstance(delay, BaseException):
            raise delay
        self.kick()  # at once again: the test does not wait out what it asked for
        return delay  # type: ignore[return-value]


def test_a_loop_outlives_waits_too_long_for_the_clock_and_failing_rounds():
    """`@every 10000000000s` once killed the schedules thread in its wait (OverflowError);
    a failing round makes /health say so, naming the loop, until a round works again."""
    loop = _Wayward([1e10, float("nan"), 1e300, -5.0, RuntimeError("the store is gone"), 0.0])
    loop.start()
    try:
        wait_until(lambda: loop.ticks >= 5, what="rounds past the waits and the failure")
        wait_until(lambda: loop.problems(), what="the failing round in /health's problems")
        assert loop.problems() == ["the wayward loop fails: the store is gone (retrying)"]
        wait_until(lambda: loop.ticks >= 6 and not loop.problems(), what="a good round again")
        assert loop._thread is not None and loop._thread.is_alive()
    finally:
        loop.stop()


def test_a_row_set_aside_shows_in_health_and_a_dead_loop_is_started_again(store):
    store, layout = store
    finished_job(store, "kept")
    retention = Retention(store, layout, 3600, Services(ServiceSettings(5, 1)))
    # a row no client could make (its id is not a job ID): its folder cannot be named
    with contextlib.closing(sqlite3.connect(layout.db)) as db, db:
        db.execute("UPDATE jobs SET id = '../outside' WHERE id = 'kept'")
    tick_at(retention, time.time() + 7200)
    (problem,) = retention.problems()
    assert problem.startswith("the retention loop set aside job '../outside': not a job ID")

    loop = _Counter()
    loop.start()
    try:
        wait_until(lambda: loop.ticks == 1, what="the first tick")
        loop._stopping.set()  # the thread ends as if it had died
        loop.kick()
        assert loop._thread is not None
        loop._thread.join(10)
        loop._stopping.clear()
        assert loop.problems() == ["the counter loop stopped and was restarted"]
        wait_until(lambda: loop.ticks == 2, what="the restarted loop's first tick")
    finally:
        loop.stop()


def test_a_follow_never_iterated_gives_its_slot_back():
    slots = WaitSlots(threads=5)  # one slot
    body = slots.stream(iter([b"x"]))
    with pytest.raises(Unavailable):
        slots.stream(iter([]))
    body.close()  # as the server does with a body it never sent
    slots.stream(iter([])).close()


def test_a_finished_or_failed_follow_gives_its_slot_back():
    slots = WaitSlots(threads=5)
    assert list(slots.stream(iter([]))) == []

    def broken():
        yield b"a"
        raise OSError("disk gone")

    with pytest.raises(OSError):
        list(slots.stream(broken()))
    with slots.hold() as held:
        assert held
        with slots.hold() as second:
            assert not second  # full: a long-poll answers at once instead


def test_the_queue_monitor_sets_a_bad_row_aside_and_times_out_the_others(store):
    store, layout = store
    queues = Queues(store.queues, lambda at: None)
    queues.put("work", {"timeout": "10s", "expires_after": "1s"})
    good, bad = queues.add("work", {"input": 1}), queues.add("work", {"input": 2})
    assert queues.dequeue("work") is not None and queues.dequeue("work") is not None
    # a row no client could make: a status jobd does not know
    with contextlib.closing(sqlite3.connect(layout.db)) as db, db:
        db.execute("UPDATE qjobs SET status = 'lost' WHERE id = ?", (bad,))
    monitor = QueueMonitor(store.queues)

    later = time.time() + 60
    assert tick_at(monitor, later) is not None  # the good job's expiry is next
    assert queues.job(str(good)).status is QueueStatus.TIMED_OUT
    (problem,) = monitor.problems()
    assert problem.startswith(f"the queues loop set aside queue job {bad}: "), problem
    assert store.queues.next_due() == queues.job(str(good)).due_at  # the bad row: never again
    tick_at(monitor, later + 5)
    assert store.queues.job(good) is None  # expired; the loop went on
