"""The command line: --version, --help, defaults to serve, flag/env precedence, sizes, logs."""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import (
    REPO_ROOT,
    assert_error,
    assert_status,
    base_env,
    free_port,
    jobd_command,
    script,
    unique_id,
    wait_until,
)

# The option tables are the one source of the flags; the documented table must list them all.
from jobd.config.options import CLIENT_OPTIONS, OPTIONS

#: A value no parser but a free-text one accepts: not a number, two lines, an open quote.
NONSENSE = "lots of\n'"


def readme_flags() -> dict[str, list[str]]:
    """The flag table of docs/configuration.md: flag -> its environment variables."""
    text = (REPO_ROOT / "docs" / "configuration.md").read_text()
    rows = re.findall(r"^\| `(--[a-z-]+)` \| (`JOBD_[^|]*) \|", text, re.MULTILINE)
    return {flag: re.findall(r"`([A-Z_]+)`", envs) for flag, envs in rows}


def refuses(option) -> bool:
    try:
        option.parse(NONSENSE)
    except ValueError:
        return True
    return False


def run_cli(tmp_path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        jobd_command(*args),
        check=False,
        cwd=tmp_path,
        env=base_env(env),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_version(tmp_path):
    result = run_cli(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert re.search(r"\d+\.\d+", result.stdout + result.stderr)


def test_serve_help_documents_every_flag_and_its_variables(tmp_path):
    result = run_cli(tmp_path, "serve", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    missing = [
        name for option in OPTIONS for name in (option.flag, *option.envs) if name not in text
    ]
    assert not missing, f"serve --help does not mention {missing}"


def test_client_help_documents_url_and_token(tmp_path):
    result = run_cli(tmp_path, "health", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    missing = [n for o in CLIENT_OPTIONS for n in (o.flag, *o.envs) if n not in text]
    assert not missing, f"health --help does not mention {missing}"


def test_the_readme_lists_every_flag_with_its_variables():
    documented = readme_flags()
    expected = {option.flag: list(option.envs) for option in OPTIONS}
    assert documented == expected


@pytest.mark.parametrize("option", [o for o in OPTIONS if refuses(o)], ids=lambda o: o.flag)
@pytest.mark.source_only
@pytest.mark.parametrize("given_as", ["flag", "env"])
def test_every_bad_value_is_one_line_before_start_up(tmp_path, option, given_as):
    """Flag or variable: exit 2 with one line naming it, and the data dir is never touched."""
    data_dir = tmp_path / "never"
    args = ["serve"]
    env = {"JOBD_HOST": "127.0.0.1", "JOBD_PORT": str(free_port()), "JOBD_DATA_DIR": str(data_dir)}
    if given_as == "flag":
        args += [option.flag, NONSENSE]
        named = option.flag
    else:
        env[option.envs[0]] = NONSENSE
        named = option.envs[0]
    result = run_cli(tmp_path, *args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("jobd: error: ") and named in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()


@pytest.mark.parametrize(
    "flags",
    [
        ("--max-upload", "lots"),
        ("--workers", "0"),
        ("--retention", "soon"),
        ("--pending-status", "204"),
        ("--on-restart", "maybe"),
    ],
    ids=lambda flags: " ".join(flags) if isinstance(flags, tuple) else str(flags),
)
def test_bad_flag_values_fail_with_a_message(tmp_path, flags):
    port = str(free_port())
    args = ("serve", "--host", "127.0.0.1", "--port", port, "--data-dir", str(tmp_path / "d"))
    result = run_cli(tmp_path, *args, *flags)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert flags[0].lstrip("-") in output or flags[1] in output, output
    assert "Traceback" not in output, output


def test_no_arguments_serves(jobd, tmp_path):
    port = free_port()
    data_dir = tmp_path / "no-args-data"
    env = {"JOBD_HOST": "127.0.0.1", "JOBD_PORT": str(port), "JOBD_DATA_DIR": str(data_dir)}
    daemon = jobd.start(argv=[], env=env, port=port, data_dir=data_dir)
    job = daemon.wait_done(daemon.submit({"run.sh": script("true")})["ID"])
    assert job["Status"] == "SUCCESS"
    assert len(daemon.job_dirs()) == 1


@pytest.mark.parametrize(
    ("host", "token", "warned"),
    [("0.0.0.0", None, True), ("0.0.0.0", "t0ken", False), ("127.0.0.1", None, False)],
)
def test_the_start_up_line_warns_when_anyone_can_run_code(jobd, tmp_path, host, token, warned):
    """Every request here goes to 127.0.0.1, whatever address jobd listens on."""
    port = free_port()
    argv = ["serve", "--host", host, "--port", str(port), "--data-dir", str(tmp_path / host)]
    daemon = jobd.start(argv=argv, env={"JOBD_TOKEN": token or ""}, port=port)
    lines = [line for line in daemon.log().splitlines() if "anyone who can reach" in line]
    if not warned:
        assert lines == [], lines
        return
    assert len(lines) == 1, daemon.log()
    assert f"port {port}" in lines[0] and "--token" in lines[0] and "JOBD_TOKEN" in lines[0]


def test_jobd_variables_beat_go_variables(jobd, tmp_path):
    port, go_port = free_port(), free_port()
    data_dir, go_data = tmp_path / "jobd-data", tmp_path / "go-data"
    env = {
        "JOBD_HOST": "127.0.0.1",
        "JOBD_PORT": str(port),
        "PORT": str(go_port),
        "JOBD_DATA_DIR": str(data_dir),
        "DATAPATH": str(go_data),
    }
    daemon = jobd.start(argv=["serve"], env=env, port=port, data_dir=data_dir)
    daemon.wait_done(daemon.submit({"run.sh": script("true")})["ID"])
    assert len(daemon.job_dirs()) == 1
    assert not (go_data / "jobs").exists()


def test_go_variables_are_honoured(jobd, tmp_path):
    port, data_dir = free_port(), tmp_path / "go-data"
    env = {"JOBD_HOST": "127.0.0.1", "PORT": str(port), "DATAPATH": str(data_dir)}
    daemon = jobd.start(argv=["serve"], env=env, port=port, data_dir=data_dir)
    daemon.wait_done(daemon.submit({"run.sh": script("true")})["ID"])
    assert len(daemon.job_dirs()) == 1


def test_flags_beat_variables(jobd, tmp_path):
    port, data_dir = free_port(), tmp_path / "flag-data"
    env = {"JOBD_PORT": str(free_port()), "JOBD_DATA_DIR": str(tmp_path / "env-data")}
    argv = ["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    daemon = jobd.start(argv=argv, env=env, port=port, data_dir=data_dir)
    daemon.wait_done(daemon.submit({"run.sh": script("true")})["ID"])
    assert len(daemon.job_dirs()) == 1
    assert not (tmp_path / "env-data" / "jobs").exists()


def _padded_body(size: int) -> bytes:
    """Valid JSON of exactly `size` bytes whose input is not base64: 400 if read, 413 if not."""
    head, tail = b'{"input": "!"', b"}"
    return head + b" " * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize(("limit", "status"), [("2KB", 413), ("2KiB", 400), ("2048", 400)])
def test_size_units(jobd, limit, status):
    daemon = jobd.start("--max-upload", limit)
    body = _padded_body(2020)  # over 2 kB (2000), under 2 KiB (2048)
    assert len(body) == 2020
    assert_error(daemon.post_raw(body), status)


def test_one_log_line_per_request_and_state_change(jobd):
    daemon = jobd.start()
    job_id = unique_id("logged")
    daemon.submit({"run.sh": script("true")}, job_id=job_id)
    daemon.wait_done(job_id)
    assert_status(daemon.get(job_id), 200)

    # Written once the answer is out, so they may come a moment after it: the GET's access
    # line (on closing the sent body), and SUCCESS (after the change that ends the long poll).
    def logged() -> list[str]:
        lines = [line for line in daemon.log().splitlines() if job_id in line]
        got = any(f"GET /api/get/{job_id} " in line for line in lines)
        return lines if got and any("SUCCESS" in line for line in lines) else []

    lines = wait_until(logged, 10, f"the log lines of the GET and the end of job {job_id}")
    # At least: the GET, and the changes to QUEUED, RUNNING and SUCCESS.
    assert len(lines) >= 4, "\n".join(lines) or daemon.log()
    for state in ("QUEUED", "RUNNING", "SUCCESS"):
        assert any(state in line for line in lines), f"no log line for {state}: {lines}"
    assert any(f"/api/get/{job_id}" in line for line in lines), lines
