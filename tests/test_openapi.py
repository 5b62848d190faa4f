"""GET /openapi.json describes every route, and real answers match its schemas; /docs shows it."""

from __future__ import annotations

import re

import pytest
import requests
from conftest import script, unique_id
from jsonschema import Draft202012Validator

ROUTE_PARAM = re.compile(r"<(\w+)(:[^>]*)?>")


@pytest.fixture(scope="module")
def spec(server) -> dict:
    resp = requests.get(server.url + "/openapi.json", timeout=10)
    assert resp.status_code == 200
    body = resp.json()
    assert body["openapi"].startswith("3.1")
    return body


def check(spec: dict, schema_name: str, instance: object) -> None:
    """Validate against components/schemas/NAME, with the spec as the root for $refs."""
    schema = {**spec, "$ref": f"#/components/schemas/{schema_name}"}
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=str)
    assert not errors, f"{schema_name}: {[e.message for e in errors]}"


def documented(spec: dict, method: str, path: str, status: int) -> None:
    operation = spec["paths"][path][method]
    assert str(status) in operation["responses"], f"{method} {path} does not list {status}"


def test_every_route_of_the_app_is_described(spec) -> None:
    from jobd.config.options import Config
    from jobd.http.app import create_app  # routes only: the app is not served here

    app = create_app(Config.resolve({}, {}), service=None)  # type: ignore[arg-type]  # routes only
    for route in app.routes:
        path = ROUTE_PARAM.sub(r"{\1}", route.rule)
        path = re.sub(r"\{job_id\}", "{id}", path)
        assert path in spec["paths"], f"{route.method} {route.rule} is not in /openapi.json"
        assert route.method.lower() in spec["paths"][path], f"{route.method} {path}"


def test_real_answers_match_the_schemas(server, spec, gates) -> None:
    gate = gates()
    job_id = unique_id("spec")
    upload = server.upload({"run.sh": script(gate.shell)}, job_id=job_id)
    documented(spec, "post", "/api/upload", 201)
    check(spec, "Job", upload.json())

    pending = server.get(job_id)
    documented(spec, "get", "/api/get/{id}", pending.status_code)
    check(spec, "Job", pending.json())
    gate.open()
    done = server.get(job_id, wait=30)
    documented(spec, "get", "/api/get/{id}", 200)
    check(spec, "Job", done.json())

    for resp, path, method in (
        (server.get("no-such-job"), "/api/get/{id}", "get"),
        (server.cancel(job_id), "/api/cancel/{id}", "post"),
        (server.upload({"x.txt": b"no run.sh"}), "/api/upload", "post"),
    ):
        documented(spec, method, path, resp.status_code)
        check(spec, "Error", resp.json())

    health = requests.get(server.url + "/health", timeout=10)
    check(spec, "Health", health.json())
    load = requests.get(server.url + "/load", timeout=10).json()
    schema = spec["paths"]["/load"]["get"]["responses"]["200"]["content"]["application/json"]
    assert not list(Draft202012Validator(schema["schema"]).iter_errors(load))
    submitted = requests.post(
        server.url + "/submit", files=[("file", ("run.sh", script("true")))], timeout=10
    )
    check(spec, "Payload", submitted.json())


def test_the_docs_page_shows_every_route(server, spec) -> None:
    resp = requests.get(server.url + "/docs", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert "<script" not in resp.text and "http" not in resp.text.split("<body>")[0]
    for path in spec["paths"]:
        assert path.replace("{", "").replace("}", "") in resp.text.replace("{", "").replace("}", "")


@pytest.mark.source_only
def test_the_description_keeps_the_codes_patterns_and_states() -> None:
    """The YAML spells out what models.py decides: job states, the ID and service patterns."""
    from jobd.http.openapi import spec
    from jobd.models import JOB_ID_PATTERN, SERVICE_PATTERN, JobStatus

    doc = spec(token_required=False)
    states = [status.value for status in JobStatus]
    assert doc["components"]["schemas"]["Job"]["properties"]["Status"]["enum"] == states
    listed = {p["name"]: p for p in doc["paths"]["/api/jobs"]["get"]["parameters"]}
    status = listed["status"]["schema"]
    assert status["examples"] == states
    pattern = re.compile(status["pattern"])
    for state in states:
        assert pattern.fullmatch(state) and pattern.fullmatch(state.lower())
    assert not pattern.fullmatch("DONE") and not pattern.fullmatch(states[0] + "X")
    upload = doc["components"]["schemas"]["Upload"]["properties"]
    assert upload["id"]["pattern"] == f"^{JOB_ID_PATTERN.pattern}$"
    form = doc["paths"]["/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["service"]["pattern"] == f"^{SERVICE_PATTERN.pattern}$"
