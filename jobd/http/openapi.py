"""The API described in OpenAPI 3.1, served at /openapi.json, and a readable page of it at /docs.

tests/test_openapi.py keeps it true: every route of the app is here, and real answers are
checked against these schemas.
"""

from __future__ import annotations

import base64
import html
import io
import json
import zipfile
from typing import Any

from jobd import __version__
from jobd.models import JOB_ID_PATTERN, SERVICE_PATTERN, JobStatus


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


def _id_param(name: str = "id", integer: bool = False) -> dict:
    schema = {"type": "integer", "minimum": 1} if integer else {"type": "string"}
    text = "the job's integer ID" if integer else "the job's ID (or its integer IntID)"
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": text}


def _query(name: str, schema: dict, description: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_FLAG = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no", "on", "off"]}
_ZIP: dict[str, Any] = {
    "description": "a zip of the job directory",
    "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
}
_TEXT = {"type": "string"}
_AUTH = {"401": _error("a token is set and the request lacks it or has another")}
_FULL = {"507": _error("the data dir's disk is full, or at --min-free")}
#: Operations a new job's ID leads to, for clients and stateful testing.
_JOB_OPS = {"GetJob": "getJob", "CancelJob": "cancelJob", "JobLogs": "jobLogs"}
_NUMBER_OPS = {"Retrieve": "retrieve", "RetrievePartial": "retrievePartial", "Kill": "kill"}
_SCHEDULE_OPS = {"Get": "getSchedule", "Trigger": "triggerSchedule", "Runs": "scheduleRuns"}
_USER_OPS = {"Download": "download", "DownloadPartial": "downloadPartial", "Terminate": "terminate"}


def _example_job() -> str:
    """A job whose run.sh prints a line, as an upload's `input`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("run.sh", date_time=(2026, 1, 1, 0, 0, 0))
        info.external_attr = 0o100755 << 16
        archive.writestr(info, "#!/bin/sh\necho hello\n")
    return base64.b64encode(buffer.getvalue()).decode()


_EXAMPLE_JOB = _example_job()


def _links(field: str, operations: dict[str, str]) -> dict[str, dict]:
    parameter = {"ID": "id", "name": "name"}.get(field, "number")
    return {
        name: {"operationId": op, "parameters": {parameter: f"$response.body#/{field}"}}
        for name, op in operations.items()
    }


_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$", "maxLength": 64},
    "description": "the schedule's name",
}

#: A field of the Go jobd's job object that an upload may carry and jobd ignores.
_GO_IGNORED = {"description": "the Go jobd's job field: taken and ignored"}

SCHEMAS: dict[str, dict] = {
    "Job": {
        "type": "object",
        "required": [
            "ID",
            "Status",
            "Message",
            "Output",
            "LastUpdated",
            "SlurmID",
            "Slurml",
            "ExitCode",
            "CreatedAt",
            "StartedAt",
            "FinishedAt",
            "IntID",
        ],
        "properties": {
            "ID": {"type": "string"},
            "Status": {"enum": [status.value for status in JobStatus]},
            "Message": {"type": "string", "description": "why, in words"},
            "Output": {"type": "string", "description": "base64 result zip; empty if pending"},
            "LastUpdated": {"type": "string", "format": "date-time"},
            "SlurmID": {"type": "integer", "description": "0 for local jobs"},
            "Slurml": {"type": "boolean"},
            "ExitCode": {"type": ["integer", "null"], "description": "null if killed/not run"},
            "CreatedAt": {"type": "string", "format": "date-time"},
            "StartedAt": {"type": ["string", "null"], "format": "date-time"},
            "FinishedAt": {"type": ["string", "null"], "format": "date-time"},
            "Timeout": {"type": ["number", "null"]},
            "CallbackURL": {"type": ["string", "null"]},
            "IntID": {"type": "integer", "description": "the ID of job-orchestrator's routes"},
            "UserID": {"type": ["integer", "null"], "description": "its user (/upload)"},
            "Service": {"type": "string"},
            "Attempt": {"type": "integer", "description": "1-based; retries add one"},
            "MaxAttempts": {"type": "integer"},
            "Schedule": {"type": ["string", "null"], "description": "its schedule's name"},
        },
    },
    "Upload": {
        "type": "object",
        "required": ["input"],
        "description": "Field names match in any letter case, as in Go's encoding/json; a field"
        " jobd does not know is a 400. The Go jobd's job fields are taken too, so its clients"
        " may send a whole job object: ID, Input and Slurml are id, input and slurml; Status,"
        " Message, Output, LastUpdated and SlurmID are ignored.",
        "additionalProperties": False,
        "properties": {
            **{
                name: _GO_IGNORED
                for name in ("Status", "Message", "Output", "LastUpdated", "SlurmID")
            },
            "id": {"type": "string", "pattern": f"^{JOB_ID_PATTERN.pattern}$"},
            "input": {
                "type": "string",
                "minLength": 1,
                "contentEncoding": "base64",
                "contentMediaType": "application/zip",
                "description": "base64 zip with run.sh at its root",
            },
            "slurml": {"type": "boolean"},
            "slurm": {"type": "boolean", "description": "the same as slurml"},
            "timeout": {"type": ["number", "string"], "description": "seconds, or like 30m"},
            "callback_url": {"type": "string", "format": "uri"},
            "callback": {
                "type": "object",
                "required": ["url"],
                "additionalProperties": False,
                "properties": {
                    "url": {"type": "string", "format": "uri"},
                    "auth": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"enum": ["bearer", "basic", "api_key"]}},
                    },
                },
                "description": "instead of callback_url: a callback with Chronos's auth",
            },
            "env": {
                "type": "object",
                "maxProperties": 64,
                "propertyNames": {
                    "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                    "not": {"pattern": "^JOBD_"},
                },
                "additionalProperties": {"type": "string", "maxLength": 4096},
                "description": "variables for run.sh; JOBD_* are jobd's own",
            },
            "retry": {
                "oneOf": [
                    {"type": "integer", "minimum": 1, "maximum": 100},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100},
                            "initial_interval": {"type": ["number", "string"]},
                            "max_interval": {"type": ["number", "string"]},
                            "multiplier": {"type": "number", "minimum": 1, "maximum": 100},
                        },
                    },
                ],
                "description": "attempts in all, or Chronos's retry policy",
            },
            "slurm_options": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "cpus": {"type": ["integer", "string"]},
                    "memory": {"type": "string"},
                    "time": {"type": ["integer", "string"]},
                    "partition": {"type": "string"},
                    "gres": {"type": "string"},
                },
            },
        },
    },
    "Error": {
        "type": "object",
        "required": ["error", "message", "status"],
        "properties": {
            "error": {"type": "string", "examples": ["bad_request"]},
            "message": {"type": "string", "description": "what is wrong, for a person"},
            "status": {"type": "integer"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "version", "workers", "queued", "running"],
        "properties": {
            "status": {"enum": ["healthy", "degraded"]},
            "problems": {
                "type": "array",
                "items": {"type": "string"},
                "description": "why the status is degraded; empty when healthy",
            },
            "version": {"type": "string"},
            "workers": {"type": "integer"},
            "workers_alive": {"type": "integer"},
            "oldest_queued_age": {
                "type": ["number", "null"],
                "description": "seconds the longest-waiting queued job has waited",
            },
            "queued": {"type": "integer"},
            "running": {"type": "integer"},
            "jobs": {"type": "object", "additionalProperties": {"type": "integer"}},
            "slurm": {"type": "string"},
            "disk": {
                "type": "object",
                "description": "bytes free and in all on the data dir's disk; the reserve",
                "properties": {
                    "free": {"type": "integer"},
                    "total": {"type": "integer"},
                    "min_free": {"type": "integer"},
                },
            },
            "threads": {
                "type": "object",
                "description": "HTTP threads: all, held by long-polls, follows and large"
                " downloads, and how many those may hold",
                "properties": {
                    "total": {"type": "integer"},
                    "held": {"type": "integer"},
                    "may_hold": {"type": "integer"},
                },
            },
        },
    },
    "RecurringJob": {
        "type": "object",
        "required": ["name", "schedule", "timezone", "concurrency", "enabled"],
        "properties": {
            "name": {"type": "string"},
            "schedule": {"type": "string"},
            "timezone": {"type": "string"},
            "concurrency": {"enum": ["forbid", "allow", "replace"]},
            "timeout": {"type": ["number", "null"]},
            "retry": {"type": ["object", "null"]},
            "env": {
                "type": "array",
                "items": {"type": "string"},
                "description": "names only",
            },
            "slurml": {"type": "boolean"},
            "enabled": {"type": "boolean"},
            "last_fire": {"type": ["string", "null"], "format": "date-time"},
            "next_fire": {"type": ["string", "null"], "format": "date-time"},
            "created_at": {"type": "string", "format": "date-time"},
            "run": {"type": "object", "description": "the run a trigger started"},
        },
    },
    "NewSchedule": {
        "type": "object",
        "required": ["name", "schedule", "input"],
        "properties": {
            "name": {
                "type": "string",
                "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$",
                "maxLength": 64,
            },
            "schedule": {
                "type": "string",
                "examples": ["0 2 * * *", "@daily", "@every 15m"],
            },
            "timezone": {"type": "string", "examples": ["Europe/Amsterdam"]},
            "input": {"type": "string", "minLength": 1, "contentEncoding": "base64"},
            "concurrency": {"enum": ["forbid", "allow", "replace"]},
            "timeout": {"type": ["number", "string"]},
            "retry": {"type": ["integer", "object"]},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "slurml": {"type": "boolean"},
            "enabled": {"type": "boolean"},
        },
    },
    "Service": {
        "type": "object",
        "required": ["name", "runs_per_user", "max_runs", "queued", "running", "users"],
        "properties": {
            "name": {"type": "string"},
            "declared": {"type": "boolean"},
            "runs_per_user": {"type": "integer"},
            "max_runs": {"type": "integer"},
            "timeout": {"type": ["number", "null"]},
            "retention": {"type": ["number", "null"]},
            "queued": {"type": "integer"},
            "running": {"type": "integer"},
            "users": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "user_id": {"type": ["integer", "null"]},
                        "queued": {"type": "integer"},
                        "running": {"type": "integer"},
                    },
                },
            },
        },
    },
    "UserJob": {
        "type": "object",
        "required": ["id", "user_id", "service", "status", "loc", "dest_id"],
        "properties": {
            "id": {"type": "integer"},
            "user_id": {"type": ["integer", "null"]},
            "service": {"type": "string"},
            "status": {
                "enum": [
                    "Queued",
                    "Running",
                    "Completed",
                    "Failed",
                    "Cancelled",
                    "Invalid",
                    "Cleaned",
                ]
            },
            "loc": {"type": "string"},
            "dest_id": {"type": "string"},
        },
    },
    "Payload": {
        "type": "object",
        "required": ["id", "input", "status", "loc", "pid", "killed"],
        "properties": {
            "id": {"type": "integer"},
            "input": {"type": "object"},
            "status": {
                "enum": [
                    "Prepared",
                    "Running",
                    "Completed",
                    "Failed",
                    "Invalid",
                    "Killed",
                    "Cleaned",
                ]
            },
            "loc": {"type": "string"},
            "pid": {"type": "integer"},
            "killed": {"type": "boolean"},
        },
    },
}

_PENDING = _json(_ref("Job"), "not finished (202 with --pending-status 202)")
#: A job in a list: the job object without Output.
SCHEMAS["ListedJob"] = SCHEMAS["Job"] | {
    "required": [key for key in SCHEMAS["Job"]["required"] if key != "Output"]
}

PATHS: dict[str, dict] = {
    "/api/upload": {
        "post": {
            "operationId": "uploadJob",
            "summary": "Upload a job: a base64 zip with run.sh",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _ref("Upload"),
                        "example": {"input": _EXAMPLE_JOB, "timeout": 30},
                    }
                },
            },
            "responses": {
                "201": _json(_ref("Job"), "accepted") | {"links": _links("ID", _JOB_OPS)},
                "400": _error("bad JSON, base64, zip, id, field or zip entry"),
                **_AUTH,
                "409": _error("the ID exists"),
                "413": _error("over --max-upload, --max-unpacked or --max-files"),
                **_FULL,
                "503": _error("a Slurm job that cannot be submitted"),
            },
        }
    },
    "/api/get/{id}": {
        "get": {
            "operationId": "getJob",
            "summary": "A job; its result once finished",
            "parameters": [
                _id_param(),
                _query(
                    "wait",
                    {"type": "number", "minimum": 0},
                    "long-poll up to this many seconds (at most 60)",
                ),
                _query("partial", _FLAG, "unfinished: Output = the directory so far"),
            ],
            "responses": {
                "200": _json(_ref("Job"), "finished, Output = base64 result zip"),
                "202": _PENDING,
                "206": _PENDING,
                "400": _error("bad wait or partial"),
                **_AUTH,
                "404": _error("unknown ID"),
                "410": _error("removed"),
            },
        }
    },
    "/api/cancel/{id}": {
        "post": {
            "operationId": "cancelJob",
            "summary": "Cancel a queued or running job; answers once its processes are gone",
            "parameters": [_id_param()],
            "responses": {
                "200": _json(_ref("Job"), "cancelled"),
                **_AUTH,
                "404": _error("unknown ID"),
                "409": _error("already finished"),
                "410": _error("removed"),
                "503": _error("Slurm did not cancel it"),
            },
        }
    },
    "/api/logs/{id}": {
        "get": {
            "operationId": "jobLogs",
            "summary": "What run.sh printed so far",
            "parameters": [
                _id_param(),
                _query("stream", {"enum": ["stdout", "stderr"]}, "default stdout"),
                _query("follow", _FLAG, "stream new output until the job ends"),
            ],
            "responses": {
                "200": {"description": "text", "content": {"text/plain": {"schema": _TEXT}}},
                "400": _error("bad stream or follow"),
                **_AUTH,
                "404": _error("unknown ID"),
                "410": _error("removed"),
                "503": _error("too many followers now"),
            },
        }
    },
    "/api/jobs": {
        "get": {
            "operationId": "listJobs",
            "summary": "Jobs newest first, without Output; the next page is ?before=<last IntID>",
            "parameters": [
                _query("status", {"enum": [status.value for status in JobStatus]}, "only these"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "most, 50"),
                _query("before", {"type": "integer", "minimum": 0}, "older than this IntID"),
            ],
            "responses": {
                "200": _json({"type": "array", "items": _ref("ListedJob")}, "the jobs"),
                "400": _error("a bad status, limit or before"),
                **_AUTH,
            },
        }
    },
    "/api/schedules": {
        "post": {
            "operationId": "createSchedule",
            "summary": "Create a recurring job; its input is checked like an upload's and kept",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("NewSchedule")}},
            },
            "responses": {
                "201": _json(_ref("RecurringJob"), "created")
                | {"links": _links("name", _SCHEDULE_OPS)},
                "400": _error("a bad field, schedule, zone or zip"),
                **_AUTH,
                "409": _error("the name is taken"),
                "413": _error("too large"),
                **_FULL,
            },
        },
        "get": {
            "operationId": "listSchedules",
            "summary": "Every schedule",
            "responses": {
                "200": _json({"type": "array", "items": _ref("RecurringJob")}, "the schedules"),
                **_AUTH,
            },
        },
    },
    "/api/schedules/{name}": {
        "get": {
            "operationId": "getSchedule",
            "summary": "One schedule",
            "parameters": [_NAME],
            "responses": {"200": _json(_ref("RecurringJob"), "it"), **_AUTH, "404": _error("none")},
        },
        "patch": {
            "operationId": "changeSchedule",
            "summary": "Change a schedule's settings (not its name or input)",
            "parameters": [_NAME],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": _json(_ref("RecurringJob"), "changed"),
                "400": _error("a bad field"),
                **_AUTH,
                "404": _error("none"),
                "413": _error("too large"),
            },
        },
        "delete": {
            "operationId": "deleteSchedule",
            "summary": "Delete a schedule; its runs stay jobs",
            "parameters": [_NAME],
            "responses": {"204": {"description": "deleted"}, **_AUTH, "404": _error("none")},
        },
    },
    "/api/schedules/{name}/trigger": {
        "post": {
            "operationId": "triggerSchedule",
            "summary": "Start a run now (the concurrency policy still holds)",
            "parameters": [_NAME],
            "responses": {
                "200": _json(_ref("RecurringJob"), "the schedule, with the run under 'run'"),
                **_AUTH,
                "404": _error("none"),
                **_FULL,
            },
        }
    },
    "/api/schedules/{name}/enable": {
        "post": {
            "operationId": "enableSchedule",
            "summary": "Fire again, from now on",
            "parameters": [_NAME],
            "responses": {"200": _json(_ref("RecurringJob"), "it"), **_AUTH, "404": _error("none")},
        }
    },
    "/api/schedules/{name}/disable": {
        "post": {
            "operationId": "disableSchedule",
            "summary": "Stop firing (a trigger still runs it)",
            "parameters": [_NAME],
            "responses": {"200": _json(_ref("RecurringJob"), "it"), **_AUTH, "404": _error("none")},
        }
    },
    "/api/schedules/{name}/runs": {
        "get": {
            "operationId": "scheduleRuns",
            "summary": "The schedule's runs, newest first (SKIPPED ones too)",
            "parameters": [
                _NAME,
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "most"),
            ],
            "responses": {
                "200": _json({"type": "array", "items": _ref("Job")}, "its runs"),
                "400": _error("a bad limit"),
                **_AUTH,
                "404": _error("none"),
            },
        }
    },
    "/api/services": {
        "get": {
            "operationId": "services",
            "summary": "Each service's settings and its queued and running jobs, per user",
            "responses": {
                "200": _json({"type": "array", "items": _ref("Service")}, "the services"),
                **_AUTH,
            },
        }
    },
    "/health": {
        "get": {
            "operationId": "health",
            "summary": "Liveness and queue counts (no token needed)",
            "security": [],
            "responses": {"200": _json(_ref("Health"), "healthy")},
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": _TEXT}},
                },
                **_AUTH,
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This description",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1"), **_AUTH},
        }
    },
    "/docs": {
        "get": {
            "operationId": "docs",
            "summary": "This description as a page",
            "responses": {
                "200": {"description": "HTML", "content": {"text/html": {"schema": _TEXT}}},
                **_AUTH,
            },
        }
    },
    "/": {
        "get": {
            "operationId": "ping",
            "summary": "A one-line ping; with Accept: text/html, the status page (recent jobs)",
            "responses": {
                "200": {
                    "description": "the ping's text, or the page for a browser",
                    "content": {"text/plain": {"schema": _TEXT}, "text/html": {"schema": _TEXT}},
                },
                "401": {
                    "description": "a token is set and the request lacks it or has another;"
                    " with Accept: text/html, the page's sign-in form",
                    "content": {
                        "application/json": {"schema": _ref("Error")},
                        "text/html": {"schema": _TEXT},
                    },
                },
            },
        },
        "post": {
            "operationId": "signIn",
            "summary": "The status page's sign-in form: the token as a field; sets a cookie"
            " that opens reading (GET) routes to this browser",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {"type": "object", "properties": {"token": _TEXT}}
                    }
                },
            },
            "responses": {
                "303": {"description": "signed in (or no token is set): to the page"},
                "400": _error("no token field: not the form"),
                "401": {
                    "description": "the token is missing or wrong: the form again",
                    "content": {"text/html": {"schema": _TEXT}},
                },
                "413": _error("larger than the form"),
            },
        },
    },
    "/load": {
        "get": {
            "operationId": "load",
            "summary": "CPU load in percent (job-orchestrator)",
            "responses": {
                "200": _json({"type": "number", "minimum": 0, "maximum": 100}, "load"),
                **_AUTH,
            },
        }
    },
    "/submit": {
        "post": {
            "operationId": "submitFiles",
            "summary": "Submit a job as files (job-orchestrator)",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": {"type": "string", "format": "binary"},
                        }
                    }
                },
            },
            "responses": {
                "200": _json(_ref("Payload"), "accepted") | {"links": _links("id", _NUMBER_OPS)},
                "400": _error("bad multipart, unsafe name, no run.sh"),
                **_AUTH,
                "413": _error("too large"),
                **_FULL,
            },
        }
    },
    "/retrieve/{number}": {
        "get": {
            "operationId": "retrieve",
            "summary": "The result zip once the job succeeded; else its payload (job-orchestrator)",
            "parameters": [_id_param("number", integer=True)],
            "responses": {
                "200": {
                    "description": "zip, or the payload while not succeeded",
                    "content": {**_ZIP["content"], "application/json": {"schema": _ref("Payload")}},
                },
                **_AUTH,
                "404": _error("unknown number"),
            },
        }
    },
    "/retrieve_partial/{number}": {
        "get": {
            "operationId": "retrievePartial",
            "summary": "A zip of the job directory as it is now (job-orchestrator)",
            "parameters": [_id_param("number", integer=True)],
            "responses": {
                "200": _ZIP,
                **_AUTH,
                "404": _error("unknown number"),
                "410": _error("removed"),
            },
        }
    },
    "/upload": {
        "post": {
            "operationId": "uploadFiles",
            "summary": "Submit a job as files, for a user and a service (user API)",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file", "user_id"],
                            "properties": {
                                "file": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                },
                                "user_id": {"type": "string", "pattern": "^[0-9]+$"},
                                "service": {
                                    "type": "string",
                                    "pattern": f"^{SERVICE_PATTERN.pattern}$",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json(_ref("UserJob"), "queued") | {"links": _links("id", _USER_OPS)},
                "400": _error("bad multipart, user_id or service, unsafe name, no run.sh"),
                **_AUTH,
                "413": _error("too large"),
                **_FULL,
            },
        }
    },
    "/download/{number}": {
        "get": {
            "operationId": "download",
            "summary": "The job's state as a status code; its result zip once it completed",
            "parameters": [_id_param("number", integer=True)],
            "responses": {
                "200": _ZIP,
                "202": _json(_ref("UserJob"), "queued or running"),
                "204": {"description": "removed by retention"},
                "400": _error("accepted, but run.sh could not be started"),
                **_AUTH,
                "404": _error("unknown number"),
                "410": _error("failed or cancelled: the message, exit code and where the logs are"),
            },
        }
    },
    "/download_partial/{number}": {
        "get": {
            "operationId": "downloadPartial",
            "summary": "A zip of the job directory as it is now",
            "parameters": [_id_param("number", integer=True)],
            "responses": {
                "200": _ZIP,
                **_AUTH,
                "404": _error("unknown number"),
                "410": _error("removed"),
            },
        }
    },
    "/terminate/{number}": {
        "post": {
            "operationId": "terminate",
            "summary": "Cancel the job; 200 if it had already ended",
            "parameters": [_id_param("number", integer=True)],
            "responses": {
                "200": _json(_ref("UserJob"), "cancelled, or had ended"),
                **_AUTH,
                "404": _error("unknown number"),
            },
        }
    },
    "/kill/{number}": {
        "post": {
            "operationId": "kill",
            "summary": "End the job's process tree (job-orchestrator); 200 if it already ended",
            "parameters": [_id_param("number", integer=True)],
            "responses": {
                "200": _json(_ref("Payload"), "killed, or had ended"),
                **_AUTH,
                "404": _error("unknown number"),
                "500": _error("could not be ended"),
            },
        }
    },
}


def spec(token_required: bool) -> dict:
    """The description of this daemon: every route but /health needs the token if one is set,
    and none does otherwise."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobd",
            "version": __version__,
            "description": "A job daemon for research software containers: upload a zip with"
            " run.sh, get the result zip back. Errors are always the Error object.",
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}] if token_required else [],
    }


def docs_page() -> str:
    """A self-contained HTML page of the description: no scripts, no CDN."""
    rows = []
    for path, methods in PATHS.items():
        for method, op in methods.items():
            params = ", ".join(
                f"<code>{html.escape(p['name'])}</code> ({p['in']})"
                for p in op.get("parameters", [])
            )
            codes = ", ".join(
                f"<b>{code}</b> {html.escape(r['description'])}"
                for code, r in op["responses"].items()
            )
            rows.append(
                f"<tr><td><code>{method.upper()} {html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td><td>{params}</td><td>{codes}</td></tr>"
            )
    schemas = "".join(
        f"<h3>{name}</h3><pre>{html.escape(json.dumps(schema, indent=2))}</pre>"
        for name, schema in SCHEMAS.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>jobd API</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:75em}td{vertical-align:top;"
        "padding:.3em .6em;border-bottom:1px solid #ddd}pre{background:#f6f6f6;padding:1em}"
        "</style></head><body>"
        f"<h1>jobd {html.escape(__version__)} API</h1>"
        "<p>Machine-readable: <a href='openapi.json'>openapi.json</a> (OpenAPI 3.1). When a "
        "token is set, every route but /health needs <code>Authorization: Bearer &lt;token&gt;"
        "</code>.</p><table><tr><th>route</th><th>what</th><th>parameters</th>"
        f"<th>answers</th></tr>{''.join(rows)}</table><h2>Schemas</h2>{schemas}</body></html>"
    )
