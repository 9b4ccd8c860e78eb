"""RS256 JWTs verified against a JWKS (Auth0's, or `JWKS_URL`): the pure part.

Where the keys come from and what a token must say (`jwks_settings`), what of a JWKS
answer is kept (`parse_jwks`: RSA signing keys for RS256 only, built by pyjwt's `PyJWK`),
when to fetch it again (`refresh_delay`, from `Cache-Control`), and the check itself
(`verify_rs256`). Fetching and refreshing is the refresher actor's
(`actors.services.jwks_refresher`); the rules are in docs/configuration.md#jwts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from router.auth.jwt import accepted_header, decode_subject
from router.config import Config
from router.errors import ConfigError, JwtRejected
from router.redact import display_url, quote_input

__all__ = ["JwksError", "JwksKeys", "JwksSettings", "MAX_JWKS_BYTES", "UnknownSigningKey",
           "jwks_settings", "parse_jwks", "refresh_delay", "verify_rs256"]

MAX_JWKS_BYTES = 512 * 1024  # Auth0's holds two or three keys: a few KiB
MIN_RSA_BITS = 2048
# However long a JWKS says it may be cached, a removed (revoked) key goes within a day.
MAX_REFRESH_S = 24 * 3600.0
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|[,\s])(?:no-cache|no-store)(?:$|[,\s=])", re.IGNORECASE)
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?(?::\d{1,5})?$")


class JwksError(ValueError):
    """A JWKS answer that gives no usable key; the message says why."""


class UnknownSigningKey(JwtRejected):
    """The token names a `kid` the JWKS held does not have: worth one refresh."""


@dataclass(frozen=True)
class JwksSettings:
    url: str  # where the JWKS is fetched (may carry a query: show it with `display_url`)
    audience: str | None  # AUTH0_AUDIENCE: checked when set
    issuer: str | None  # https://{AUTH0_DOMAIN}/, else JWT_ISSUER, else not checked

    @property
    def shown_url(self) -> str:
        return display_url(self.url)


def _auth0_host(domain: str) -> str:
    host = domain.strip()
    for scheme in ("https://", "http://"):
        if host.lower().startswith(scheme):
            host = host[len(scheme):]
    host = host.rstrip("/")
    if not _HOST.match(host):
        raise ConfigError(f"AUTH0_DOMAIN must be a host name such as tenant.eu.auth0.com, "
                          f"got {quote_input(domain, 80)}")
    return host


def jwks_settings(config: Config) -> JwksSettings | None:
    """RS256 settings when `AUTH0_DOMAIN` or `JWKS_URL` is set, else None."""
    host = _auth0_host(config.auth0_domain) if config.auth0_domain else None
    url = config.jwks_url or (f"https://{host}/.well-known/jwks.json" if host else None)
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"JWKS_URL must be an http(s) URL, got {display_url(url)}")
    issuer = f"https://{host}/" if host else config.jwt_issuer
    return JwksSettings(url=url, audience=config.auth0_audience or None, issuer=issuer)


@dataclass(frozen=True)
class JwksKeys:
    """The RS256 verification keys of one JWKS answer, by `kid`."""

    keys: Mapping[str, RSAPublicKey]
    skipped: tuple[str, ...] = field(default=())  # why each other entry was left out

    def get(self, kid: str) -> RSAPublicKey | None:
        return self.keys.get(kid)

    def describe(self) -> str:
        kids = ", ".join(quote_input(kid, 40) for kid in sorted(self.keys))
        text = f"{len(self.keys)} key{'s' if len(self.keys) != 1 else ''} (kid {kids})"
        return text + (f"; skipped {'; '.join(self.skipped)}" if self.skipped else "")


def _usable_key(entry: Mapping[str, Any]) -> RSAPublicKey | str:
    """The key of one JWK entry, or why it is not used."""
    if entry.get("kty") != "RSA":
        return f"kty {quote_input(entry.get('kty'), 20)} is not RSA"
    if entry.get("use", "sig") != "sig":
        return f"use {quote_input(entry.get('use'), 20)} is not 'sig'"
    if entry.get("alg", "RS256") != "RS256":
        return f"alg {quote_input(entry.get('alg'), 20)} is not RS256"
    if "d" in entry:
        return "it holds private key material"
    try:
        key = jwt.PyJWK(dict(entry), algorithm="RS256").key
    except jwt.PyJWTError:
        return "not a valid RSA public key"
    if not isinstance(key, RSAPublicKey):
        return "not an RSA public key"
    if key.key_size < MIN_RSA_BITS:
        return f"{key.key_size}-bit RSA is shorter than {MIN_RSA_BITS} bits"
    return key


def parse_jwks(body: bytes) -> JwksKeys:
    """The usable keys of a JWKS document, or `JwksError` saying why there are none."""
    if len(body) > MAX_JWKS_BYTES:
        raise JwksError(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise JwksError("the JWKS is not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksError("the JWKS has no 'keys' list")
    keys: dict[str, RSAPublicKey] = {}
    skipped: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            skipped.append(f"key #{index}: not an object")
            continue
        kid = entry.get("kid")
        name = f"kid {quote_input(kid, 40)}" if isinstance(kid, str) else f"key #{index}"
        if not isinstance(kid, str) or not kid:
            skipped.append(f"{name}: no 'kid'")
            continue
        if kid in keys:
            skipped.append(f"{name}: a second key with this kid")
            continue
        key = _usable_key(entry)
        if isinstance(key, str):
            skipped.append(f"{name}: {key}")
        else:
            keys[kid] = key
    if not keys:
        why = f" ({'; '.join(skipped[:5])})" if skipped else " (its 'keys' list is empty)"
        raise JwksError("the JWKS has no RSA signing key for RS256" + why)
    return JwksKeys(keys, tuple(skipped))


def refresh_delay(cache_control: str | None, *, default_s: float, min_s: float) -> float:
    """Seconds until the JWKS is fetched again: `Cache-Control: max-age` bounded below by
    `min_s` (and above by a day); `default_s` without one."""
    if cache_control:
        if _NO_CACHE.search(cache_control):
            return min_s
        match = _MAX_AGE.search(cache_control)
        if match:
            return max(min_s, min(float(match.group(1)), MAX_REFRESH_S))
    return max(min_s, default_s)


def verify_rs256(token: str, keys: JwksKeys | None, *, audience: str | None = None,
                 issuer: str | None = None) -> str:
    """The subject of an RS256 token signed by one of `keys`, or `JwtRejected`;
    `UnknownSigningKey` when its `kid` is not among them."""
    header = accepted_header(token, ("RS256",))
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise JwtRejected("token header lacks 'kid'")
    key = keys.get(kid) if keys is not None else None
    if key is None:
        raise UnknownSigningKey("unknown signing key")
    return decode_subject(token, key, "RS256", issuer=issuer, audience=audience)
