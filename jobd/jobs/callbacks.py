"""Completion callbacks: when a job ends, POST its job object to the URL it gave.

Deliveries live in the store's outbox, written in the same commit as the job's end, so none
is lost to a restart. Each is retried with growing gaps (1 s, 2 s, 4 s ... at most a minute
apart) until a 2xx answer, for at least `retry_for` seconds.
"""

from __future__ import annotations

import base64
import fnmatch
import http.client
import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

from jobd.config.units import shown
from jobd.errors import BadRequest
from jobd.loop import Loop
from jobd.models import Delivery, DeliveryState, Job
from jobd.store import Store

log = logging.getLogger("jobd")

FIRST_RETRY, LONGEST_GAP, TIMEOUT = 1.0, 60.0, 10.0


#: What a URL may hold once sent: visible ASCII. A space, CR/LF or any other control
#: character cannot go on a request line, and http.client refuses non-ASCII paths.
_URL_CHARS = re.compile(r"[!-~]+")
#: The longest callback URL: servers refuse longer request lines.
MAX_URL = 4096


def check_callback_url(url: object, allow: tuple[str, ...]) -> str:
    """The upload's `callback_url`, if it is an http(s) URL to a host `allow` permits, that
    can go on a request line as sent (otherwise it would be retried for nothing)."""
    if not isinstance(url, str) or not url:
        raise BadRequest(f"'callback_url' must be an http(s) URL, not {shown(url)}")
    if len(url) > MAX_URL:
        raise BadRequest(
            f"'callback_url' is {len(url)} characters long; at most {MAX_URL} are taken"
        )
    if not _URL_CHARS.fullmatch(url):
        raise BadRequest(
            f"'callback_url' {shown(url)} holds a space, a control character or a character"
            " outside ASCII; percent-encode it (%20) and write the host in ASCII (xn--)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError as exc:
        raise BadRequest(f"'callback_url' {shown(url)} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"'callback_url' {shown(url)} is not an http(s) URL with a host")
    if port == 0:
        raise BadRequest(f"'callback_url' {shown(url)} has port 0, which no server listens on")
    if parts.username is not None or parts.password is not None:
        raise BadRequest(
            "'callback_url' holds a user name or password before its host, which jobd would"
            " not send (and would show in its log); use 'callback.auth' instead"
        )
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        raise BadRequest(f"'callback_url' {shown(url)} has a host name no DNS can hold") from None
    if allow and not any(fnmatch.fnmatch(parts.hostname.lower(), host) for host in allow):
        raise BadRequest(
            f"'callback_url' goes to {parts.hostname!r}, which this jobd may not call"
            f" (--callback-allow {','.join(allow)})"
        )
    return url


#: A header's name, as HTTP allows it (RFC 9110 token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
#: Headers an `api_key` may not name: those that frame the request or route it (a second
#: Content-Length or Host would let a proxy read the request as another), the hop-by-hop
#: ones, and those that describe the body jobd sends.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "te",
        "trailer",
        "connection",
        "keep-alive",
        "upgrade",
        "expect",
        "content-type",
        "content-encoding",
    }
)
#: A header value as HTTP carries it: visible ASCII and Latin-1 (RFC 9110 field-vchar, as
#: http.client encodes it), spaces only inside.
_HEADER_VALUE = re.compile(r"[!-~\xa0-\xff]([ !-~\xa0-\xff]*[!-~\xa0-\xff])?")
_AUTH_FIELDS = {
    "bearer": ("token",),
    "basic": ("username", "password"),
    "api_key": ("header", "key"),
}


def check_callback_auth(auth: object) -> str:
    """Chronos's webhook auth, checked: `{"type": "bearer", "token": ...}`, `basic`
    (username, password) or `api_key` (header, key); returned as JSON for the store. Only
    what can be sent in a header is taken; no message shows any part of a secret."""
    kinds = ", ".join(_AUTH_FIELDS)
    kind = auth.get("type") if isinstance(auth, dict) else None
    if not isinstance(auth, dict) or not isinstance(kind, str) or kind not in _AUTH_FIELDS:
        raise BadRequest(f"'callback.auth' must be an object whose 'type' is one of {kinds}")
    fields = _AUTH_FIELDS[kind]
    unknown = set(auth) - {"type", *fields}
    if unknown:
        raise BadRequest(
            f"'callback.auth' of type {auth['type']} has no field {shown(min(unknown))}"
        )
    for name in fields:
        _check_secret(name, auth.get(name), in_base64=kind == "basic")
    if kind == "basic" and ":" in auth["username"]:
        raise BadRequest("'callback.auth.username' may not hold ':'")
    if kind == "api_key":
        _check_header_name(auth["header"])
    return json.dumps({key: auth[key] for key in ("type", *fields)})


def _check_secret(name: str, value: object, in_base64: bool) -> None:
    """A value for a header: basic's are sent as base64 of UTF-8, so any text without
    control characters does; the others go into the header as they are."""
    where = f"'callback.auth.{name}'"
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise BadRequest(f"{where} must be a string of 1 to 4096 characters")
    if in_base64:
        if any(ord(c) < 32 or 127 <= ord(c) < 160 or 0xD800 <= ord(c) < 0xE000 for c in value):
            raise BadRequest(f"{where} holds a control character or half a surrogate pair")
    elif not _HEADER_VALUE.fullmatch(value):
        raise BadRequest(
            f"{where} holds a character an HTTP header cannot carry: it may hold visible ASCII"
            " and Latin-1 characters, and spaces between them"
        )


def _check_header_name(header: object) -> None:
    if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header):
        raise BadRequest(
            f"'callback.auth.header' {shown(header)} is not a header name (letters, digits"
            " and !#$%&'*+.^_`|~-, up to 128)"
        )
    lower = header.lower()
    if lower in _RESERVED_HEADERS or lower.startswith("proxy-"):
        raise BadRequest(
            f"'callback.auth.header' may not be {header!r}: it frames or routes the request,"
            " or describes its body (Host, Content-Length, Content-Type, Transfer-Encoding,"
            " Connection and the like, Proxy-*); pick a header of your own, e.g. X-Api-Key"
        )


def auth_headers(stored: str | None) -> dict[str, str]:
    """The headers that prove a callback is the job's, from what the store keeps."""
    if not stored:
        return {}
    auth = json.loads(stored)
    if auth["type"] == "bearer":
        return {"Authorization": f"Bearer {auth['token']}"}
    if auth["type"] == "basic":
        pair = f"{auth['username']}:{auth['password']}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {auth["header"]: auth["key"]}


class Callbacks(Loop):
    thread_name = "callbacks"
    stop_wait = 1.0  # a delivery in flight is retried after a restart

    def __init__(
        self,
        store: Store,
        job: Callable[[str], Job],
        retry_for: float,
        count: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.store = store
        self._job = job
        self.retry_for = retry_for
        self._count = count  # metrics: delivered, failed, abandoned

    def tick(self, now: float) -> float | None:
        for delivery in self.store.outbox.due(now):
            if self.stopping:
                return None
            self._send(delivery)
        upcoming = self.store.outbox.next_at()
        return None if upcoming is None else max(0.0, upcoming - self.clock())

    def _send(self, delivery: Delivery) -> None:
        job_id, url = delivery.job_id, delivery.url
        try:
            check_callback_url(url, ())  # a row the door would have refused: never sendable
        except BadRequest as exc:
            self.store.outbox.tried(delivery, DeliveryState.ABANDONED, self.clock(), str(exc))
            self._count("abandoned")
            self.set_aside(f"job {job_id}'s callback", f"given up: {exc}")
            return
        error = _post(url, *self._body(job_id))
        self._count("delivered" if error is None else "failed")
        now = self.clock()
        if error is None:
            self.store.outbox.tried(delivery, DeliveryState.DELIVERED, now, "")
            log.info("job %s: callback delivered to %s", job_id, url)
            return
        gap = min(FIRST_RETRY * 2**delivery.attempts, LONGEST_GAP)
        if now + gap - delivery.created_at > self.retry_for:
            self.store.outbox.tried(delivery, DeliveryState.ABANDONED, now, error)
            self._count("abandoned")
            log.warning("job %s: callback to %s abandoned: %s", job_id, url, error)
            return
        self.store.outbox.tried(delivery, DeliveryState.PENDING, now + gap, error)
        log.info("job %s: callback to %s failed (%s); next try in %gs", job_id, url, error, gap)

    def _body(self, job_id: str) -> tuple[bytes, dict[str, str]]:
        """The job object without Output, and the headers its callback's auth asks for."""
        try:
            job = self._job(job_id)
            body, headers = job.wire(), auth_headers(job.callback_auth)
        except Exception:  # removed by retention meanwhile: say at least which job ended
            body, headers = {"ID": job_id}, auth_headers(self.store.jobs.callback_auth(job_id))
        body.pop("Output", None)
        return json.dumps(body).encode(), headers


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead past --callback-allow: a 3xx counts as a failed delivery."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post(url: str, body: bytes, headers: dict[str, str]) -> str | None:
    """None on a 2xx answer, else what went wrong (never the auth headers' values)."""
    request = urllib.request.Request(
        url,
        body,
        {"Content-Type": "application/json", "User-Agent": "jobd", **headers},
        method="POST",
    )
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as answer:
            return None if 200 <= answer.status < 300 else f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
    except http.client.InvalidURL as exc:  # one bad row must not stop the rest
        return f"InvalidURL: {exc}"
    except Exception as exc:  # its text may quote a header, secret and all: the name only
        return f"{type(exc).__name__} (the request could not be sent)"
