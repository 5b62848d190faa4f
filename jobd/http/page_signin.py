"""A browser's credentials on the status page: the sign-in form and its cookie (which only
reads), and the checks a page's form POST passes before it acts (same origin, the token).

When the daemon has a token, a form signs the browser in: the token is posted once, the
answer is a cookie and a 303 back to the page, and the token is never put in a link, an
address bar or the access log (which records query strings). The cookie never authorizes a
POST: a page on another site can make a browser POST here with its cookies. A form that acts
(cancel, retry) carries the token itself in a password field, and is taken only from this
jobd's own pages (its Origin, or its Referer, names this host).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import os
from collections.abc import Callable
from urllib.parse import urlsplit

from bottle import Bottle, HTTPResponse, request

from jobd import __version__
from jobd.config.units import shown
from jobd.errors import BadRequest, Forbidden, Unauthorized
from jobd.http.auth import OPERATOR, Caller, Credentials, set_caller
from jobd.http.page_document import HEADERS, document, root, wants_page
from jobd.http.responses import refuse_large_body

#: A page's form holds a field or two; anything larger is not one of them.
MAX_FORM = 8192


class SignIn:
    """The browser's credential when a token is set: a cookie holding an HMAC of the token
    (the operator's or a user's) under a key made at start-up. It is not the token (a copied
    cookie does not give the token away, nor the POST routes), and a restart ends every
    sign-in."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._key = os.urandom(32)
        self._cookies = tuple(
            (caller, self._cookie_of(token)) for caller, token in credentials.tokens()
        )

    def _cookie_of(self, token: bytes) -> bytes:
        return hmac.new(self._key, token, hashlib.sha256).hexdigest().encode()

    @staticmethod
    def cookie_name() -> str:
        """Cookies do not tell ports apart: one name per port keeps two daemons on one host
        from signing each other out."""
        return f"jobd-{request.environ.get('SERVER_PORT') or 'session'}"

    def cookie_caller(self) -> Caller | None:
        """Whose sign-in cookie the request carries, if it only reads: a page on another
        site can make a browser POST here with its cookies, so the cookie never cancels."""
        if not self.credentials.required or request.method not in ("GET", "HEAD"):
            return None
        given = (request.get_cookie(self.cookie_name()) or "").encode()
        found = None
        for caller, cookie in self._cookies:  # each compared, in constant time
            if hmac.compare_digest(given, cookie):
                found = caller
        return found

    def form_instead(self) -> HTTPResponse | None:
        """For a browser asking for a page without a credential: the sign-in form, as a
        401; None for any other request (it gets the usual JSON 401)."""
        if request.method not in ("GET", "HEAD"):
            return None
        route = request.route
        if route.config.get("page") or (request.path == "/" and wants_page()):
            return sign_in_page()
        return None

    def submit(self) -> HTTPResponse:
        """POST /: the form's token. Right: the cookie and 303 to the page; else the form."""
        if not self.credentials.required:
            return _see_other()  # nothing to sign in to
        refuse_large_body(MAX_FORM)
        if "token" not in request.forms:  # not the form, which always sends the field
            raise BadRequest("the sign-in form needs a 'token' field, e.g. -d token=...")
        given = request.forms.getunicode("token")  # None: not UTF-8, so not the token
        if given == "":
            return sign_in_page("Enter the token to see the jobs.")
        if given is None or self.credentials.match(given.encode()) is None:
            return sign_in_page("That token is wrong. Check it and try again.")
        answer = _see_other()
        cookie = self._cookie_of(given.encode()).decode()
        answer.set_header(
            "Set-Cookie", f"{self.cookie_name()}={cookie}; Path=/; HttpOnly; SameSite=Strict"
        )
        return answer

    def form_caller(self) -> Caller:
        """Who sent a page's form that acts: it must come from this jobd's own page, and carry
        the token when jobd has one (the cookie is not enough). The caller is kept for the
        route, as the bearer check keeps it."""
        same_origin()
        refuse_large_body(MAX_FORM)
        caller = OPERATOR
        if self.credentials.required:
            given = request.forms.getunicode("token")  # None: absent, or not UTF-8
            if not given:
                raise Unauthorized("enter the token in the form's token field: nothing was done")
            found = self.credentials.match(given.encode())
            if found is None:
                raise Unauthorized("that token is wrong: nothing was done")
            caller = found
        set_caller(caller)
        return caller


def same_origin() -> None:
    """A form's POST is taken only from this jobd's own pages: its Origin (or, without one,
    its Referer) must name the host the request was sent to (Host, or X-Forwarded-Host
    behind a proxy; a page on another site can set neither)."""
    sent_from = request.get_header("Origin") or request.get_header("Referer")
    if not sent_from or sent_from == "null":
        raise Forbidden(
            "this form is taken only from jobd's own page, and the request said where it came"
            " from neither in Origin nor in Referer: nothing was done"
        )
    hosts = {
        value.split(",")[0].strip().lower()
        for value in (request.get_header("Host"), request.get_header("X-Forwarded-Host"))
        if value
    }
    try:
        came_from = urlsplit(sent_from).netloc.lower()
    except ValueError:
        came_from = ""
    if not came_from or came_from not in hosts:
        raise Forbidden(
            f"this form came from another site ({shown(sent_from)}), not from this jobd's own"
            " page: nothing was done"
        )


def signin_routes(app: Bottle, signin: SignIn, skip: list[Callable[..., object]]) -> None:
    """POST / (the sign-in form) needs no token: it is how a browser gives it. GET / is the
    ping's route (orchestrator.py), which serves the list page to browsers."""
    app.post("/", skip=skip)(signin.submit)


def sign_in_page(problem: str | None = None) -> HTTPResponse:
    """The form that posts the token to the root; a 401, as any request without the token."""
    said = f"<p class='error' role='alert'>{html.escape(problem)}</p>" if problem else ""
    body = (
        "<main class='narrow'><h1>jobd</h1>"
        "<p>This jobd has a token. Enter it to see its jobs: your browser then keeps a cookie"
        " for this daemon until you close the browser or jobd restarts.</p>"
        f"{said}<form class='signin' method='post' action='{root() or './'}'>"
        "<label for='token'>Token</label>"
        "<input id='token' name='token' type='password' autocomplete='current-password'"
        " required autofocus>"
        "<button type='submit'>Show the jobs</button></form>"
        f"<p class='muted small'>jobd {html.escape(__version__)}</p></main>"
    )
    return HTTPResponse(document("jobd: sign in", body), 401, dict(HEADERS))


def _see_other() -> HTTPResponse:
    # Relative, like every link of the page: it works behind a proxy that adds a path prefix.
    return HTTPResponse("", 303, {"Location": "./", "Cache-Control": "no-store"})
