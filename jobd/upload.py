"""The upload body: `{"id": ..., "input": "<base64 zip>", ...}`, read as a stream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from jobd.config import parse_duration
from jobd.errors import BadRequest
from jobd.jsonstream import scan_object
from jobd.models import JOB_ID_PATTERN, valid_job_id


@dataclass(frozen=True)
class Upload:
    """The fields of an upload other than its input."""

    job_id: str | None
    slurml: bool
    timeout: float | None
    fields: dict[str, object]


def read_upload(stream: BinaryIO, limit: int, sink: Callable[[bytes], None]) -> Upload:
    """Send the base64 of `input` to `sink` in pieces; check and return the other fields."""
    fields = scan_object(stream, limit, "input", sink, '{"input": "<base64 zip>"}')
    return _validate({name.lower(): value for name, value in fields.items()})


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
