"""The client subcommands (`jobd submit/get/cancel/health`) against a real daemon."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import base_env, free_port, jobd_command, unique_id


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return ("--workers", "2", "--token", "cli-token")


def run(server, *args: str, token: str | None = "cli-token") -> subprocess.CompletedProcess:
    env = base_env({"JOBD_URL": server.url, **({"JOBD_TOKEN": token} if token else {})})
    return subprocess.run(jobd_command(*args), env=env, capture_output=True, timeout=60)


def job_folder(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "job"
    (folder / "data").mkdir(parents=True)
    (folder / "run.sh").write_text(f"#!/bin/sh\n{body}\n")
    (folder / "data" / "in.txt").write_text("input\n")
    return folder


def test_submit_waits_and_writes_the_result_zip(server, tmp_path: Path) -> None:
    folder = job_folder(tmp_path, "tr a-z A-Z < data/in.txt > out.txt")
    result = tmp_path / "result.zip"
    job_id = unique_id("cli")
    done = run(server, "submit", str(folder), "--id", job_id, "--wait", "--out", str(result))
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert (job["ID"], job["Status"]) == (job_id, "SUCCESS")
    assert "Output" not in job
    with zipfile.ZipFile(result) as archive:
        assert archive.read("out.txt") == b"INPUT\n"
        assert archive.read("data/in.txt") == b"input\n"

    again = tmp_path / "again.zip"
    fetched = run(server, "get", job_id, "--out", str(again))
    assert fetched.returncode == 0, fetched.stderr
    assert again.read_bytes() == result.read_bytes()


def test_a_failed_job_exits_1(server, tmp_path: Path) -> None:
    done = run(server, "submit", str(job_folder(tmp_path, "exit 4")), "--wait")
    assert done.returncode == 1
    assert json.loads(done.stdout)["ExitCode"] == 4


def test_cancel_and_get_without_waiting(server, tmp_path: Path) -> None:
    submitted = run(server, "submit", str(job_folder(tmp_path, "sleep 1000")))
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["ID"]
    pending = run(server, "get", job_id)
    assert pending.returncode == 0
    assert json.loads(pending.stdout)["Status"] in ("QUEUED", "RUNNING")
    cancelled = run(server, "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["Status"] == "CANCELLED"


def test_errors_are_one_clear_line(server, tmp_path: Path) -> None:
    unknown = run(server, "get", "no-such-job")
    assert unknown.returncode == 1
    assert b"404" in unknown.stderr and b"no-such-job" in unknown.stderr
    no_token = run(server, "get", "no-such-job", token=None)
    assert no_token.returncode == 1 and b"401" in no_token.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = run(server, "submit", str(empty))
    assert missing.returncode == 1 and b"run.sh" in missing.stderr


def test_health_is_an_exit_status(server) -> None:
    assert run(server, "health", token=None).returncode == 0
    down = subprocess.run(
        jobd_command("health", "--url", f"http://127.0.0.1:{free_port()}"),
        env=base_env(),
        capture_output=True,
        timeout=60,
    )
    assert down.returncode == 1
    assert b"cannot reach jobd" in down.stderr


def test_schedule_commands_from_a_json_file(server, tmp_path: Path) -> None:
    job_folder(tmp_path, "cat data/in.txt > out.txt")  # tmp_path/job, named by the file
    name = unique_id("cli-sched").lower()
    spec = tmp_path / "nightly.json"
    spec.write_text(json.dumps({"name": name, "schedule": "0 3 * * *", "folder": "job"}))

    made = run(server, "schedule", "create", "-f", str(spec))
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["schedule"] == "0 3 * * *"
    listed = run(server, "schedule", "list")
    assert name in {s["name"] for s in json.loads(listed.stdout)}
    triggered = run(server, "schedule", "trigger", name)
    run_id = json.loads(triggered.stdout)["run"]["ID"]
    waited = run(server, "get", run_id, "--wait", "30")
    assert json.loads(waited.stdout)["Status"] == "SUCCESS", waited.stdout
    history = json.loads(run(server, "schedule", "runs", name).stdout)
    assert [job["ID"] for job in history] == [run_id]
    assert run(server, "schedule", "disable", name).returncode == 0
    assert run(server, "schedule", "delete", name).returncode == 0
    gone = run(server, "schedule", "get", name)
    assert gone.returncode == 1 and b"404" in gone.stderr and b"Traceback" not in gone.stderr

    spec.write_text(json.dumps({"name": name, "schedule": "@daily", "folder": "nowhere"}))
    missing = run(server, "schedule", "create", "-f", str(spec))
    assert missing.returncode == 1 and b"does not exist" in missing.stderr


def test_a_yaml_schedule_file_like_chronos(server, tmp_path: Path) -> None:
    job_folder(tmp_path, "true")
    name = unique_id("yaml-sched").lower()
    spec = tmp_path / "nightly.yaml"
    spec.write_text(
        f"name: {name}\n"
        "schedule: '0 2 * * *'\n"
        "timezone: Europe/Amsterdam\n"
        "concurrency: forbid\n"
        "timeout: 10m\n"
        "retry:\n  max_attempts: 3\n  initial_interval: 10s\n"
        "env:\n  DATASET: latest\n"
        "folder: job\n"
    )
    made = run(server, "schedule", "create", "-f", str(spec))
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert (created["timezone"], created["timeout"], created["env"]) == (
        "Europe/Amsterdam",
        600.0,
        ["DATASET"],
    )
    assert created["retry"]["max_attempts"] == 3 and created["retry"]["initial_interval"] == 10.0
    spec.write_text("name: [unclosed\n")
    bad = run(server, "schedule", "create", "-f", str(spec))
    assert bad.returncode == 1 and b"is not YAML" in bad.stderr and b"Traceback" not in bad.stderr
