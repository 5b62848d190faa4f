"""multipart/form-data bodies (`/submit`, `/upload`): read once by Bottle, its file parts and
its plain fields, with errors a person can act on; and a body sent to the route that takes
the other kind (JSON to `/submit`, a form to `/api/upload`) gets which route takes which."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import BinaryIO, cast

from bottle import FileUpload, request

from jobd.config.units import parse_whole, shown
from jobd.errors import BadRequest
from jobd.jobs.upload import (
    LIMITS_SHAPE,
    MAX_ATTEMPTS,
    parse_limits,
    parse_retry,
    unknown_field,
)
from jobd.models import NO_LIMITS, JobLimits, RetryPolicy


@dataclass
class Form:
    files: list[tuple[str | None, FileUpload]]  # (part name, part), in the body's order
    fields: dict[str, str]


#: What each route takes, for a body of the other kind.
TAKES = {
    "/submit": "/submit takes multipart/form-data (one part per file, with run.sh)",
    "/upload": "/upload takes multipart/form-data (user_id, and one part per file, with run.sh)",
}
TO_JSON_ROUTE = "to send JSON with a base64 zip use POST /api/upload"
JSON_ROUTE = (
    '/api/upload takes a JSON body {"input": "<base64 zip>", ...}; to upload files as'
    " multipart/form-data use POST /submit (or /upload with user_id)"
)
#: The plain fields each route takes; any other is a 400, not silently dropped.
FIELDS = {
    "/submit": ("retry", "limits"),
    "/upload": ("user_id", "service", "retry", "limits"),
}
#: The most of a body looked at for its first byte that is not a space.
_PEEK = 4096


def _is_form() -> bool:
    return request.content_type.split(";")[0].strip() == "multipart/form-data"


def read_form(route: str) -> Form:
    """The form sent to `route` (/submit or /upload); any other kind of body is a 400 that
    names the route for it. So is a field the route does not take, a field given twice, and
    a field sent as a file part: each would otherwise be dropped without a word."""
    if not _is_form():
        raise BadRequest(f"{TAKES[route]}; {TO_JSON_ROUTE}")
    try:
        files = list(request.files.allitems())
        items = list(request.forms.allitems())
    except UnicodeDecodeError:
        raise BadRequest(
            "a form field without a file name holds bytes that are not UTF-8;"
            " send binary data as a file part (curl -F 'name=@file')"
        ) from None
    except Exception as exc:  # Bottle's multipart parser has no error class of its own
        raise BadRequest(f"the body is not valid multipart/form-data: {exc}") from None
    fields = _fields(route, items)
    for name, part in files:
        _not_a_field(route, name, part.raw_filename)
    if not files:
        raise BadRequest("send the job's files as multipart/form-data parts, run.sh among them")
    return Form(files, fields)


def _fields(route: str, items: list[tuple[str, str]]) -> dict[str, str]:
    known = FIELDS[route]
    fields: dict[str, str] = {}
    for name, value in items:
        if (
            name == "file" and route == "/upload"
        ):  # Bottle reads a part with an empty file name as a field
            raise BadRequest(
                "a 'file' part has an empty file name; send files as -F 'file=@path' (a path"
                " inside the job: ';filename=data/name')"
            )
        if name not in known:
            raise BadRequest(
                unknown_field(name, known, f"the {route} form")
                + " (a part without a file name is a field: send files as -F 'name=@path')"
            )
        if name in fields:
            raise BadRequest(f"the field {name!r} is given twice in the {route} form; give it once")
        fields[name] = value
    return fields


def _not_a_field(route: str, name: str | None, filename: str | None) -> None:
    """A file part named like a field is a field sent the wrong way (curl -F 'retry=@3'),
    unless, on /submit, its name is its path (job-orchestrator's way: a file named so)."""
    if name not in FIELDS[route] or (route == "/submit" and name == filename):
        return
    raise BadRequest(
        f"{name!r} came as a file part (file name {shown(filename)}); send it as a plain"
        f" field: -F '{name}=value', without '@'"
    )


def form_retry(fields: dict[str, str]) -> RetryPolicy | None:
    """`-F retry=3`: attempts in all, with Chronos's default intervals."""
    text = fields.get("retry")
    if text is None:
        return None
    attempts = parse_whole(text, 1, MAX_ATTEMPTS)
    if attempts is None:
        raise BadRequest(
            f"'retry' must be a whole number of attempts from 1 to {MAX_ATTEMPTS},"
            f" not {shown(text)}"
        )
    return parse_retry(attempts)


def form_limits(fields: dict[str, str]) -> JobLimits:
    """`-F 'limits={"memory": "256M"}'` on /upload and /submit: the same object, as JSON."""
    text = fields.get("limits")
    if text is None:
        return NO_LIMITS
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise BadRequest(
            f"'limits' must hold a JSON object like {LIMITS_SHAPE}, not {shown(text)}"
        ) from None
    except ValueError:  # the one left: more digits than Python converts
        raise BadRequest("'limits' holds a number of more than 4300 digits") from None
    if value is None:
        raise BadRequest(f"'limits' must hold a JSON object like {LIMITS_SHAPE}, not null")
    return parse_limits(value)


def json_body(stream: BinaryIO) -> BinaryIO:
    """/api/upload's body, read as it arrives; a form (by its Content-Type, unless the body
    starts with '{' after all) is a 400 that names the routes for forms."""
    if not _is_form():
        return stream
    head = stream.read(_PEEK)
    start = head.lstrip(b" \t\r\n")[:1]
    if start != b"{" and (start or len(head) < _PEEK):  # all spaces so far: let JSON tell
        raise BadRequest(JSON_ROUTE)
    return cast(BinaryIO, _Replayed(head, stream))


class _Replayed:
    """The bytes read to look at a body, then the rest of it."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._rest.read(size)
        if size < 0:
            piece, self._head = self._head + self._rest.read(), b""
        else:
            piece, self._head = self._head[:size], self._head[size:]
        return piece
