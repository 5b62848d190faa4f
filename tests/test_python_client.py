"""`jobd.client.JobdClient`, the Python client, against a real daemon."""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import free_port, unique_id

from jobd.client import ClientError, JobdClient, NotFinished

pytestmark = pytest.mark.source_only
TOKEN = "py-token"


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return ("--workers", "3", "--token", TOKEN, "--kill-grace", "1s")


@pytest.fixture
def client(server) -> JobdClient:
    return JobdClient(server.url, TOKEN)


def folder(tmp_path: Path, body: str, name: str = "job") -> Path:
    job = tmp_path / name
    (job / "in" / "empty").mkdir(parents=True)
    (job / "run.sh").write_text(f"#!/bin/sh\n{body}\n")
    (job / "in" / "data.txt").write_text("data\n")
    return job


def test_submit_wait_download(client: JobdClient, tmp_path: Path) -> None:
    job_id = unique_id("py")
    body = 'test -d in/empty && cat in/data.txt > out.txt && echo "$GREETING" && exit 3'
    job = client.submit(folder(tmp_path, body), id=job_id, timeout="1m", env={"GREETING": "hi"})
    assert (job["ID"], job["Timeout"]) == (job_id, 60.0)
    done = client.wait(job_id, timeout=30)
    assert (done["Status"], done["ExitCode"]) == ("FAILED", 3)
    assert "Output" not in done
    got = client.download(job_id, tmp_path / "results")
    assert got["ID"] == job_id
    assert (tmp_path / "results" / "out.txt").read_text() == "data\n"
    assert (tmp_path / "results" / "jobd.stdout").read_text() == "hi\n"
    assert (tmp_path / "results" / "in" / "empty").is_dir()
    assert list(client.logs(job_id)) == ["hi"]
    with pytest.raises(ClientError, match="already exists"):
        client.download(job_id, tmp_path / "results")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job", "results"]  # no leftovers


def test_a_zip_is_sent_as_it_is(client: JobdClient, tmp_path: Path) -> None:
    zipped = tmp_path / "job.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("run.sh", "#!/bin/sh\necho zipped\n")
    job = client.wait(client.submit(zipped)["ID"], timeout=30)
    assert job["Status"] == "SUCCESS"
    assert list(client.logs(job["ID"])) == ["zipped"]


def test_logs_follow_cancel_and_list(client: JobdClient, tmp_path: Path, gates) -> None:
    gate = gates()
    body = f"echo first\n{gate.shell}\necho second\nexec sleep 60"
    job_id = client.submit(folder(tmp_path, body))["ID"]
    lines = client.logs(job_id, follow=True)
    assert next(lines) == "first"  # before the job ends
    assert client.get(job_id)["Status"] == "RUNNING"
    gate.open()
    assert next(lines) == "second"
    threading.Timer(0.0, client.cancel, [job_id]).start()
    assert list(lines) == []  # the follow ends with the job
    assert client.get(job_id)["Status"] == "CANCELLED"
    with pytest.raises(ClientError) as finished:
        client.cancel(job_id)
    assert finished.value.status == 409 and "already finished" in finished.value.message

    listed = client.list(limit=2)
    assert listed[0]["ID"] == job_id and len(listed) == 2 and "Output" not in listed[0]
    older = client.list(limit=1, before=listed[0]["IntID"])
    assert older == listed[1:]
    assert all(job["Status"] == "CANCELLED" for job in client.list(status="CANCELLED"))


def test_waiting_has_a_deadline(client: JobdClient, tmp_path: Path, gates) -> None:
    gate = gates()
    job_id = client.submit(folder(tmp_path, gate.shell))["ID"]
    with pytest.raises(NotFinished) as pending:
        client.wait(job_id, timeout=0.3)
    assert pending.value.job["Status"] in ("QUEUED", "RUNNING")
    with pytest.raises(NotFinished):
        client.download(job_id, tmp_path / "early")
    assert not (tmp_path / "early").exists()
    with pytest.raises(NotFinished):
        client.save_result(job_id, tmp_path / "early.zip", timeout=0.1)
    assert not (tmp_path / "early.zip").exists()
    gate.open()
    assert client.wait(job_id)["Status"] == "SUCCESS"


def test_errors_carry_the_daemons_message(server, client: JobdClient, tmp_path: Path) -> None:
    with pytest.raises(ClientError) as unknown:
        client.get("no-such-job")
    assert unknown.value.status == 404 and "no-such-job" in unknown.value.message
    with pytest.raises(ClientError, match="no-such-job"):
        client.logs("no-such-job")  # at the call, not at the first line
    with pytest.raises(ClientError) as no_token:
        JobdClient(server.url).list()
    assert no_token.value.status == 401
    with pytest.raises(ClientError) as down:
        JobdClient(f"http://127.0.0.1:{free_port()}").health()
    assert down.value.status is None and "connection refused" in down.value.message
    with pytest.raises(ClientError, match="does not exist"):
        client.submit(tmp_path / "nowhere")
    with pytest.raises(ClientError, match="script itself"):
        client.submit(folder(tmp_path, "true") / "run.sh")
    with pytest.raises(ClientError, match="not an http"):
        JobdClient("ftp://example.invalid")
    with pytest.raises(ClientError) as bad_env:
        client.submit(folder(tmp_path, "true", "env"), env={"JOBD_X": "1"})
    assert bad_env.value.status == 400 and "JOBD_" in bad_env.value.message
    assert sorted(os.listdir(tmp_path)) == ["env", "job"]
