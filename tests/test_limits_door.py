"""A job's limits at the door: `"limits": {"memory": ..., "processes": ...}` on every upload
route, checked against its service's maximum and jobd's (--job-memory, --job-processes),
stored with the job and shown as its `Limits`; a bad setting stops the start in one line."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import (
    assert_error,
    assert_status,
    b64,
    base_env,
    free_port,
    jobd_command,
    make_zip,
    script,
    unique_id,
)

MiB = 2**20
MAX_MEMORY = 512 * MiB
MAX_PROCESSES = 100
SMALL_MEMORY = 128 * MiB  # the service "small"
SMALL_PROCESSES = 10
RUN_SH = script("true")


@pytest.fixture(scope="module")
def server_flags() -> tuple[str, ...]:
    return (
        "--workers",
        "2",
        "--job-memory",
        "512M",
        "--job-processes",
        str(MAX_PROCESSES),
        "--service",
        f"small:memory=128MiB,processes={SMALL_PROCESSES}",
    )


def upload_files(daemon, limits: object = None, route: str = "/upload", **fields: str):
    """/upload (user API) or /submit: run.sh as a file part, `limits` as a JSON form field."""
    if route == "/upload":
        fields.setdefault("user_id", "1")
    if limits is not None:
        fields["limits"] = limits if isinstance(limits, str) else json.dumps(limits)
    parts = [("file", ("run.sh", RUN_SH))]
    return daemon.api("POST", route, files=parts, data=fields)


def int_id_of(resp) -> int:
    return resp.json()["id"]


def limits_of(daemon, ref: str | int) -> dict:
    return daemon.job(str(ref))["Limits"]


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize(
    ("asked", "shown"),
    [
        ({"memory": "256M", "processes": 64}, {"Memory": 256 * MiB, "Processes": 64}),
        ({"memory": 1_000_000}, {"Memory": 1_000_000, "Processes": MAX_PROCESSES}),
        ({"processes": 1}, {"Memory": MAX_MEMORY, "Processes": 1}),
        (
            {"memory": "512MiB", "processes": MAX_PROCESSES},
            {"Memory": MAX_MEMORY, "Processes": 100},
        ),
        ({}, {"Memory": MAX_MEMORY, "Processes": MAX_PROCESSES}),
        (None, {"Memory": MAX_MEMORY, "Processes": MAX_PROCESSES}),
    ],
    ids=["both", "bytes", "processes-only", "at-the-maximum", "empty", "absent"],
)
def test_api_upload_within_the_maximum_is_stored_and_shown(server, asked, shown) -> None:
    job_id = unique_id("lim")
    fields = {} if asked is None else {"limits": asked}
    resp = server.upload({"run.sh": RUN_SH}, job_id=job_id, **fields)
    assert_status(resp, 201)
    assert resp.json()["Limits"] == shown
    assert limits_of(server, job_id) == shown
    listed = server.api("GET", "/api/jobs", params={"limit": 5}).json()
    assert next(job for job in listed if job["ID"] == job_id)["Limits"] == shown


def test_form_routes_take_limits_as_a_json_field(server) -> None:
    resp = upload_files(server, {"memory": "64M", "processes": 5}, service="small")
    assert_status(resp, 201)
    assert limits_of(server, int_id_of(resp)) == {"Memory": 64 * MiB, "Processes": 5}

    resp = upload_files(server, None, service="small")  # the service's maximum applies
    assert_status(resp, 201)
    shown = limits_of(server, int_id_of(resp))
    assert shown == {"Memory": SMALL_MEMORY, "Processes": SMALL_PROCESSES}

    resp = upload_files(server, {"processes": 7}, route="/submit")
    assert_status(resp, 200)
    assert limits_of(server, int_id_of(resp)) == {"Memory": MAX_MEMORY, "Processes": 7}


def test_a_retry_keeps_the_limits(server) -> None:
    job_id = unique_id("lim-retry")
    resp = server.upload(
        {"run.sh": script("exit 3")},
        job_id=job_id,
        limits={"memory": "100M", "processes": 9},
        retry={"max_attempts": 2, "initial_interval": 0},
    )
    assert_status(resp, 201)
    done = server.wait_done(job_id)
    assert done["Attempt"] == 2 and done["Status"] == "FAILED", done
    assert done["Limits"] == {"Memory": 100 * MiB, "Processes": 9}


def test_a_schedule_carries_limits_to_its_runs(server) -> None:
    body = {
        "name": "lim-nightly",
        "schedule": "@yearly",
        "input": b64(make_zip({"run.sh": RUN_SH})),
    }
    too_much = server.api("POST", "/api/schedules", json=body | {"limits": {"processes": 101}})
    assert "limits.processes" in assert_error(too_much, 400)["message"]
    assert_error(server.api("GET", "/api/schedules/lim-nightly"), 404)
    assert not (server.data_dir / "schedules" / "lim-nightly.zip").exists()

    made = server.api("POST", "/api/schedules", json=body | {"limits": {"memory": "32M"}})
    assert_status(made, 201)
    assert made.json()["limits"] == {"memory": 32 * MiB}
    run = server.api("POST", "/api/schedules/lim-nightly/trigger")
    assert_status(run, 200)
    assert run.json()["run"]["Limits"] == {"Memory": 32 * MiB, "Processes": MAX_PROCESSES}
    changed = server.api("PATCH", "/api/schedules/lim-nightly", json={"limits": {"memory": "1G"}})
    assert "limits.memory" in assert_error(changed, 400)["message"]


# --------------------------------------------------------------------------- refused


def _refused(server, send, status: int = 400) -> str:
    """The upload is refused with `status` and leaves no job, folder or staged file."""
    before_dirs = server.job_dirs()
    before_jobs = [job["ID"] for job in server.api("GET", "/api/jobs").json()]
    message = assert_error(send(), status)["message"]
    server.assert_nothing_written(before_dirs)
    assert [job["ID"] for job in server.api("GET", "/api/jobs").json()] == before_jobs
    return message


ROUTES = ["/api/upload", "/upload", "/submit"]


def _send(server, route: str, limits: object, **fields: str):
    if route == "/api/upload":
        return lambda: server.upload({"run.sh": RUN_SH}, limits=limits, **fields)
    return lambda: upload_files(server, limits, route=route, **fields)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("limits", "named"),
    [
        ({"memory": "1G"}, ["limits.memory", "1 GiB", "512 MiB", "--job-memory"]),
        ({"memory": MAX_MEMORY + 1}, ["limits.memory", "512 MiB", "--job-memory"]),
        ({"processes": 101}, ["limits.processes", "101", "100", "--job-processes"]),
    ],
    ids=["memory", "memory-by-a-byte", "processes"],
)
def test_above_jobds_maximum_is_a_400_naming_the_field(server, route, limits, named) -> None:
    message = _refused(server, _send(server, route, limits))
    assert all(part in message for part in named), message


@pytest.mark.parametrize(
    ("limits", "named"),
    [
        ({"memory": "256M"}, ["limits.memory", "256 MiB", "128 MiB", "'small'"]),
        ({"processes": 11}, ["limits.processes", "11", "10", "'small'"]),
    ],
    ids=["memory", "processes"],
)
def test_above_the_services_maximum_is_a_400(server, limits, named) -> None:
    message = _refused(server, _send(server, "/upload", limits, service="small"))
    assert all(part in message for part in named), message


@pytest.mark.parametrize("route", ROUTES)
def test_an_unknown_key_is_a_400_with_a_did_you_mean(server, route) -> None:
    message = _refused(server, _send(server, route, {"memroy": "1G"}))
    assert "'memroy'" in message and "did you mean 'memory'?" in message, message


@pytest.mark.parametrize(
    "limits",
    [
        {"memory": True},
        {"memory": 1.5},
        {"memory": 0},
        {"memory": "0"},
        {"memory": "lots"},
        {"memory": 2**64},
        {"processes": "64"},
        {"processes": 0},
        {"processes": -1},
        {"processes": 2.0},
        ["memory"],
        "256M",
    ],
    ids=repr,
)
def test_a_wrong_type_or_value_is_a_400(server, limits) -> None:
    message = _refused(server, _send(server, "/api/upload", limits))
    assert "limits" in message, message


@pytest.mark.parametrize("text", ["not json", "null", "[1]", '{"processes": 0}', "[" * 100_000])
def test_a_bad_limits_form_field_is_a_400(server, text) -> None:
    message = _refused(server, _send(server, "/upload", text))
    assert "limits" in message, message


def test_a_slurm_jobs_limits_are_checked_for_their_shape(server) -> None:
    """Slurm's own options govern a Slurm job: jobd checks the field's shape only."""
    message = _refused(server, _send(server, "/api/upload", {"memroy": "1G"}, slurml=True))
    assert "did you mean 'memory'?" in message


# --------------------------------------------------------------------------- the daemon


def test_a_restart_keeps_the_limits(jobd) -> None:
    daemon = jobd.start("--job-processes", "50")
    job = daemon.submit({"run.sh": RUN_SH}, limits={"memory": "8G", "processes": 20})
    daemon.wait_done(job["ID"])
    daemon.stop()
    again = jobd.start("--job-processes", "60", data_dir=daemon.data_dir)
    assert limits_of(again, job["ID"]) == {"Memory": 8 * 2**30, "Processes": 20}


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--job-memory", "0"], ["--job-memory", "'0'"]),
        (["--job-memory", "lots"], ["--job-memory", "'lots'"]),
        (["--job-processes", "0"], ["--job-processes", "'0'"]),
        (
            ["--job-memory", "512M", "--service", "big:memory=1G"],
            ["'big'", "memory", "1 GiB", "512 MiB", "--job-memory"],
        ),
        (["--service", "big:processes=5000"], ["'big'", "processes", "5000", "4096"]),
        (["--service", "big:processes=x"], ["'big'", "processes", "'x'"]),
    ],
    ids=["memory-0", "memory-words", "processes-0", "service-memory", "service-processes", "x"],
)
def test_a_bad_setting_stops_the_start_in_one_line(tmp_path, args, named) -> None:
    data_dir = tmp_path / "never"
    argv = ["serve", "--host", "127.0.0.1", "--port", str(free_port()), "--data-dir", str(data_dir)]
    done = subprocess.run(
        jobd_command(*argv, *args),
        env=base_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobd: error: "), done.stderr
    assert all(part in lines[0] for part in named), lines[0]
    assert not data_dir.exists()


def test_the_variables_set_the_maxima(jobd) -> None:
    daemon = jobd.start(env={"JOBD_JOB_MEMORY": "1G", "JOBD_JOB_PROCESSES": "30"})
    job = daemon.submit({"run.sh": RUN_SH})
    assert job["Limits"] == {"Memory": 2**30, "Processes": 30}


# --------------------------------------------------------------------------- the logic


@pytest.mark.source_only
def test_the_effective_limit_is_the_smallest_that_applies() -> None:
    from jobd.config.options import Config
    from jobd.errors import BadRequest
    from jobd.jobs.limits import effective
    from jobd.models import JobLimits

    flags = {"job_memory": "1G", "job_processes": "100", "service": ["small:memory=256M"]}
    config = Config.resolve(flags, {})
    unbounded = Config.resolve({}, {})
    cases = [
        (config, JobLimits(), "default", JobLimits(2**30, 100)),
        (config, JobLimits(), "small", JobLimits(256 * MiB, 100)),
        (config, JobLimits(), "undeclared", JobLimits(2**30, 100)),
        (config, JobLimits(128 * MiB, 7), "small", JobLimits(128 * MiB, 7)),
        (config, JobLimits(256 * MiB, 100), "small", JobLimits(256 * MiB, 100)),
        (unbounded, JobLimits(), "default", JobLimits(None, 4096)),
        (unbounded, JobLimits(2**40), "default", JobLimits(2**40, 4096)),
    ]
    for cfg, asked, service, expected in cases:
        assert effective(asked, service, cfg) == expected, (asked, service)

    for asked, service, words in [
        (JobLimits(2**31), "default", "limits.memory 2 GiB is above this jobd's maximum of 1 GiB"),
        (JobLimits(512 * MiB), "small", "limits.memory 512 MiB is above the maximum of service"),
        (JobLimits(None, 101), "small", "limits.processes 101 is above this jobd's maximum of 100"),
    ]:
        with pytest.raises(BadRequest, match=words):
            effective(asked, service, config)
        clamped = effective(asked, service, config, clamp=True)
        assert clamped == effective(JobLimits(), service, config)


def test_the_description_has_the_field_and_the_answers_match(server) -> None:
    from jsonschema import Draft202012Validator

    spec = server.api("GET", "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert set(schemas["Upload"]["properties"]["limits"]["properties"]) == {"memory", "processes"}
    form = spec["paths"]["/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert "limits" in form["schema"]["properties"]
    job = server.submit({"run.sh": RUN_SH}, limits={"memory": "1M"})
    for name in ("Job", "ListedJob"):
        schema = {**spec, "$ref": f"#/components/schemas/{name}"}
        assert not list(Draft202012Validator(schema).iter_errors(job)), name
    services = server.api("GET", "/api/services").json()
    small = next(s for s in services if s["name"] == "small")
    assert (small["memory"], small["processes"]) == (SMALL_MEMORY, SMALL_PROCESSES)
    schema = {**spec, "$ref": "#/components/schemas/Service"}
    assert not list(Draft202012Validator(schema).iter_errors(small))
