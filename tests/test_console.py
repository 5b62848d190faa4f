"""The command line as a person and a script use it, against a real daemon on loopback: every
exit code of the table in docs/cli.md through pipes, the verbs that wait, cancel, retry and
read logs, `-o` that means one thing everywhere, mistyped flags, the zip step, the profile
file, completion, and what a terminal shows (a real pseudo-terminal: the y/N question, the
live status line)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    JOB_PYTHON,
    base_env,
    free_port,
    jobd_command,
    on_a_terminal,
    unique_id,
    wait_until,
)

TOKEN = "console-token"


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return ("--workers", "8", "--token", TOKEN, "--kill-grace", "1s")


def _env(server, extra: dict[str, str] | None = None) -> dict[str, str]:
    return base_env({"JOBD_URL": server.url, "JOBD_TOKEN": TOKEN, **(extra or {})})


def run(
    server, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        jobd_command(*args),
        env=env or _env(server),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def start(server, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        jobd_command(*args),
        env=_env(server),
        cwd=cwd,
        text=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def run_all(
    server, *commands: tuple[str, ...], env: dict[str, str] | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """Commands side by side (the binary takes most of a second to start), as `run` would."""
    started = [
        subprocess.Popen(
            jobd_command(*args),
            env=env or _env(server),
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for args in commands
    ]
    done = []
    for proc, args in zip(started, commands, strict=True):
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(list(args), proc.returncode, out, err))
    return done


def api_job(server, body: str) -> str:
    """A job submitted through the API (quicker than the command where that is not the point)."""
    return str(server.submit({"run.sh": (f"#!/bin/sh\n{body}\n", 0o755)})["ID"])


def one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The command exited `code` and said why in one line holding `words`, no traceback."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def folder(tmp_path: Path, body: str, name: str | None = None, newline: str = "\n") -> Path:
    made = tmp_path / (name or unique_id("job"))
    made.mkdir()
    (made / "run.sh").write_bytes(f"#!/bin/sh{newline}{body}{newline}".encode())
    (made / "run.sh").chmod(0o755)
    return made


def submitted(server, tmp_path: Path, body: str, *flags: str) -> str:
    done = run(server, "submit", str(folder(tmp_path, body)), *flags)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def under_a_terminal(
    server,
    args: list[str],
    cwd: Path,
    replies: list[tuple[str, Callable[[int], None]]],
) -> tuple[int, str]:
    """The command on a pseudo-terminal (conftest's on_a_terminal), against `server`."""
    env = _env(server, {"TERM": "xterm", "COLUMNS": "120"})
    return on_a_terminal(jobd_command(*args), env, cwd, replies)


# ---------------------------------------------------------------------- the exit-code table


#: run.sh bodies and the code `submit --wait` must exit with.
TABLE = [
    ("exit 0", 0, "SUCCESS, exit code 0"),
    ("exit 3", 3, "FAILED, exit code 3"),
    ("exit 1", 1, "FAILED, exit code 1"),
    ("kill -9 $$", 137, "SIGKILL"),
]


def test_every_exit_code_of_the_table_through_pipes(server, tmp_path: Path, gates) -> None:
    """run.sh's own code, 128+N for a signal, 124 for the time limit, 126 for a run.sh that
    never started (CRLF), 130 for a cancel; 1 and 2 for the command's own failures; and with
    --exit-code-from cli, 0 for any finished job, so 1, 2 and 3 are only the command's."""
    waits = [
        (start(server, "submit", str(folder(tmp_path, body)), "--wait", cwd=tmp_path), code, said)
        for body, code, said in TABLE
    ]
    slow = folder(tmp_path, "exec sleep 60")
    waits.append(
        (start(server, "submit", str(slow), "--timeout", "1s", "--wait", cwd=tmp_path), 124, "")
    )
    crlf = folder(tmp_path, "echo never", newline="\r\n")
    waits.append((start(server, "submit", str(crlf), "--wait", cwd=tmp_path), 126, "CRLF"))
    gate = gates()
    held = api_job(server, gate.shell)
    waits.append((start(server, "wait", held), 130, f"{held} CANCELLED, exit code 130"))
    server.wait_status(held, "RUNNING")
    assert server.cancel(held).status_code == 200
    failed = api_job(server, "exit 3")
    for proc, code, said in waits:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == code, (code, out, err)
        assert said in out and err == "", (out, err)

    server.wait_done(failed)
    unreachable = f"http://127.0.0.1:{free_port()}"
    as_cli, as_zip, as_env, down, usage = run_all(
        server,
        ("wait", failed, "--exit-code-from", "cli"),
        ("result", failed, "-o", str(tmp_path / "r.zip")),
        ("get", failed, "--exit-code-from", "cli"),
        ("wait", failed, "--url", unreachable),
        ("wait", failed, "--timeuot", "1s"),
    )
    assert as_cli.returncode == 0 and "exit code 3" in as_cli.stdout, as_cli
    assert as_zip.returncode == 3, as_zip.stderr
    assert as_env.returncode == 0, as_env.stderr
    one_line(down, 1, "cannot reach jobd", unreachable)
    one_line(usage, 2, "did you mean --timeout?")
    cli_env = _env(server, {"JOBD_EXIT_CODE_FROM": "cli"})
    assert run(server, "result", failed, "-o", str(tmp_path / "r2"), env=cli_env).returncode == 0


def test_wait_result_and_get_agree_and_o_zip_is_a_zip(server, tmp_path: Path) -> None:
    """Several IDs: the first in the order given that did not succeed decides; `result` and
    `get` of a FAILED job exit with its code; `-o x.zip` is the zip itself, a folder else."""
    ok = api_job(server, "echo fine > out.txt")
    three = api_job(server, "echo partial > out.txt; exit 3")
    five = api_job(server, "exit 5")
    zipped, unpacked = tmp_path / "x.zip", tmp_path / "x"
    waited, other_order, alone, got, into_folder, as_get = run_all(
        server,
        ("wait", ok, three, five),
        ("wait", ok, five, three),
        ("wait", ok),
        ("result", three, "--wait", "-o", str(zipped)),
        ("result", three, "--wait", "-o", str(unpacked)),
        ("get", three, "--wait", "30"),
    )
    assert waited.returncode == 3, waited
    assert [line.split()[0] for line in waited.stdout.splitlines()] == [ok, three, five]
    assert other_order.returncode == 5 and alone.returncode == 0, (other_order, alone)
    assert got.returncode == 3, got.stderr
    assert zipfile.ZipFile(zipped).read("out.txt") == b"partial\n"
    assert f"zip in {zipped}" in got.stdout
    assert into_folder.returncode == 3, into_folder.stderr
    assert (unpacked / "out.txt").read_text() == "partial\n"
    assert as_get.returncode == 3 and json.loads(as_get.stdout)["ExitCode"] == 3
    one_line(run(server, "result", three, "-o", str(zipped)), 1, "already exists")


@pytest.mark.source_only
def test_result_wait_and_wait_timeout(server, tmp_path: Path, gates) -> None:
    gate = gates()
    held = submitted(server, tmp_path, f"{gate.shell}\necho late > out.txt")
    server.wait_status(held, "RUNNING")
    one_line(run(server, "wait", held, "--timeout", "0.3s"), 3, held, "still RUNNING", "0.3s")
    one_line(run(server, "result", held, "-o", str(tmp_path / "early")), 3, "RUNNING")
    waiting = start(server, "result", held, "--wait", "-o", str(tmp_path / "late"))
    polled = f"GET /api/get/{held}?wait="
    wait_until(lambda: polled in server.log(), 30, "result --wait to long-poll")
    gate.open()
    _, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    assert (tmp_path / "late" / "out.txt").read_text() == "late\n"
    one_line(run(server, "wait", "no-such-job"), 1, "no-such-job", "404")


# ---------------------------------------------------------------------- the other verbs


@pytest.mark.source_only
def test_cancel_several_and_a_finished_one_is_reported(server, tmp_path: Path, gates) -> None:
    gate = gates()
    first, second = (submitted(server, tmp_path, gate.shell) for _ in range(2))
    done = submitted(server, tmp_path, "true")
    server.wait_done(done)
    cancelled = run(server, "cancel", first, done, second)
    assert cancelled.returncode == 1, cancelled
    assert cancelled.stdout.splitlines() == [f"{first} CANCELLED", f"{second} CANCELLED"]
    line = one_line(cancelled, 1, done, "already finished", "409")
    assert line.startswith("jobd: error:")
    one_line(run(server, "cancel", "--status", "queued"), 2, "--all")
    one_line(run(server, "cancel", "--all"), 2, "--status")


@pytest.mark.source_only
def test_cancel_all_asks_on_a_terminal(jobd, tmp_path: Path, gates) -> None:
    daemon = jobd.start("--workers", "1", "--token", TOKEN, "--kill-grace", "1s")
    gate = gates()
    blocker = submitted(daemon, tmp_path, gate.shell)
    queued = [submitted(daemon, tmp_path, "true") for _ in range(2)]
    args = ["cancel", "--status", "queued", "--all"]

    def say(text: str) -> Callable[[int], None]:
        return lambda terminal: os.write(terminal, text.encode())

    code, drawn = under_a_terminal(daemon, args, tmp_path, [("[y/N]", say("n\n"))])
    assert code == 1 and "cancel 2 queued jobs" in drawn and "nothing cancelled" in drawn, drawn
    assert all(daemon.job(job_id)["Status"] == "QUEUED" for job_id in queued)
    code, drawn = under_a_terminal(daemon, args, tmp_path, [("[y/N]", say("y\n"))])
    assert code == 0 and "cancelled 2 of 2 queued jobs" in drawn, drawn
    assert all(daemon.job(job_id)["Status"] == "CANCELLED" for job_id in queued)
    # through a pipe there is no one to ask: the command is the answer
    piped = run(daemon, "cancel", "--status", "running", "--all", "--json")
    assert piped.returncode == 0, piped.stderr
    assert [job["ID"] for job in json.loads(piped.stdout)] == [blocker]


@pytest.mark.source_only
def test_a_terminal_draws_the_wait_line(server, tmp_path: Path, gates) -> None:
    gate = gates()
    held = submitted(server, tmp_path, f"{gate.shell}\nexit 7")

    def release(_: int) -> None:
        gate.open()

    code, drawn = under_a_terminal(server, ["wait", held], tmp_path, [("RUNNING", release)])
    assert code == 7, drawn
    assert "\x1b[" in drawn and f"{held} FAILED, exit code 7" in drawn


@pytest.mark.source_only
def test_retry_makes_a_new_job_from_the_same_input(server, tmp_path: Path, gates) -> None:
    first = submitted(
        server, tmp_path, 'echo "$GREETING" > out.txt; exit 4', "--env", "GREETING=hi"
    )
    server.wait_done(first)
    again = run(server, "retry", first, "--wait", "-o", str(tmp_path / "again.zip"))
    assert again.returncode == 4, again
    assert zipfile.ZipFile(tmp_path / "again.zip").read("out.txt") == b"hi\n"
    new_id = again.stdout.split()[0]
    assert new_id != first and server.job(new_id)["Status"] == "FAILED"
    printed = run(server, "retry", first)
    assert printed.returncode == 0 and printed.stdout.strip() not in (first, new_id, "")
    one_line(run(server, "retry", "no-such-job"), 1, "404")
    gate = gates()
    pending = submitted(server, tmp_path, gate.shell)
    one_line(run(server, "retry", pending), 1, "409")


@pytest.mark.source_only
def test_logs_tail_and_both(server, tmp_path: Path) -> None:
    job_id = submitted(server, tmp_path, "seq 1 5; echo oops >&2")
    server.wait_done(job_id)
    assert run(server, "logs", job_id, "--tail", "2").stdout == "4\n5\n"
    assert run(server, "logs", job_id, "--both", "--tail", "1").stdout == (
        "[stdout] 5\n[stderr] oops\n"
    )
    as_json = json.loads(run(server, "logs", job_id, "--both", "--json").stdout)
    assert as_json == {"stdout": ["1", "2", "3", "4", "5"], "stderr": ["oops"]}
    followed = run(server, "logs", job_id, "--follow", "--tail", "1")
    assert followed.stdout == "5\n", followed.stderr


@pytest.mark.source_only
def test_list_shows_ids_attempts_user_and_service(server, tmp_path: Path) -> None:
    files = {"run.sh": "#!/bin/sh\nexit 1\n"}
    job = server.submit(
        files, retry={"max_attempts": 3, "initial_interval": "1h", "max_interval": "1h"}
    )
    wait_until(lambda: server.job(job["ID"])["Attempt"] == 2, 30, "the first attempt to fail")
    listed = run(server, "list", "--limit", "1").stdout.splitlines()
    assert listed[0].split()[:6] == ["ID", "INTID", "STATUS", "ATTEMPT", "USER", "SERVICE"]
    assert listed[1].split()[:3] == [job["ID"], str(job["IntID"]), "QUEUED"], listed
    assert re.search(r"QUEUED +2/3 in 59 min \d+ s +- +default ", listed[1]), listed
    assert run(server, "cancel", job["ID"]).returncode == 0


# ---------------------------------------------------------------------- the parser


@pytest.mark.source_only
def test_a_mistyped_flag_names_the_one_meant(server, tmp_path: Path) -> None:
    job = folder(tmp_path, "true")
    line = one_line(run(server, "submit", str(job), "--wiat"), 2, "--wiat", "did you mean --wait?")
    assert line.startswith("jobd submit: error:")
    one_line(run(server, "logs", "x", "--tial", "3"), 2, "did you mean --tail?")
    one_line(run(server, "cancel", "a", "--yse"), 2, "did you mean --yes?")
    one_line(run(server, "schedule", "runs", "n", "--limt", "3"), 2, "did you mean --limit?")
    one_line(run(server, "status", "a", "b"), 2, "unrecognized argument: b")
    one_line(run(server, "list", "--limit", "many"), 2, "--limit", "many")


@pytest.mark.source_only
def test_completion_is_made_from_the_parser(server, tmp_path: Path) -> None:
    bash = run(server, "completion", "bash")
    assert bash.returncode == 0, bash.stderr
    assert "submit" in bash.stdout and "--exit-code-from" in bash.stdout
    assert subprocess.run(["bash", "-n"], input=bash.stdout, text=True).returncode == 0
    for shell in ("zsh", "tcsh"):
        made = run(server, "completion", shell)
        assert made.returncode == 0 and "retry" in made.stdout, made.stderr
    one_line(run(server, "completion", "fish"), 2, "fish")


# ---------------------------------------------------------------------- the upload's zip


@pytest.mark.source_only
def test_the_zip_step_names_what_it_leaves_out(server, tmp_path: Path) -> None:
    job = folder(tmp_path, "ls > listing.txt")
    (job / "data").mkdir()
    (job / "data" / "in.txt").write_text("x")
    (job / "to-data").symlink_to("data")
    (job / "to-file").symlink_to("data/in.txt")
    os.mkfifo(job / "pipe")
    done = run(server, "submit", str(job), "--wait", "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    line = one_line(done, 0, "left out", "to-data (a link to a folder)", "pipe")
    assert "to-file" not in line
    assert (tmp_path / "out" / "to-file").read_text() == "x"  # an inside link to a file: kept

    before = len(server.api("GET", "/api/jobs").json())
    (job / "secret").symlink_to("/etc/hostname")
    refused = run(server, "submit", str(job))
    one_line(refused, 1, "secret", "/etc/hostname", "outside the folder")
    assert len(server.api("GET", "/api/jobs").json()) == before  # nothing sent


@pytest.mark.source_only
def test_unreadable_files_are_named_and_left_out(server, shared: Path) -> None:
    """As a user who cannot read some of the folder (root reads everything)."""
    if os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists():
        pytest.skip("running the client as another user needs root and setpriv")
    job = folder(shared, "ls > listing.txt", "job")
    (job / "secret").write_text("x")
    (job / "closed").mkdir()
    for path in (job / "secret", job / "closed"):
        path.chmod(0)
    user = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups"]
    done = subprocess.run(
        [*user, JOB_PYTHON, "-m", "jobd", "submit", str(job), "--wait", "-o", "out"],
        env=_env(server, {"HOME": str(shared)}),
        cwd=shared,
        capture_output=True,
        text=True,
        timeout=60,
    )
    one_line(done, 0, "secret (a file that cannot be read)", "closed/ (a folder that cannot be")
    listed = (shared / "out" / "listing.txt").read_text().split()
    assert "secret" not in listed and "closed" not in listed and "run.sh" in listed, listed


# ---------------------------------------------------------------------- where the daemon is


@pytest.mark.source_only
def test_the_profile_file_and_who_wins(server, tmp_path: Path) -> None:
    config = tmp_path / "xdg" / "jobd" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'url = "{server.url}"\ntoken = "{TOKEN}"\n')
    config.chmod(0o600)
    env = base_env({"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    from_file = run(server, "list", "--limit", "1", env=env)
    assert from_file.returncode == 0 and from_file.stderr == "", from_file.stderr

    closed = f"http://127.0.0.1:{free_port()}"
    one_line(run(server, "list", env=env | {"JOBD_URL": closed}), 1, closed)  # env wins
    by_flag = run(server, "list", "--url", server.url, env=env | {"JOBD_URL": closed})
    assert by_flag.returncode == 0, by_flag.stderr  # a flag wins over env

    config.chmod(0o644)
    warned = run(server, "list", "--limit", "1", env=env)
    assert warned.returncode == 0
    one_line(warned, 0, str(config), "chmod 600")
    config.write_text('url = "http://x"\ntoken = \n')
    one_line(run(server, "list", env=env), 1, str(config), "line 2")
    config.write_text('url = "http://x"\ntokn = "t"\n')
    one_line(run(server, "list", env=env), 1, str(config), "line 2", "tokn")
    assert stat.S_IMODE(config.stat().st_mode) == 0o644


@pytest.mark.source_only
def test_https_to_a_plain_http_daemon_fails_fast(server) -> None:
    https = server.url.replace("http://", "https://")
    began = time.monotonic()
    done = run(server, "list", "--url", https)
    assert time.monotonic() - began < 15
    one_line(done, 1, "TLS", f"--url {server.url}")


@pytest.mark.source_only
def test_a_cron_error_names_the_field(server, tmp_path: Path) -> None:
    folder(tmp_path, "true", "job")
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"name": "bad-hour", "schedule": "0 25 * * *", "folder": "job"}))
    one_line(run(server, "schedule", "create", "-f", str(spec)), 1, "hour field '25'", "0-23")
