"""Authenticated callbacks (Chronos's bearer, basic and api_key): the headers arrive at a real
receiver on loopback, and the secret appears in no API answer, log line or metric."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import assert_error, script, unique_id, wait_until

pytestmark = pytest.mark.source_only

SECRET = "s3cret-7f1c9e"


class HeaderReceiver:
    """Records the headers of every POST and answers 204."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.headers.append(dict(self.headers.items()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook():
    receiver = HeaderReceiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


BASIC = "Basic " + base64.b64encode(f"lab:{SECRET}".encode()).decode()


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        ({"type": "bearer", "token": SECRET}, "Authorization", f"Bearer {SECRET}"),
        ({"type": "basic", "username": "lab", "password": SECRET}, "Authorization", BASIC),
        ({"type": "api_key", "header": "X-Api-Key", "key": SECRET}, "X-Api-Key", SECRET),
    ],
    ids=["bearer", "basic", "api_key"],
)
def test_the_callback_proves_itself_and_the_secret_stays_hidden(jobd, hook, auth, header, value):
    daemon = jobd.start("--callback-allow", "127.0.0.1")
    job_id = unique_id("auth")
    job = daemon.submit(
        {"run.sh": script("echo done")}, job_id=job_id, callback={"url": hook.url, "auth": auth}
    )
    wait_until(lambda: hook.headers, 20, "the callback")
    assert hook.headers[0].get(header) == value, hook.headers[0]

    answers = [json.dumps(job), daemon.get(job_id).text, daemon.api("GET", "/metrics").text]
    answers += [daemon.api("GET", "/health").text, daemon.api("GET", "/api/services").text]
    for text in [*answers, daemon.log()]:
        assert SECRET not in text and BASIC.split()[1] not in text, text[:500]
    assert json.loads(daemon.get(job_id).text)["CallbackURL"] == hook.url


@pytest.mark.parametrize(
    "callback",
    [
        {"url": "http://127.0.0.1:9/x", "auth": {"type": "oauth", "token": "x"}},
        {"url": "http://127.0.0.1:9/x", "auth": {"type": ["bearer"], "token": "x"}},
        {"url": "http://127.0.0.1:9/x", "auth": "bearer x"},
        {"url": "http://127.0.0.1:9/x", "auth": {"type": "bearer"}},
        {"url": "http://127.0.0.1:9/x", "auth": {"type": "bearer", "token": ""}},
        {"url": "http://127.0.0.1:9/x", "auth": {"type": "bearer", "token": "a\nb"}},
        {
            "url": "http://127.0.0.1:9/x",
            "auth": {"type": "basic", "username": "a:b", "password": "x"},
        },
        {"url": "http://127.0.0.1:9/x", "auth": {"type": "api_key", "header": "X Key", "key": "x"}},
        {"url": "http://127.0.0.1:9/x", "auth": {"type": "bearer", "token": "x", "extra": 1}},
        {"auth": {"type": "bearer", "token": "x"}},
        "http://127.0.0.1:9/x",
    ],
)
def test_a_bad_callback_is_a_400_that_keeps_nothing(server, callback):
    before = server.job_dirs()
    job_id = unique_id("badhook")
    resp = server.upload({"run.sh": script("true")}, job_id=job_id, callback=callback)
    assert_error(resp, 400)
    server.assert_nothing_written(before, job_id)


def test_callback_and_callback_url_together_are_a_400(server):
    resp = server.upload(
        {"run.sh": script("true")},
        callback={"url": "http://127.0.0.1:9/x"},
        callback_url="http://127.0.0.1:9/x",
    )
    assert_error(resp, 400)
