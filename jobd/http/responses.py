"""Answers every route family shares: JSON bodies, the one error shape, files streamed from
disk, and the body-size check made before a body is read."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import BinaryIO

from bottle import HTTPResponse, request

from jobd.errors import TooLarge
from jobd.formats.archive import CHUNK
from jobd.http.slots import WaitSlots


class _SendHeaders(bytes):
    """A marker piece of a body: send the headers now. Bottle and waitress hold the headers
    back until the first non-empty piece; a log follower should learn its status before the
    job has printed anything. `server.headers_on_marker` turns it into the WSGI way."""

    def __bool__(self) -> bool:
        return True  # so Bottle passes it on instead of waiting for the next piece


SEND_HEADERS = _SendHeaders()


def json_response(body: object, status: int = 200, **headers: str) -> HTTPResponse:
    return HTTPResponse(json.dumps(body), status, {"Content-Type": "application/json", **headers})


def error_response(status: int, code: str, message: str, **headers: str) -> HTTPResponse:
    """The one JSON error shape: {"error", "message", "status"}."""
    return json_response({"error": code, "message": message, "status": status}, status, **headers)


def read_all(source: BinaryIO, size: int) -> Iterator[bytes]:
    """`size` bytes of an open file in pieces (it may grow meanwhile: Content-Length holds)."""
    with source:
        while size > 0 and (block := source.read(min(CHUNK, size))):
            size -= len(block)
            yield block


def size_of(opened: BinaryIO) -> int:
    """Bytes from the start of an open file (or an in-memory one) to its end."""
    size = opened.seek(0, os.SEEK_END)
    opened.seek(0)
    return size


def zip_response(zipped: BinaryIO, slots: WaitSlots) -> HTTPResponse:
    size = size_of(zipped)
    headers = {"Content-Type": "application/zip", "Content-Length": str(size)}
    return HTTPResponse(slots.sized(read_all(zipped, size), size), 200, headers)


def refuse_large_body(limit: int) -> None:
    """A body whose declared size is over --max-upload is refused before it is read."""
    if request.content_length > limit:
        raise TooLarge(
            f"the body is {request.content_length} bytes; this jobd accepts at most {limit}"
            " (see --max-upload)"
        )
