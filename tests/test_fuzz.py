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


def schemathesis(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("schemathesis") or shutil.which("st")
    if command is None:
        pytest.fail("schemathesis is missing: pip install '.[test]'")
    return subprocess.run(
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
        capture_output=True,
        text=True,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HERE / "schemathesis_hooks.py")},
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("token", [None, "fuzz-token"], ids=["open", "with-token"])
def test_schemathesis_finds_no_failure(jobd, token):
    flags = FLAGS + (("--token", token) if token else ())
    daemon = jobd.start(*flags)
    extra = ("--header", f"Authorization: Bearer {token}") if token else ()
    done = schemathesis(daemon.url, *extra)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert " passed" in done.stdout and "failed" not in done.stdout.split("SUMMARY")[-1], report
    assert "Traceback" not in daemon.log(), daemon.log()[-4000:]
