"""multipart/form-data bodies (`/submit`, `/upload`): read once by Bottle, its file parts and
its plain fields, with errors a person can act on."""

from __future__ import annotations

from dataclasses import dataclass

from bottle import FileUpload, request

from jobd.errors import BadRequest
from jobd.models import RetryPolicy
from jobd.upload import parse_retry


@dataclass
class Form:
    files: list[tuple[str | None, FileUpload]]  # (part name, part), in the body's order
    fields: dict[str, str]


def read_form() -> Form:
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
