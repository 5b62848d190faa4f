"""GET /metrics: Prometheus text that counts what happened."""

from __future__ import annotations

import re

import requests
from conftest import script, unique_id, wait_until


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one sample; 0 when the series has no sample yet."""
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def scrape(daemon) -> str:
    resp = requests.get(daemon.url + "/metrics", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return resp.text


def test_metrics_count_jobs_by_outcome(jobd, gates) -> None:
    daemon = jobd.start("--workers", "1")
    before = scrape(daemon)
    assert "# TYPE jobd_jobs_submitted_total counter" in before
    assert metric(before, "jobd_jobs_submitted_total", 'backend="local"') == 0

    for body in ("true", "exit 3"):
        job_id = unique_id("metrics")
        daemon.submit({"run.sh": script(body)}, job_id=job_id)
        daemon.wait_done(job_id)
    gate = gates()
    held = unique_id("held")
    daemon.submit({"run.sh": script(gate.shell)}, job_id=held)
    daemon.wait_status(held, "RUNNING")
    daemon.submit({"run.sh": script("true")})  # waits behind it

    text = scrape(daemon)
    assert metric(text, "jobd_jobs_submitted_total", 'backend="local"') == 4
    assert metric(text, "jobd_jobs_finished_total", 'status="SUCCESS"') == 1
    assert metric(text, "jobd_jobs_finished_total", 'status="FAILED"') == 1
    assert metric(text, "jobd_jobs_running") == 1
    assert metric(text, "jobd_jobs_queued") == 1
    assert metric(text, "jobd_job_duration_seconds_count") == 2
    assert metric(text, "jobd_upload_size_bytes_count") == 4
    gate.open()
    wait_until(
        lambda: metric(scrape(daemon), "jobd_jobs_finished_total", 'status="SUCCESS"') == 3,
        20,
        "the held jobs to be counted",
    )


def test_callback_deliveries_are_counted(jobd) -> None:
    daemon = jobd.start("--callback-retry-for", "1s")
    job_id = unique_id("hook")
    # nothing listens on port 9 of loopback: every attempt fails, then it is abandoned
    daemon.submit({"run.sh": script("true")}, job_id=job_id, callback_url="http://127.0.0.1:9/")
    wait_until(
        lambda: metric(scrape(daemon), "jobd_callback_deliveries_total", 'result="abandoned"'),
        20,
        "the abandoned delivery",
    )
    assert metric(scrape(daemon), "jobd_callback_deliveries_total", 'result="failed"') >= 1
