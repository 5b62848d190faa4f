"""A job's own environment: its `env` reaches run.sh on top of jobd's, with JOBD_JOB_ID and
JOBD_ATTEMPT; bad names are a 400 that keeps nothing; the daemon's token never gets through."""

from __future__ import annotations

import pytest
from conftest import assert_error, output_files, script, unique_id

pytestmark = pytest.mark.source_only

SHOW = script("env | grep -E '^(GREETING|EMPTY|JOBD_[A-Z_]*|WITH_TOKEN)=' | sort > env.txt")


def test_env_reaches_run_sh_with_jobds_own(jobd):
    daemon = jobd.start("--token", "tok-7d2a", env={"JOBD_TOKEN": "tok-7d2a"})
    job_id = unique_id("env")
    env = {"GREETING": "hello world", "EMPTY": "", "WITH_TOKEN": "no"}
    job = daemon.wait_done(daemon.submit({"run.sh": SHOW}, job_id=job_id, env=env)["ID"])
    assert job["Status"] == "SUCCESS", job
    lines = output_files(job)["env.txt"].decode().splitlines()
    assert lines == [
        "EMPTY=",
        "GREETING=hello world",
        "JOBD_ATTEMPT=1",
        f"JOBD_JOB_ID={job_id}",
        "WITH_TOKEN=no",
    ], lines
    assert "tok-7d2a" not in output_files(job)["env.txt"].decode()
    assert "env" not in {key.lower() for key in job}, "the job object shows env's values"


@pytest.mark.parametrize(
    "env",
    [
        {"JOBD_JOB_ID": "x"},
        {"JOBD_ANYTHING": "x"},
        {"1ABC": "x"},
        {"A-B": "x"},
        {"": "x"},
        {"OK": 1},
        {"OK": "a\u0000b"},
        {"OK": "x" * 4097},
        {f"V{n}": "x" for n in range(65)},
        ["GREETING=x"],
        "GREETING=x",
    ],
    ids=[
        "jobd-job-id",
        "jobd-prefix",
        "digit-first",
        "dash",
        "empty-name",
        "not-a-string",
        "nul",
        "too-long",
        "too-many",
        "a-list",
        "a-string",
    ],
)
def test_a_bad_env_is_a_400_that_keeps_nothing(server, env):
    before = server.job_dirs()
    job_id = unique_id("badenv")
    assert_error(server.upload({"run.sh": SHOW}, job_id=job_id, env=env), 400)
    server.assert_nothing_written(before, job_id)
