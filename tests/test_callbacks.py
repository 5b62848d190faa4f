"""Completion callbacks, received by a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import assert_error, free_port, script, unique_id, wait_until


class Receiver:
    """Records every POST; answers 500 to the first `failures` of them."""

    def __init__(self, port: int = 0, failures: int = 0) -> None:
        self.calls: list[tuple[float, dict]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.calls.append((time.monotonic(), body))
                failing = len(receiver.calls) <= receiver.failures
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_the_job_object_is_posted_when_the_job_ends(jobd, receiver) -> None:
    hook = receiver()
    daemon = jobd.start()
    job_id = unique_id("hook")
    daemon.submit({"run.sh": script("exit 0")}, job_id=job_id, callback_url=hook.url)
    wait_until(lambda: hook.calls, 20, "the callback")
    body = hook.calls[0][1]
    assert (body["ID"], body["Status"], body["ExitCode"]) == (job_id, "SUCCESS", 0)
    assert "Output" not in body


def test_a_failed_delivery_is_retried_soon(jobd, receiver) -> None:
    hook = receiver(failures=2)
    daemon = jobd.start()
    daemon.submit({"run.sh": script("exit 1")}, callback_url=hook.url)
    wait_until(lambda: len(hook.calls) >= 3, 30, "two retries")
    (first, _), (second, _), (third, body) = hook.calls[:3]
    assert second - first < 2.5, "the first retry should come within about 2 s"
    assert third - second > second - first, "the gaps should grow"
    assert body["Status"] == "FAILED"


def test_a_pending_delivery_survives_a_restart(jobd, receiver) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"  # nobody listens yet
    daemon = jobd.start()
    job_id = unique_id("hook")
    daemon.submit({"run.sh": script("true")}, job_id=job_id, callback_url=url)
    daemon.wait_done(job_id)
    wait_until(lambda: "callback to" in daemon.log(), 20, "a first, failed delivery")
    daemon.kill9()

    hook = receiver(port=port)
    jobd.start(data_dir=daemon.data_dir)
    wait_until(lambda: hook.calls, 30, "the delivery after the restart")
    assert hook.calls[0][1]["ID"] == job_id


def test_bad_callback_urls_are_400(jobd) -> None:
    daemon = jobd.start("--callback-allow", "hooks.example.org,127.0.0.*")
    files = {"run.sh": script("true")}
    for url in (
        "ftp://127.0.0.1/x",
        "not a url",
        42,
        "http://127.1.2.3/x",
    ):  # loopback, not allowed
        assert_error(daemon.upload(files, callback_url=url), 400)
    assert daemon.upload(files, callback_url="http://127.0.0.1:9/x").status_code == 201
