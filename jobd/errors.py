"""Errors that reach a client: each carries its HTTP status, mapped to JSON once in http/app.py."""

from __future__ import annotations

import errno
import sqlite3


class JobdError(Exception):
    """Base class: `message` is written for a person and says what to change."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(JobdError):
    status = 400
    code = "bad_request"


class Unauthorized(JobdError):
    status = 401
    code = "unauthorized"


class Forbidden(JobdError):
    """The caller is known, and this is not theirs to do."""

    status = 403
    code = "forbidden"


class NotFound(JobdError):
    status = 404
    code = "not_found"


class Conflict(JobdError):
    status = 409
    code = "conflict"


class IdTaken(Conflict):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"a job with ID {job_id!r} already exists; choose another ID")


class Gone(JobdError):
    status = 410
    code = "gone"


class TooLarge(JobdError):
    status = 413
    code = "payload_too_large"


class Internal(JobdError):
    """jobd could not do what was asked, through no fault of the request."""


class Unavailable(JobdError):
    status = 503
    code = "service_unavailable"


class InsufficientStorage(JobdError):
    """The data dir's disk is full, or at the reserve kept for running jobs."""

    status = 507
    code = "insufficient_storage"


class ConfigError(Exception):
    """A flag or environment variable has a value jobd cannot use; raised before start-up."""


class DataDirUnusable(Exception):
    """The data dir, or the database in it, cannot be used; found at start-up, with nothing
    changed on disk."""


class DataDirBusy(DataDirUnusable):
    """Another jobd holds the data directory's lock."""


_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13  # sqlite3.SQLITE_FULL, named there from Python 3.11 on


def is_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the user's quota) is full."""
    if isinstance(exc, OSError):
        return exc.errno in _FULL
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == _SQLITE_FULL or "disk is full" in str(exc)
    return False
