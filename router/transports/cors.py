"""CORS for browser apps (`CORS_ORIGINS`, docs/configuration.md): which origins may call
the router from a web page, and the headers that say so.

Unset (or `*`): any origin, without credentials (`Access-Control-Allow-Origin: *`), for
development. A comma-separated list: only those exact origins, echoed back with
`Access-Control-Allow-Credentials: true` and `Vary: Origin`; any other origin gets no
CORS header, so the browser keeps the answer from the page. A preflight (`OPTIONS` with
`Access-Control-Request-Method`) is answered here, before any credential is asked for.
Requests without an `Origin` header (SDKs, servers) are untouched. Pure: the transport
asks, and adds what it is told.
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]

ALLOWED_METHODS = b"GET, POST, DELETE, OPTIONS"
# What a page may read from an answer besides the simple headers.
EXPOSED = b"x-request-id, x-aura-model, x-aura-max-tokens, retry-after, x-should-retry"
PREFLIGHT_MAX_AGE = b"600"


@dataclass(frozen=True)
class CorsPolicy:
    origins: frozenset[bytes] | None  # None: any origin, no credentials

    @classmethod
    def from_setting(cls, value: str | None) -> CorsPolicy:
        listed = [o.strip().rstrip("/") for o in (value or "").split(",") if o.strip()]
        if not listed or "*" in listed:
            return cls(None)
        return cls(frozenset(o.encode() for o in listed))

    def _allow(self, origin: bytes) -> Headers | None:
        if self.origins is None:
            return [(b"access-control-allow-origin", b"*")]
        if origin in self.origins:
            return [(b"access-control-allow-origin", origin),
                    (b"access-control-allow-credentials", b"true"), (b"vary", b"origin")]
        return None

    def response_headers(self, origin: bytes) -> Headers:
        """What an answer to a request from `origin` adds (nothing for a refused one)."""
        allowed = self._allow(origin)
        if allowed is None:
            return [(b"vary", b"origin")]
        return allowed + [(b"access-control-expose-headers", EXPOSED)]

    def preflight_headers(self, origin: bytes, requested_headers: bytes | None) -> Headers:
        """The answer to a preflight from `origin` (no CORS header for a refused one)."""
        allowed = self._allow(origin)
        if allowed is None:
            return [(b"vary", b"origin")]
        out = allowed + [(b"access-control-allow-methods", ALLOWED_METHODS),
                         (b"access-control-max-age", PREFLIGHT_MAX_AGE)]
        if requested_headers:
            out.append((b"access-control-allow-headers", requested_headers))
        return out
