"""--retention: finished jobs are swept (files and payloads) and then answer 410 Gone."""

from __future__ import annotations

import os

from conftest import assert_error, script, wait_until

SWEEP_DEADLINE = 30.0


def _bytes_on_disk(data_dir) -> int:
    total = 0
    for root, _, files in os.walk(data_dir):
        for name in files:
            if not name.startswith("jobd."):  # the store itself: jobd.db*, jobd.lock
                total += os.path.getsize(os.path.join(root, name))
    return total


def test_finished_job_is_removed_and_answers_410(jobd, gates):
    daemon = jobd.start("--retention", "1s", "--workers", "2")
    gate = gates()
    running = daemon.submit({"run.sh": script(gate.shell)})["ID"]
    daemon.wait_status(running, "RUNNING")
    payload = os.urandom(300_000)
    finished = daemon.submit({"run.sh": script("cp blob.bin copy.bin"), "blob.bin": payload})["ID"]
    assert daemon.wait_done(finished)["Status"] == "SUCCESS"
    assert len(daemon.job_dirs()) == 2

    wait_until(
        lambda: daemon.get(finished).status_code == 410,
        SWEEP_DEADLINE,
        "the finished job to be removed by retention",
    )
    assert_error(daemon.get(finished), 410)
    assert_error(daemon.get(finished, wait=5), 410)
    wait_until(lambda: len(daemon.job_dirs()) == 1, 10, "the job folder to be removed")
    wait_until(
        lambda: _bytes_on_disk(daemon.data_dir) < len(payload),
        10,
        "the input copy and result of the removed job to be deleted",
    )

    # Retention counts from the end of a job: one still running is never swept.
    still = daemon.get(running)
    assert still.status_code == 206, still.text
    gate.open()
    assert daemon.wait_done(running)["Status"] == "SUCCESS"
