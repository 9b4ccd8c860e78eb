"""`FakeJwksServer`: an Auth0-like JWKS endpoint on loopback, and the keys behind it.

Serves ``GET /.well-known/jwks.json`` with ``Cache-Control: public, max-age=N`` from a
real hypercorn (trio) server in a background thread, like `FakeProviderServer`. The RSA
keys are generated here (cryptography) and tokens are signed with pyjwt, so a test holds
the private half of what the router verifies. Switches, from sync test code::

    with FakeJwksServer() as jwks:
        token = jwks.token("user|1", audience=AUDIENCE, issuer=ISSUER)
        new_kid = jwks.rotate()          # publish a fresh key (the old one is dropped)
        jwks.mode = "down"               # 503; also "garbage", "no_usable_key", "truncated"
        jwks.fetches                     # how many times the JWKS was asked for
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
import trio
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import RSAAlgorithm

from ._asgi import Receive, Scope, Send, lifespan
from ._thread import ThreadedServer
from .server import make_config, serve_app

JWKS_PATH = "/.well-known/jwks.json"
MODES = ("ok", "garbage", "no_usable_key", "down", "truncated")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        """The public half as Auth0 publishes it."""
        public = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], body: dict[str, Any], secret: bytes | None) -> str:
    """A token pyjwt would not make: signed HMAC-SHA256 under `secret` (say, an RSA public
    key's PEM), or unsigned when `secret` is None."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def new_key(kid: str | None = None, bits: int = 2048) -> SigningKey:
    return SigningKey(kid or "kid-" + secrets.token_hex(6),
                      rsa.generate_private_key(public_exponent=65537, key_size=bits))


def sign(key: SigningKey, subject: str | None, *, audience: str | None = None,
         issuer: str | None = None, ttl_s: int = 300, kid: str | None = None,
         **claims: Any) -> str:
    """An RS256 token from `key` (its header names `kid`, `key.kid` by default)."""
    now = int(time.time())
    body: dict[str, Any] = {"iat": now, "exp": now + ttl_s, **claims}
    if subject is not None:
        body["sub"] = subject
    if audience is not None:
        body["aud"] = audience
    if issuer is not None:
        body["iss"] = issuer
    return jwt.encode(body, key.private, algorithm="RS256", headers={"kid": kid or key.kid})


class FakeJwksServer(ThreadedServer):
    """An Auth0-like JWKS endpoint; `keys` are published, `mode` says how it answers."""

    thread_name = "fake-jwks"

    def __init__(self, *, max_age_s: int = 3600, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.keys: list[SigningKey] = [new_key()]
        self.mode = "ok"
        self.max_age_s = max_age_s
        self.fetches = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{self.base_url}{JWKS_PATH}"

    @property
    def current(self) -> SigningKey:
        return self.keys[-1]

    def token(self, subject: str | None, **kwargs: Any) -> str:
        return sign(self.current, subject, **kwargs)

    def rotate(self, *, keep_old: bool = False) -> SigningKey:
        """Publish a fresh key (Auth0's "rotate signing key"); the old one goes unless kept."""
        key = new_key()
        with self._lock:
            self.keys = [*self.keys, key] if keep_old else [key]
        return key

    def document(self) -> bytes:
        with self._lock:
            keys = list(self.keys)
        return orjson.dumps({"keys": [k.jwk() for k in keys]})

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        if scope["type"] != "http":
            return
        if scope["path"] != JWKS_PATH:
            await self._answer(send, 404, b'{"error":"not found"}')
            return
        with self._lock:
            self.fetches += 1
        mode = self.mode
        if mode == "down":
            await self._answer(send, 503, b"upstream connect error")
        elif mode == "garbage":
            await self._answer(send, 200, b"<html>Tenant is being migrated</html>")
        elif mode == "no_usable_key":
            # Keys of other kinds only: an EC key and an encryption-only RSA key.
            rsa_enc = {**self.current.jwk(), "use": "enc", "kid": "enc-1"}
            ec = {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", "alg": "ES256",
                  "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                  "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
            await self._answer(send, 200, orjson.dumps({"keys": [ec, rsa_enc]}))
        elif mode == "truncated":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", b"4096")]})
            await send({"type": "http.response.body", "body": b'{"keys": [', "more_body": True})
            raise ConnectionAbortedError("the JWKS server drops the connection")
        else:
            await self._answer(send, 200, self.document(),
                               [(b"cache-control",
                                 f"public, max-age={self.max_age_s}, "
                                 f"stale-while-revalidate=15, stale-if-error=86400".encode())])

    @staticmethod
    async def _answer(send: Send, status: int, body: bytes,
                      extra: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = [(b"content-type", b"application/json; charset=utf-8"),
                   (b"content-length", str(len(body)).encode()), *(extra or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _serve(self, stop: trio.Event, *,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await serve_app(self._app, make_config(self.host, 0, "CRITICAL"), stop,
                        task_status=task_status)
