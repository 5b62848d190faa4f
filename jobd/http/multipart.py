"""multipart/form-data bodies (`/submit`, `/upload`): read once by Bottle, its file parts and
its plain fields, with errors a person can act on; and a body sent to the route that takes
the other kind (JSON to `/submit`, a form to `/api/upload`) gets which route takes which."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import BinaryIO, cast

from bottle import FileUpload, request

from jobd.errors import BadRequest
from jobd.jobs.upload import LIMITS_SHAPE, parse_limits, parse_retry
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
#: The most of a body looked at for its first byte that is not a space.
_PEEK = 4096


def _is_form() -> bool:
    return request.content_type.split(";")[0].strip() == "multipart/form-data"


def read_form(route: str) -> Form:
    """The form sent to `route` (/submit or /upload); any other kind of body is a 400 that
    names the route for it."""
    if not _is_form():
        raise BadRequest(f"{TAKES[route]}; {TO_JSON_ROUTE}")
    try:
        files = list(request.files.allitems())
        fields = {name: value for name, value in request.forms.allitems()}
    except UnicodeDecodeError:
        raise BadRequest(
            "a form field without a file name holds bytes that are not UTF-8;"
            " send binary data as a file part (curl -F 'name=@file')"
        ) from None
    except Exception as exc:  # Bottle's multipart parser has no error class of its own
        raise BadRequest(f"the body is not valid multipart/form-data: {exc}") from None
    if not files:
        raise BadRequest("send the job's files as multipart/form-data parts, run.sh among them")
    return Form(files, fields)


def form_retry(fields: dict[str, str]) -> RetryPolicy | None:
    """`-F retry=3`: attempts in all, with Chronos's default intervals."""
    text = fields.get("retry")
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()):
        raise BadRequest(f"'retry' must be a whole number of attempts, not {text!r}")
    return parse_retry(int(text))


def form_limits(fields: dict[str, str]) -> JobLimits:
    """`-F 'limits={"memory": "256M"}'` on /upload and /submit: the same object, as JSON."""
    text = fields.get("limits")
    if text is None:
        return NO_LIMITS
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise BadRequest(
            f"'limits' must hold a JSON object like {LIMITS_SHAPE}, not {text[:100]!r}"
        ) from None
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
