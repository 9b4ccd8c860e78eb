"""The console's sign-in: a signed, expiring session cookie and the CSRF token bound to it.

Signing in with the admin key gives the browser an http-only, same-site cookie that
stands for the key for `CONSOLE_SESSION_S` seconds. Nothing is stored on the server: the
cookie is an itsdangerous token (a random session id and its expiry) signed with a key
derived from `ADMIN_API_KEY`, so every worker and every instance sharing that key checks
it the same way, and changing the admin key ends every session at once.

The cookie alone never authorises anything: each admin call made with it must also carry
the session's CSRF token in `X-Aura-CSRF` (an HMAC of the session id, which the page
reads from `GET /console/session`, a same-origin answer), and a request that says it
comes from another origin is refused. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

COOKIE = "aura_console"
# Over https the cookie takes the `__Host-` prefix: the browser then keeps it only if it
# is Secure, for this host alone and path /, so a sibling subdomain cannot plant one.
SECURE_COOKIE = "__Host-" + COOKIE
CSRF_HEADER = "x-aura-csrf"
_SALT = "aura-console-session"


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    session_id: str
    expires_at: int  # unix seconds

    def csrf(self, admin_key: str) -> str:
        """The token the page sends with each admin call of this session."""
        return hmac.new(_csrf_key(admin_key), self.session_id.encode(),
                        hashlib.sha256).hexdigest()


def _csrf_key(admin_key: str) -> bytes:
    return hmac.new(admin_key.encode(), b"aura-console-csrf", hashlib.sha256).digest()


def _serializer(admin_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(admin_key, salt=_SALT)


def issue(admin_key: str, now: float, lifetime_s: float) -> tuple[str, ConsoleSession]:
    """A new session: the cookie's value and what it stands for."""
    session = ConsoleSession(secrets.token_urlsafe(18), int(now + lifetime_s))
    token = _serializer(admin_key).dumps({"sid": session.session_id,
                                          "exp": session.expires_at})
    return token, session


def verify(admin_key: str, cookie: str | None, now: float) -> ConsoleSession | None:
    """The session a cookie stands for, or None: missing, forged, signed with another
    admin key, or expired."""
    if not cookie or len(cookie) > 512:
        return None
    try:
        payload = _serializer(admin_key).loads(cookie)
    except BadSignature:
        return None
    if not isinstance(payload, dict):
        return None
    sid, expires_at = payload.get("sid"), payload.get("exp")
    if not isinstance(sid, str) or isinstance(expires_at, bool) or not isinstance(
            expires_at, int) or now >= expires_at:
        return None
    return ConsoleSession(sid, expires_at)


def csrf_matches(session: ConsoleSession, admin_key: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(),
                                                     session.csrf(admin_key).encode())


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else COOKIE


def cookie_values(header: str | None) -> list[str]:
    """Every console cookie in a `Cookie:` header (a page of another subdomain may have
    planted one more under the same name)."""
    found = []
    for part in (header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name in (COOKIE, SECURE_COOKIE) and value.strip('"'):
            found.append(value.strip('"'))
    return found


def session_from(admin_key: str, cookie_header: str | None,
                 now: float) -> ConsoleSession | None:
    """The valid session among the request's console cookies, if one is."""
    for value in cookie_values(cookie_header)[:8]:
        session = verify(admin_key, value, now)
        if session is not None:
            return session
    return None


def foreign_origin(origin: str | None, fetch_site: str | None, host: str | None) -> bool:
    """Whether the browser says the request comes from a page of another origin.

    `Sec-Fetch-Site`, which browsers set and pages cannot, decides when it is there: only
    `same-origin` passes. Without it (an older browser, or no browser at all), an `Origin`
    must name this host, over http or https: behind a proxy that ends TLS the router sees
    http while the browser says https."""
    if fetch_site is not None:
        return fetch_site != "same-origin"
    if origin is None:
        return False
    return host is None or origin not in (f"http://{host}", f"https://{host}")
