"""The client commands (`jobd submit/status/logs/cancel/result/list/get/health`) run as a
shell runs them, as subprocesses, against a real daemon: through pipes, and under a
pseudo-terminal for what a person sees."""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import select
import signal
import subprocess
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import base_env, free_port, jobd_command, on_a_terminal, unique_id, wait_until

TOKEN = "cli-token"


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return ("--workers", "3", "--token", TOKEN, "--kill-grace", "1s")


def run(
    server, *args: str, token: str | None = TOKEN, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = base_env({"JOBD_URL": server.url, **({"JOBD_TOKEN": token} if token else {})})
    return subprocess.run(
        jobd_command(*args), env=env, capture_output=True, text=True, timeout=60, cwd=cwd
    )


def start(server, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    env = base_env({"JOBD_URL": server.url, "JOBD_TOKEN": TOKEN})
    return subprocess.Popen(
        jobd_command(*args),
        env=env,
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finished(server, folder: Path, job_id: str, out: Path) -> None:
    """`submit --wait` of a job that succeeds, its result unpacked into `out`."""
    done = run(server, "submit", str(folder), "--id", job_id, "--wait", "-o", str(out))
    assert done.returncode == 0, (done.stdout, done.stderr)


def wait_running(server, job_id: str) -> None:
    """Until the job (submitted by a command that may still be starting) is RUNNING."""

    def running() -> bool:
        answer = server.get(job_id)
        return answer.status_code in (202, 206) and answer.json()["Status"] == "RUNNING"

    wait_until(running, 30, f"job {job_id} to run")


def one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The command failed with `code` and said why in one line, with `words`, no traceback."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def job_folder(tmp_path: Path, body: str, name: str = "job") -> Path:
    """A job folder with a nested input and empty folders (a `zip -r` keeps those)."""
    folder = tmp_path / name
    (folder / "data" / "deep").mkdir(parents=True)
    (folder / "empty" / "deeper").mkdir(parents=True)
    (folder / "run.sh").write_text(f"#!/bin/sh\n{body}\n")
    (folder / "data" / "deep" / "in.txt").write_text("input\n")
    return folder


def test_submit_wait_hands_back_the_files_and_run_sh_exit_code(server, tmp_path: Path) -> None:
    folder = job_folder(
        tmp_path,
        "test -d empty/deeper || exit 9\nmkdir -p out/sub\n"
        "tr a-z A-Z < data/deep/in.txt > out/sub/upper.txt\necho done",
    )
    job_id = unique_id("cli")
    out = tmp_path / "results"
    done = run(server, "submit", str(folder), "--id", job_id, "--wait", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # through a pipe: no bar, no status line
    assert done.stdout.splitlines() == [f"{job_id} SUCCESS, exit code 0; results in {out}"]
    assert (out / "out" / "sub" / "upper.txt").read_text() == "INPUT\n"
    assert (out / "data" / "deep" / "in.txt").read_text() == "input\n"
    assert (out / "empty" / "deeper").is_dir()
    assert (out / "jobd.stdout").read_text() == "done\n"
    assert os.access(out / "run.sh", os.X_OK)

    failed = run(
        server,
        "submit",
        str(job_folder(tmp_path, "echo oops >&2; exit 4", "f")),
        "--wait",
        cwd=tmp_path,
    )
    assert failed.returncode == 4, failed.stderr
    assert "FAILED, exit code 4" in failed.stdout


@pytest.mark.source_only
def test_default_results_folder_and_a_taken_one(server, tmp_path: Path) -> None:
    folder = job_folder(tmp_path, "echo hi > hi.txt")
    job_id = unique_id("cli-default")
    done = run(server, "submit", str(folder), "--id", job_id, "--wait", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / f"{job_id}-results" / "hi.txt").read_text() == "hi\n"
    # the same folder again is refused before anything is sent
    again = run(
        server,
        "submit",
        str(folder),
        "--id",
        job_id + "-2",
        "--wait",
        "-o",
        str(tmp_path / f"{job_id}-results"),
    )
    one_line(again, 1, "already exists")
    assert server.get(job_id + "-2", token=TOKEN).status_code == 404
    # a name ending in .zip gets the zip itself, as `--out result.zip` always did
    zipped = tmp_path / "result.zip"
    assert run(server, "submit", str(folder), "--wait", "--out", str(zipped)).returncode == 0
    with zipfile.ZipFile(zipped) as archive:
        assert archive.read("hi.txt") == b"hi\n"


def test_a_timed_out_job_exits_124(server, tmp_path: Path) -> None:
    folder = job_folder(tmp_path, "exec sleep 60")
    done = run(
        server, "submit", str(folder), "--timeout", "1s", "--wait", "-o", str(tmp_path / "o")
    )
    assert done.returncode == 124, (done.stdout, done.stderr)
    assert "FAILED" in done.stdout


def waiting_submit(
    server,
    tmp_path: Path,
    gates,
    prefix: str,
    meanwhile: Callable[[str, subprocess.Popen[str]], None],
) -> tuple[str, subprocess.Popen[str], str, str]:
    """`submit --wait` of a job held RUNNING, and `meanwhile(job_id, process)` once it runs;
    the job's ID, the process once it ended, and what it printed."""
    job_id = unique_id(prefix)
    folder = job_folder(tmp_path, gates().shell)
    waiting = start(server, "submit", str(folder), "--id", job_id, "--wait", cwd=tmp_path)
    try:
        wait_running(server, job_id)
        meanwhile(job_id, waiting)
        out, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    return job_id, waiting, out, err


def test_cancel_ends_a_waiting_submit_with_130(server, tmp_path: Path, gates) -> None:
    def cancel(job_id: str, _: subprocess.Popen[str]) -> None:
        cancelled = run(server, "cancel", job_id)
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.splitlines() == [f"{job_id} CANCELLED"]

    job_id, waiting, out, err = waiting_submit(server, tmp_path, gates, "cli-cancel", cancel)
    assert waiting.returncode == 130, (out, err)
    assert f"{job_id} CANCELLED" in out
    again = run(server, "cancel", job_id)
    one_line(again, 1, job_id, "already finished", "409")


def test_logs_follow_shows_lines_as_they_are_written(server, tmp_path: Path, gates) -> None:
    gate = gates()
    folder = job_folder(tmp_path, f"echo first\necho to-stderr >&2\n{gate.shell}\necho second")
    submitted = run(server, "submit", str(folder))
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    follower = start(server, "logs", job_id, "--follow")
    try:
        assert follower.stdout is not None
        ready, _, _ = select.select([follower.stdout], [], [], 30)
        assert ready, "no line from logs --follow within 30 s"
        assert follower.stdout.readline() == "first\n"  # through a pipe, before the job ends
        assert server.job(job_id)["Status"] == "RUNNING"
        gate.open()
        rest, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    assert rest == "second\n"
    assert run(server, "logs", job_id).stdout == "first\nsecond\n"
    assert run(server, "logs", job_id, "--stderr").stdout == "to-stderr\n"


@pytest.mark.source_only
def test_status_result_and_get(server, tmp_path: Path, gates) -> None:
    job_id = unique_id("cli-status")
    finished(server, job_folder(tmp_path, "echo hello > out.txt"), job_id, tmp_path / "first")

    as_json = run(server, "status", job_id, "--json")
    assert as_json.returncode == 0, as_json.stderr
    sent = server.get(job_id).json()
    del sent["Output"]
    assert json.loads(as_json.stdout) == sent
    text = run(server, "status", job_id).stdout
    assert any(line.split() == ["Status", "SUCCESS"] for line in text.splitlines()), text

    out = tmp_path / "again"
    fetched = run(server, "result", job_id, "-o", str(out))
    assert fetched.returncode == 0, fetched.stderr
    assert (out / "out.txt").read_text() == "hello\n"
    one_line(run(server, "result", job_id, "-o", str(out)), 1, "already exists")

    gate = gates()
    pending = run(server, "submit", str(job_folder(tmp_path, gate.shell, "pending")))
    pending_id = pending.stdout.strip()
    server.wait_status(pending_id, "RUNNING")
    early = run(server, "result", pending_id, "-o", str(tmp_path / "early"))
    one_line(early, 3, pending_id, "RUNNING")
    assert not (tmp_path / "early").exists()
    # get keeps its old output, but not finished in time is exit 3 and no file
    zipped = tmp_path / "f.zip"
    waited = run(server, "get", pending_id, "--wait", "0.5", "--out", str(zipped))
    assert waited.returncode == 3, waited.stderr
    assert json.loads(waited.stdout)["Status"] == "RUNNING"
    assert "still RUNNING" in waited.stderr and "not written" in waited.stderr
    assert not zipped.exists() and list(tmp_path.glob(".f.zip*")) == []
    gate.open()
    got = run(server, "get", pending_id, "--wait", "30", "--out", str(zipped))
    assert got.returncode == 0, got.stderr
    assert zipfile.ZipFile(zipped).read("jobd.stdout") == b""


@pytest.mark.source_only
def test_list_is_a_table_newest_first_and_pages(server, tmp_path: Path) -> None:
    folder = job_folder(tmp_path, "exit 0")
    ids = [unique_id(f"cli-list{n}") for n in range(3)]
    for job_id in ids:
        finished(server, folder, job_id, tmp_path / job_id)
    listed = run(server, "list", "--limit", "3", "--json")
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)
    assert [job["ID"] for job in jobs] == ids[::-1]
    assert all("Output" not in job for job in jobs)
    assert jobs == server.api("GET", "/api/jobs", params={"limit": 3}).json()
    older = json.loads(
        run(server, "list", "--limit", "1", "--before", str(jobs[0]["IntID"]), "--json").stdout
    )
    assert [job["ID"] for job in older] == [ids[1]]

    table = run(server, "list", "--limit", "3").stdout.splitlines()
    assert table[0].split() == [
        "ID", "INTID", "STATUS", "ATTEMPT", "USER", "SERVICE", "AGE", "DURATION", "EXIT"
    ]  # fmt: skip
    assert [row.split()[:2] for row in table[1:]] == [
        [job["ID"], str(job["IntID"])] for job in jobs
    ]
    assert all(row.split()[2:6] == ["SUCCESS", "-", "-", "default"] for row in table[1:])
    assert all(row.split()[-1] == "0" for row in table[1:])
    assert "\x1b" not in "".join(table)  # no colour codes through a pipe
    assert run(server, "list", "--status", "FAILED", "--limit", "1000", "--json").returncode == 0


@pytest.mark.source_only
def test_every_error_is_one_line_and_a_non_zero_exit(server, tmp_path: Path) -> None:
    port = free_port()
    down = run(server, "list", "--url", f"http://127.0.0.1:{port}")
    line = one_line(down, 1, f"cannot reach jobd at http://127.0.0.1:{port}", "connection refused")
    assert "jobd serve" in line
    one_line(run(server, "status", "x", token=None), 1, "needs a token", "--token", "JOBD_TOKEN")
    one_line(run(server, "list", token="wrong"), 1, "refused the token", "--token")
    one_line(run(server, "status", "no-such-job"), 1, "no-such-job", "404")
    one_line(run(server, "logs", "no-such-job"), 1, "no-such-job", "404")
    one_line(run(server, "cancel", "no-such-job"), 1, "no-such-job", "404")

    missing = tmp_path / "nonexistent"
    one_line(run(server, "submit", f"{missing}/"), 1, "does not exist")
    folder = job_folder(tmp_path, "true")
    one_line(run(server, "submit", str(folder / "run.sh")), 1, "is the script itself", "folder")
    (folder / "notes.txt").write_text("not a zip")
    one_line(run(server, "submit", str(folder / "notes.txt")), 1, "is not a zip")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line(run(server, "submit", str(empty)), 1, "has no run.sh")
    one_line(run(server, "submit", str(folder), "--env", "no-equals"), 1, "NAME=VALUE")

    typo = one_line(run(server, "sumbit", str(folder)), 2, "'sumbit'", "did you mean 'submit'")
    assert "status" in typo and "list" in typo
    one_line(run(server, "version"), 2, "--version")


@pytest.mark.source_only
def test_an_expired_job_is_410_in_one_line(jobd, tmp_path: Path) -> None:
    daemon = jobd.start("--retention", "1s", "--token", TOKEN)
    job_id = unique_id("cli-expired")
    finished(daemon, job_folder(tmp_path, "true"), job_id, tmp_path / "o")
    wait_until(lambda: daemon.get(job_id).status_code == 410, 30, "the job to expire")
    one_line(run(daemon, "status", job_id), 1, job_id, "retention", "410")
    one_line(run(daemon, "result", job_id), 1, "retention", "410")
    assert not (tmp_path / f"{job_id}-results").exists()


class _Hostile(http.server.BaseHTTPRequestHandler):
    """A daemon that answers every job with a result zip holding `entries`."""

    entries: ClassVar[list[tuple[zipfile.ZipInfo, bytes]]] = []

    def do_GET(self) -> None:
        packed = io.BytesIO()
        with zipfile.ZipFile(packed, "w") as archive:
            for info, data in self.entries:
                archive.writestr(info, data)
        job = {"ID": "evil", "Status": "SUCCESS", "ExitCode": 0}
        body = json.dumps(job | {"Output": base64.b64encode(packed.getvalue()).decode()})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[tuple[str, type[_Hostile]]]:
    handler = type("Handler", (_Hostile,), {"entries": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def _link(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info, target.encode()


@pytest.mark.parametrize(
    "entry",
    [
        (zipfile.ZipInfo("../escape.txt"), b"x"),
        (zipfile.ZipInfo("/tmp/absolute.txt"), b"x"),
        _link("link", "/etc/passwd"),
    ],
    ids=["dotdot", "absolute", "symlink"],
)
@pytest.mark.source_only
def test_result_refuses_unsafe_zip_entries(hostile, tmp_path: Path, entry) -> None:
    url, handler = hostile
    handler.entries[:] = [(zipfile.ZipInfo("fine.txt"), b"ok"), entry]
    workdir = tmp_path / "work"
    workdir.mkdir()
    done = subprocess.run(
        jobd_command("result", "evil", "-o", "out", "--url", url),
        env=base_env(),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    one_line(done, 1, entry[0].filename)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["work"]  # nothing unpacked anywhere


def _under_a_terminal(
    server, args: list[str], cwd: Path, when_drawn: tuple[str, Callable[[], None]] | None = None
) -> tuple[int, str]:
    """The command on a pseudo-terminal (conftest's on_a_terminal); `when_drawn`: (text,
    action): the action runs once the text is on the terminal."""
    env = base_env({"JOBD_URL": server.url, "JOBD_TOKEN": TOKEN, "TERM": "xterm", "COLUMNS": "100"})
    replies = [(when_drawn[0], lambda _side: when_drawn[1]())] if when_drawn else []
    return on_a_terminal(jobd_command(*args), env, cwd, replies)


def test_a_terminal_shows_upload_progress_and_a_live_status(server, tmp_path: Path, gates) -> None:
    gate = gates()
    folder = job_folder(tmp_path, f"{gate.shell}\nexit 5")
    (folder / "big.bin").write_bytes(os.urandom(6 << 20))  # over the bar's 4 MB
    job_id = unique_id("cli-tty")
    args = ["submit", str(folder), "--id", job_id, "--wait", "-o", "out"]
    code, drawn = _under_a_terminal(server, args, tmp_path, ("RUNNING", gate.open))
    assert code == 5, drawn
    assert "uploading" in drawn  # the bar
    assert "RUNNING" in drawn and "\x1b[" in drawn  # the live line, drawn with escapes
    assert f"{job_id} FAILED, exit code 5; results in out" in drawn
    assert (tmp_path / "out" / "big.bin").stat().st_size == 6 << 20

    code, table = _under_a_terminal(server, ["list", "--limit", "2"], tmp_path)
    assert code == 0 and job_id in table and "STATUS" in table


def test_health_is_an_exit_status(server) -> None:
    assert run(server, "health", token=None).returncode == 0
    one_line(
        run(server, "health", "--url", f"http://127.0.0.1:{free_port()}"), 1, "cannot reach jobd"
    )


@pytest.mark.source_only
def test_schedule_commands_from_a_json_file(server, tmp_path: Path) -> None:
    job_folder(tmp_path, "cat data/deep/in.txt > out.txt")  # tmp_path/job, named by the file
    name = unique_id("cli-sched").lower()
    spec = tmp_path / "nightly.json"
    spec.write_text(json.dumps({"name": name, "schedule": "0 3 * * *", "folder": "job"}))

    made = run(server, "schedule", "create", "-f", str(spec), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["schedule"] == "0 3 * * *"
    listed = run(server, "schedule", "list", "--json")
    assert name in {s["name"] for s in json.loads(listed.stdout)}
    triggered = run(server, "schedule", "trigger", name, "--json")
    run_id = json.loads(triggered.stdout)["run"]["ID"]
    waited = run(server, "get", run_id, "--wait", "30")
    assert json.loads(waited.stdout)["Status"] == "SUCCESS", waited.stdout
    history = json.loads(run(server, "schedule", "runs", name, "--json").stdout)
    assert [job["ID"] for job in history] == [run_id]
    table = run(server, "schedule", "runs", name).stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "INTID", "STATUS"] and run_id in table[1], table
    (row,) = [line for line in run(server, "schedule", "list").stdout.splitlines() if name in line]
    assert "0 3 * * *" in row and " yes " in row, row
    disabled = run(server, "schedule", "disable", name)
    assert disabled.stdout.splitlines() == [f"schedule {name} disabled; next fire -"]
    deleted = run(server, "schedule", "delete", name)
    assert deleted.stdout.splitlines() == [f"schedule {name} deleted (its runs stay)"]
    gone = run(server, "schedule", "get", name)
    assert gone.returncode == 1 and "404" in gone.stderr and "Traceback" not in gone.stderr

    spec.write_text(json.dumps({"name": name, "schedule": "@daily", "folder": "nowhere"}))
    missing = run(server, "schedule", "create", "-f", str(spec))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


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
    made = run(server, "schedule", "create", "-f", str(spec), "--json")
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
    assert bad.returncode == 1 and "is not YAML" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.source_only
def test_a_reader_that_stops_early_is_not_an_error(server, tmp_path: Path) -> None:
    """`jobd logs ID | head -1`: no traceback, the exit a shell expects after SIGPIPE."""
    folder = job_folder(tmp_path, "seq 1 300000")  # far more than a pipe holds
    job_id = unique_id("cli-pipe")
    finished(server, folder, job_id, tmp_path / "o")
    reader = start(server, "logs", job_id)
    assert reader.stdout is not None and reader.stderr is not None
    assert reader.stdout.readline() == "1\n"
    reader.stdout.close()
    assert reader.wait(30) == 141
    assert reader.stderr.read() == ""


@pytest.mark.source_only
def test_ctrl_c_while_waiting_leaves_the_job_running(server, tmp_path: Path, gates) -> None:
    def interrupt(_: str, waiting: subprocess.Popen[str]) -> None:
        waiting.send_signal(signal.SIGINT)

    job_id, waiting, out, err = waiting_submit(server, tmp_path, gates, "cli-int", interrupt)
    assert waiting.returncode == 130, (out, err)
    assert err.splitlines() == [
        f"jobd: interrupted; job {job_id} keeps running (jobd cancel {job_id} ends it)"
    ]
    assert server.job(job_id)["Status"] == "RUNNING"


@pytest.mark.source_only
def test_a_full_disk_while_storing_a_result_is_one_line_and_leaves_nothing(
    server, tmp_path: Path, small_disk: Path
) -> None:
    folder = job_folder(tmp_path, "head -c 50000000 /dev/urandom > big.bin")  # over the 40 MB
    job_id = unique_id("cli-full")
    kept = tmp_path / "kept.zip"
    finished(server, folder, job_id, kept)
    unpacked = run(server, "result", job_id, "-o", str(small_disk / "out"))
    one_line(unpacked, 1, f"cannot store the result of job '{job_id}'", "No space left on device")
    zipped = run(server, "get", job_id, "--out", str(small_disk / "result.zip"))
    one_line(zipped, 1, "No space left on device")
    assert list(small_disk.iterdir()) == []  # no partial zip, no half-unpacked folder
