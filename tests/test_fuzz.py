"""schemathesis against a live daemon, with and without a token, with every check: no server
error, no status code or body the description does not list, every request the description
allows accepted and every one it does not refused, for every route, also in stateful sequences
that follow the description's links from an upload to get, cancel and logs. What no schema can
say (a zip with run.sh, where callbacks may go) the hooks in schemathesis_hooks.py supply."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.source_only

#: Every check: the description must say exactly what the server accepts (the few places it
#: cannot are loosened, each with its reason, in schemathesis.toml).
CHECKS = "all"
HERE = Path(__file__).parent
#: Fuzzed jobs may name a callback: only loopback may ever be called.
FLAGS = ("--callback-allow", "127.0.0.1", "--min-free", "0", "--workers", "2")


def schemathesis(
    url: str, log: Path, *extra: str, token: str | None = None
) -> subprocess.Popen[bytes]:
    """schemathesis started against `url`, writing its report to `log`; the status page's
    forms get this daemon's origin and `token` from the hooks (FUZZ_ORIGIN, FUZZ_FORM_TOKEN)."""
    forms = {"FUZZ_ORIGIN": url, **({"FUZZ_FORM_TOKEN": token} if token else {})}
    command = shutil.which("schemathesis") or shutil.which("st")
    if command is None:
        pytest.fail("schemathesis is missing: pip install '.[test]'")
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                command,
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "run",
                f"{url}/openapi.json",
                "--checks",
                CHECKS,
                "--max-examples",
                "25",
                "--seed",
                "20261125",
                "--request-timeout",
                "30",
                # one worker: in parallel threads, schemathesis's ast.parse can fail on older
                # CPython 3.11 ("AST constructor recursion depth mismatch")
                "--workers",
                "1",
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SCHEMATHESIS_HOOKS": str(HERE / "schemathesis_hooks.py"), **forms},
        )


def test_schemathesis_finds_no_failure(jobd, tmp_path):
    """Both daemons at once (the open one and one with a token): each run is one thread of
    schemathesis against one daemon, so side by side they use the machine's two cores."""
    runs = []
    for token in (None, "fuzz-token"):
        daemon = jobd.start(*FLAGS, *(("--token", token) if token else ()))
        extra = ("--header", f"Authorization: Bearer {token}") if token else ()
        log = tmp_path / f"schemathesis-{'token' if token else 'open'}.txt"
        runs.append((daemon, log, schemathesis(daemon.url, log, *extra, token=token)))
    try:
        codes = [process.wait(timeout=600) for _, _, process in runs]
    finally:
        for _, _, process in runs:
            if process.poll() is None:
                process.kill()
                process.wait()
    for (daemon, log, _), code in zip(runs, codes, strict=True):
        stdout = log.read_text(errors="replace")
        report = stdout[-8000:]
        assert code == 0, report
        assert " passed" in stdout and "failed" not in stdout.split("SUMMARY")[-1], report
        assert "Traceback" not in daemon.log(), daemon.log()[-4000:]
