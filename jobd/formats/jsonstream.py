"""A JSON object read as a stream: one big string field goes to a sink in pieces, the other
fields are small and returned parsed. Bottle's `request.json` (and `json.load` for a client)
would hold the whole body; this needs about one chunk of memory whatever its size.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import BinaryIO

from jobd.errors import BadRequest, TooLarge

CHUNK = 1 << 20
_SMALL_VALUE = 1 << 16
_MAX_DEPTH = 64
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
        if code == ord("u"):
            unit = self._unit()
            if 0xD800 <= unit < 0xDC00 and self.fill(2) and self.buf[self.pos] == 92:
                low = self._unit()  # a surrogate pair, as json.dumps writes an emoji
                if not 0xDC00 <= low < 0xE000:
                    raise _malformed("a string holds half a surrogate pair")
                unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
            return chr(unit).encode("utf-8", "surrogatepass")
        raise _malformed("a string holds an invalid escape sequence")

    def _unit(self) -> int:
        """The code unit of a \\uXXXX escape that starts here."""
        if self.fill(6) and self.buf[self.pos + 1] == ord("u"):
            digits = self.buf[self.pos + 2 : self.pos + 6]
            if digits.isalnum():
                try:
                    unit = int(digits, 16)
                except ValueError:
                    pass
                else:
                    self.pos += 6
                    return unit
        raise _malformed("a string holds an invalid \\u escape")

    def small_value(self, field: str | None = None) -> object:
        """Parse the JSON value that starts here (that of `field`, if named); it must be
        under 64 KiB."""
        start = self.peek()
        if start is None:
            raise _malformed("it ends where a value should be")
        if start == ord('"'):
            parts: list[bytes] = []
            self.stream_string(parts.append)
            text = b"".join(parts)
            if len(text) > _SMALL_VALUE:
                raise BadRequest("a field of the JSON object is longer than 64 KiB")
            try:
                return text.decode("utf-8")
            except UnicodeDecodeError:
                raise _malformed("a string is not UTF-8") from None
        return self._other_value(start, field)

    def _other_value(self, start: int, field: str | None) -> object:
        """A number, literal, object or array, tracking nesting and strings."""
        depth, in_string, escaped = 0, False, False
        end = self.pos
        while True:
            if end >= len(self.buf):
                offset = end - self.pos
                if offset > _SMALL_VALUE:
                    raise BadRequest("a field of the JSON object is longer than 64 KiB")
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
                if depth > _MAX_DEPTH:
                    raise BadRequest(f"a field of the JSON object nests deeper than {_MAX_DEPTH}")
            elif byte in b"}]":
                if depth == 0:
                    break
                depth -= 1
            elif byte == 44 and depth == 0:
                break
            end += 1
        if end - self.pos > _SMALL_VALUE:
            raise BadRequest("a field of the JSON object is longer than 64 KiB")
        raw = self.buf[self.pos : end]
        self.pos = end
        if start not in b"{[-0123456789tfn":
            raise _malformed(f"unexpected character {chr(start)!r}")
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            shown = raw[:40].decode(errors="replace")
            raise _malformed(f"{exc.msg} in {shown!r}") from None
        except UnicodeDecodeError:
            raise _malformed("a value holds bytes that are not UTF-8") from None
        except ValueError:  # the one left: more digits than Python converts
            where = f"{field!r} holds" if field is not None else "the body holds"
            raise BadRequest(f"{where} a number of more than 4300 digits") from None


def scan_object(
    stream: BinaryIO, limit: int, big: str, sink: Callable[[bytes], None], shape: str
) -> dict[str, object]:
    """The object's fields; the string field named `big` goes to `sink` instead (its value
    in the result is True). Names compare case-insensitively, as in Go's encoding/json.
    `shape` shows a person what the object should look like."""
    body = _Body(stream, limit)
    if body.peek() is None:
        raise BadRequest(f"the body is empty; send a JSON object like {shape}")
    body.expect(b"{", f"a JSON object like {shape}")
    fields: dict[str, object] = {}
    seen: set[str] = set()
    if body.peek() == ord("}"):
        body.pos += 1
    else:
        while True:
            name = body.small_value()
            if not isinstance(name, str):
                raise _malformed("a field name must be a string")
            body.expect(b":", f"':' after the field name {name!r}")
            if name.lower() in seen:
                raise BadRequest(f"the field {name!r} appears twice")
            seen.add(name.lower())
            if name.lower() == big and body.peek() == ord('"'):
                body.stream_string(sink)
                fields[name] = True
            else:
                fields[name] = body.small_value(name)
            if body.peek() == ord("}"):
                body.pos += 1
                break
            body.expect(b",", "',' or '}' after a field")
    if body.peek() is not None:
        raise _malformed("there is more data after the JSON object")
    return fields
