"""`/console`: the operator console's page, its files, and its sign-in (docs/console.md).

The page and its script and stylesheet are files of the `router.console` package, served
as they are (no CDN, no build step), under a Content-Security-Policy that allows nothing
but this origin. Everything the page shows or does goes through the admin API (`/admin`,
router/transports/admin.py): here are only the sign-in routes.

- `POST /console/session` `{"admin_key": ...}`: the admin key, checked, becomes a session
  cookie (http-only, `SameSite=Strict`, `CONSOLE_SESSION_S` long; over https, or behind
  a proxy that says so in `X-Forwarded-Proto`, `Secure` and named `__Host-aura_console`);
  the answer carries the session's CSRF token.
- `GET /console/session`: the CSRF token and expiry of the current session, or 401.
- `DELETE /console/session`: signs out: the browser drops its cookie (a copy of it made
  elsewhere stays good until it expires, or until `ADMIN_API_KEY` changes).
Each refuses a request that says it comes from another origin.
"""

from __future__ import annotations

import hmac
from importlib.resources import files

import trio
from quart import Blueprint, Response, request

from router.console import session as console
from router.errors import AdminDisabled, BadRequest, Forbidden, NotFound, Unauthenticated
from router.gateway import Gateway
from router.redact import quote_input
from router.transports.common import json_body, json_response

# Everything from this origin and nothing else; no inline script or style, no framing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
                    "referrer-policy": "same-origin", "cache-control": "no-store"}
# The files served, and their types: nothing else of the package is reachable.
ASSETS = {"console.js": "text/javascript; charset=utf-8",
          "console.css": "text/css; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
MAX_KEY_CHARS = 512


class ConsoleFiles:
    """The page's files, read from the package once each (a few tens of KB)."""

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    async def read(self, name: str) -> bytes:
        if name not in self._cache:
            path = files("router.console").joinpath("static", name)
            self._cache[name] = await trio.to_thread.run_sync(path.read_bytes)
        return self._cache[name]


def console_routes(gw: Gateway) -> Blueprint:
    bp = Blueprint("console", __name__, url_prefix="/console")
    assets = ConsoleFiles()

    def admin_key() -> str:
        key = gw.config.admin_api_key
        if not key:
            raise AdminDisabled("the console is disabled: set ADMIN_API_KEY")
        return key

    def same_origin_only() -> None:
        if console.foreign_origin(request.headers.get("origin"),
                                  request.headers.get("sec-fetch-site"),
                                  request.headers.get("host")):
            raise Forbidden("the console's sign-in only answers the router's own pages")

    def over_https() -> bool:
        """The browser's side is https: directly, or behind a proxy that ends TLS (its
        word only ever makes the cookie stricter)."""
        forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
        return (request.scheme == "https" or forwarded.lower() == "https"
                or request.headers.get("origin", "").startswith("https://"))

    def session_answer(session: console.ConsoleSession, key: str) -> Response:
        return json_response({"csrf": session.csrf(key), "expires_at": session.expires_at,
                              "expires_in_s": max(int(session.expires_at - gw.clock()), 0),
                              "lifetime_s": int(gw.config.console_session_s)})

    @bp.get("/")
    async def page():  # type: ignore[no-untyped-def]
        return Response(await assets.read("index.html"), 200,
                        {"content-type": "text/html; charset=utf-8", **SECURITY_HEADERS})

    @bp.get("/static/<name>")
    async def asset(name: str):  # type: ignore[no-untyped-def]
        content_type = ASSETS.get(name)
        if content_type is None:
            raise NotFound(f"no console file {quote_input(name)}")
        return Response(await assets.read(name), 200,
                        {"content-type": content_type, **SECURITY_HEADERS})

    @bp.post("/session")
    async def sign_in():  # type: ignore[no-untyped-def]
        same_origin_only()
        key = admin_key()
        body = await json_body()
        given = body.get("admin_key")
        if not isinstance(given, str) or not given.strip():
            raise BadRequest("'admin_key' is required: the router's ADMIN_API_KEY",
                             param="admin_key")
        if len(given) > MAX_KEY_CHARS or not hmac.compare_digest(given.strip().encode(),
                                                                 key.encode()):
            raise Unauthenticated("that is not the admin key (ADMIN_API_KEY)")
        cookie, session = console.issue(key, gw.clock(), gw.config.console_session_s)
        response = session_answer(session, key)
        secure = over_https()
        response.set_cookie(console.cookie_name(secure), cookie,
                            max_age=int(gw.config.console_session_s), path="/",
                            httponly=True, samesite="Strict", secure=secure)
        return response

    @bp.get("/session")
    async def current():  # type: ignore[no-untyped-def]
        same_origin_only()
        key = admin_key()
        session = console.session_from(key, request.headers.get("cookie"), gw.clock())
        if session is None:
            raise Unauthenticated("not signed in, or the session has expired: sign in "
                                  "with the admin key")
        return session_answer(session, key)

    @bp.delete("/session")
    async def sign_out():  # type: ignore[no-untyped-def]
        same_origin_only()
        response = json_response({"signed_out": True})
        secure = over_https()
        response.delete_cookie(console.cookie_name(secure), path="/", httponly=True,
                               samesite="Strict", secure=secure)
        return response

    return bp
