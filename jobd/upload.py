"""The upload body, read as a stream: `input` goes to a sink in pieces, other fields are small.

Bottle's `request.json` would hold the whole body (and refuses large ones), so the JSON
object is scanned here: a 1 GB upload needs about one chunk of memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from jobd.config import parse_duration
from jobd.errors import BadRequest, TooLarge
from jobd.models import JOB_ID_PATTERN, valid_job_id

CHUNK = 1 << 20
_SMALL_VALUE = 1 << 16
_SPACE = b" \t\r\n"
_SIMPLE_ESCAPES = {
    ord("/"): b"/",
    ord("\\"): b"\\",
    ord('"'): b'"',
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("b"): b"\b",
    ord("f"): b"\f",
}


@dataclass(frozen=True)
class Upload:
    """The fields of an upload other than its input."""

    job_id: str | None
    slurml: bool
    timeout: float | None
    fields: dict[str, object]


def _malformed(what: str) -> BadRequest:
    return BadRequest(f"the body is not valid JSON: {what}")


class _Body:
    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._read = 0
        self.buf = b""
        self.pos = 0

    def fill(self, need: int = 1) -> bool:
        """Make at least `need` unread bytes available; False at the end of the body."""
        while len(self.buf) - self.pos < need:
            block = self._stream.read(CHUNK)
            if not block:
                return False
            self._read += len(block)
            if self._read > self._limit:
                raise TooLarge(f"the body is larger than this jobd accepts ({self._limit} bytes)")
            self.buf = self.buf[self.pos :] + block
            self.pos = 0
        return True

    def peek(self) -> int | None:
        """The next byte that is not whitespace, left unread; None at the end."""
        while True:
            if not self.fill():
                return None
            byte = self.buf[self.pos]
            if byte not in _SPACE:
                return byte
            self.pos += 1

    def expect(self, char: bytes, what: str) -> None:
        if self.peek() != char[0]:
            raise _malformed(f"expected {what}")
        self.pos += 1

    def stream_string(self, sink: Callable[[bytes], None]) -> None:
        """Send the string that starts here to `sink`, unescaped, in pieces."""
        self.expect(b'"', "a string")
        while True:
            if not self.fill():
                raise _malformed("it ends inside a string")
            quote = self.buf.find(b'"', self.pos)
            slash = self.buf.find(b"\\", self.pos, quote if quote >= 0 else len(self.buf))
            if slash >= 0:
                sink(self.buf[self.pos : slash])
                self.pos = slash
                sink(self._escape())
            elif quote >= 0:
                sink(self.buf[self.pos : quote])
                self.pos = quote + 1
                return
            else:
                sink(self.buf[self.pos :])
                self.pos = len(self.buf)

    def _escape(self) -> bytes:
        if not self.fill(2):
            raise _malformed("it ends inside a string")
        code = self.buf[self.pos + 1]
        if code in _SIMPLE_ESCAPES:
            self.pos += 2
            return _SIMPLE_ESCAPES[code]
        if code == ord("u") and self.fill(6):
            digits = self.buf[self.pos + 2 : self.pos + 6]
            self.pos += 6
            try:
                return chr(int(digits, 16)).encode("utf-8", "surrogatepass")
            except ValueError:
                pass
        raise _malformed("a string holds an invalid escape sequence")

    def small_value(self) -> object:
        """Parse the JSON value that starts here; it must be under 64 KiB."""
        start = self.peek()
        if start is None:
            raise _malformed("it ends where a value should be")
        if start == ord('"'):
            parts: list[bytes] = []
            self.stream_string(parts.append)
            text = b"".join(parts)
            if len(text) > _SMALL_VALUE:
                raise BadRequest("a field other than 'input' is longer than 64 KiB")
            try:
                return text.decode("utf-8")
            except UnicodeDecodeError:
                raise _malformed("a string is not UTF-8") from None
        return self._other_value(start)

    def _other_value(self, start: int) -> object:
        """A number, literal, object or array, tracking nesting and strings."""
        depth, in_string, escaped = 0, False, False
        end = self.pos
        while True:
            if end >= len(self.buf):
                offset = end - self.pos
                if offset > _SMALL_VALUE:
                    raise BadRequest("a field other than 'input' is longer than 64 KiB")
                if not self.fill(offset + 1):
                    break
                end = self.pos + offset
            byte = self.buf[end]
            if in_string:
                escaped, in_string = (False, True) if escaped else (byte == 92, byte != 34)
            elif byte == 34:
                in_string = True
            elif byte in b"{[":
                depth += 1
            elif byte in b"}]":
                if depth == 0:
                    break
                depth -= 1
            elif byte == 44 and depth == 0:
                break
            end += 1
        raw = self.buf[self.pos : end]
        self.pos = end
        if start not in b"{[-0123456789tfn":
            raise _malformed(f"unexpected character {chr(start)!r}")
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _malformed(f"{exc.msg} in {raw[:40]!r}") from None


def read_upload(stream: BinaryIO, limit: int, sink: Callable[[bytes], None]) -> Upload:
    """Scan `{"id": ..., "input": "<base64>", ...}`: `input` to `sink`, the rest returned.

    Field names match case-insensitively, as Go's encoding/json does for the Go jobd's clients.
    """
    body = _Body(stream, limit)
    if body.peek() is None:
        raise BadRequest('the body is empty; send a JSON object like {"input": "<base64 zip>"}')
    body.expect(b"{", 'a JSON object like {"input": "<base64 zip>"}')
    fields: dict[str, object] = {}
    if body.peek() == ord("}"):
        body.pos += 1
    else:
        while True:
            name = body.small_value()
            if not isinstance(name, str):
                raise _malformed("a field name must be a string")
            body.expect(b":", f"':' after the field name {name!r}")
            key = name.lower()
            if key in fields:
                raise BadRequest(f"the field {name!r} appears twice")
            if key == "input" and body.peek() == ord('"'):
                body.stream_string(sink)
                fields[key] = True
            else:
                fields[key] = body.small_value()
            if body.peek() == ord("}"):
                body.pos += 1
                break
            body.expect(b",", "',' or '}' after a field")
    if body.peek() is not None:
        raise _malformed("there is more data after the JSON object")
    return _validate(fields)


def _validate(fields: dict[str, object]) -> Upload:
    if fields.get("input") is not True:
        raise BadRequest(
            "'input' is missing or not a string; it must hold the job's zip, base64-encoded"
        )
    job_id = fields.get("id")
    if job_id in ("", None):
        job_id = None
    elif not isinstance(job_id, str) or not valid_job_id(job_id):
        raise BadRequest(
            f"'id' {job_id!r} is not a valid job ID: use 1-128 letters, digits, '.', '_' or '-',"
            f" starting with a letter or digit ({JOB_ID_PATTERN.pattern})"
        )
    slurml = False
    for key in ("slurml", "slurm"):
        value = fields.get(key, False)
        if not isinstance(value, bool) and value is not None:
            raise BadRequest(f"'{key}' must be true or false, not {value!r}")
        slurml = slurml or bool(value)
    return Upload(job_id, slurml, _timeout(fields.get("timeout")), fields)


def _timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = parse_duration(value)
        except ValueError as exc:
            raise BadRequest(f"'timeout' {exc}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise BadRequest(
            f"'timeout' must be a positive number of seconds (or like '30m'), not {value!r}"
        )
    if value == float("inf"):
        return None
    return float(value)
