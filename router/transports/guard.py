"""Edge guards for everything the hot path does not serve itself (the Quart routes).

- `closing_when_unread`: an answer that starts before the request's body was read whole
  carries `connection: close`. Quart may answer a refused request without reading its
  body; hypercorn would then wait for someone to read the rest before it parses the next
  request on that connection, and a keep-alive client would hang.
- `admin_refusal`: `/admin` paths are checked for the admin key before any routing, so
  no path trick (`..%2f`, `//`) gets a redirect or any other answer first. The key comes
  as `Authorization: Bearer`, or from the operator console as its session cookie plus
  that session's CSRF token, from a page of the router's own origin
  (router/console/session.py).
"""

from __future__ import annotations

import hmac
import time
from typing import Any, Awaitable, Callable

from router.console import session as console
from router.errors import (AdminDisabled, CsrfMismatch, Forbidden, RouterError,
                           Unauthenticated)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ADMIN_PREFIX = "/admin"


def closing_when_unread(scope: dict[str, Any], receive: Receive,
                        send: Send) -> tuple[Receive, Send]:
    headers = dict(scope.get("headers") or ())
    bodiless = b"transfer-encoding" not in headers and headers.get(b"content-length",
                                                                   b"0") == b"0"
    state = {"read": bodiless}  # a request without a body has nothing left to read

    async def tracked_receive() -> dict[str, Any]:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            state["read"] = True
        return message

    async def closing_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and not state["read"]:
            message = {**message, "headers": [*message.get("headers", ()),
                                              (b"connection", b"close")]}
        await send(message)

    return tracked_receive, closing_send


def admin_refusal(path: str, headers: dict[bytes, bytes],
                  admin_key: str | None) -> RouterError | None:
    """Why an `/admin` request is refused before routing, if it is."""
    if path != ADMIN_PREFIX and not path.startswith(ADMIN_PREFIX + "/"):
        return None

    def header(name: str) -> str | None:
        value = headers.get(name.encode())
        return None if value is None else value.decode("latin-1")

    return admin_credential_refusal(header, admin_key)


NEEDS_ADMIN = "admin routes need 'Authorization: Bearer <ADMIN_API_KEY>'"


def admin_credential_refusal(header: Callable[[str], str | None],
                             admin_key: str | None) -> RouterError | None:
    """Why a request's credential is not the admin's, if it is not: the admin key as a
    bearer token, or a console session with its CSRF token from the router's own origin.
    `header(name)` gives a request header (lower-case name) or None."""
    if not admin_key:
        return AdminDisabled("admin routes are disabled: set ADMIN_API_KEY")
    authorization = header("authorization")
    if authorization is not None:
        scheme_word, _, given = authorization.partition(" ")
        if scheme_word.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), admin_key.encode()):
            return None
        return Unauthenticated(NEEDS_ADMIN)
    cookies = header("cookie")
    if not console.cookie_values(cookies):
        return Unauthenticated(NEEDS_ADMIN)
    session = console.session_from(admin_key, cookies, time.time())
    if session is None:
        return Unauthenticated("the console session has expired or is not valid: "
                               "sign in again at /console")
    if console.foreign_origin(header("origin"), header("sec-fetch-site"), header("host")):
        return Forbidden("a console session is only valid on the router's own pages")
    if not console.csrf_matches(session, admin_key, header(console.CSRF_HEADER)):
        return CsrfMismatch(f"a console call needs its session's CSRF token in "
                            f"'{console.CSRF_HEADER}' (signed in again elsewhere? reload "
                            f"the page)")
    return None
