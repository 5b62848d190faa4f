"""Who is asking: the operator (`--token`, or anyone when jobd has no token) or one of the
users of `--user-tokens`, told from the bearer header (or the status page's cookie).

Tokens are compared in constant time, each against every known one, never looked up by
value; no token is logged or answered. The routes hand `owner()` to the job service, which
alone decides what a user may see (jobd/jobs/service.py).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass

from bottle import request

from jobd.config.user_tokens import UserTokens
from jobd.errors import Forbidden

#: Where the request's caller is kept, once the token check found it.
_CALLER = "jobd.caller"


@dataclass(frozen=True)
class Caller:
    owner: int | None  # the user whose jobs this caller reaches; None: every job


OPERATOR = Caller(None)


class Credentials:
    """The operator's token and the users' tokens, as bytes, with whom each one names."""

    def __init__(self, token: str | None, users: UserTokens | None) -> None:
        known = [(OPERATOR, token.encode())] if token is not None else []
        known += [
            (Caller(user), secret.encode())
            for user, secret in (users.entries if users is not None else ())
        ]
        self._known = tuple(known)

    @property
    def required(self) -> bool:
        """Whether every route but /health needs a token."""
        return bool(self._known)

    def tokens(self) -> Iterator[tuple[Caller, bytes]]:
        yield from self._known

    def match(self, given: bytes) -> Caller | None:
        """Whose token `given` is; every known token is compared, in constant time each."""
        found = None
        for caller, token in self._known:
            if hmac.compare_digest(given, token):
                found = caller
        return found

    def from_header(self, header: str) -> Caller | None:
        """Whose `Authorization: Bearer TOKEN` this is; the scheme is case-insensitive (RFC
        7235)."""
        scheme, _, given = header.encode().partition(b" ")
        if scheme.lower() != b"bearer" or not given:
            return None
        return self.match(given)


def set_caller(caller: Caller) -> None:
    request.environ[_CALLER] = caller


def owner() -> int | None:
    """The user whose jobs this request reaches, or None for every job (the operator). Only
    /health and the sign-in form skip the token check, and neither reads a job."""
    caller = request.environ.get(_CALLER, OPERATOR)
    return caller.owner


def operator_only(what: str) -> None:
    """A user's token does not reach what is the operator's alone."""
    if owner() is not None:
        raise Forbidden(f"{what} is the operator's: it needs the token of --token, not a user's")
