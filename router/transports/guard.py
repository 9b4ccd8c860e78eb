"""Edge guards for everything the hot path does not serve itself (the Quart routes).

- `closing_when_unread`: an answer that starts before the request's body was read whole
  carries `connection: close`. Quart may answer a refused request without reading its
  body; hypercorn would then wait for someone to read the rest before it parses the next
  request on that connection, and a keep-alive client would hang.
- `admin_refusal`: `/admin` paths are checked for the admin key before any routing, so
  no path trick (`..%2f`, `//`) gets a redirect or any other answer first.
"""

from __future__ import annotations

import hmac
from typing import Any, Awaitable, Callable

from router.errors import AdminDisabled, RouterError, Unauthenticated

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
    if not admin_key:
        return AdminDisabled("admin routes are disabled: set ADMIN_API_KEY")
    scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                              admin_key.encode()):
        return Unauthenticated("admin routes need 'Authorization: Bearer <ADMIN_API_KEY>'")
    return None
