"""`FakeVertex`: Google's OAuth2 token endpoint and Vertex AI's Claude endpoint, on loopback.

- ``POST /token``: what google-auth's service-account flow calls (the JSON key's
  ``token_uri``): a form with ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``
  and ``assertion``, a JWT signed RS256 with the service account's key, whose ``iss`` is
  its email, ``aud`` Google's token endpoint and ``scope`` the scopes asked for. The signature is
  checked against the account's public key; the answer is ``{"access_token",
  "expires_in", "token_type": "Bearer"}``. A bad assertion is Google's 400
  ``invalid_grant``.
- ``POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict`` and
  ``:streamRawPredict``: a Messages body without ``model`` and with ``anthropic_version:
  vertex-2023-10-16`` (else 400), authorised by ``Bearer <a token this fake issued>`` that
  has not expired (else 401 ``UNAUTHENTICATED``); answered by the fake Anthropic app (the
  same content, usage and switches) for model ``{m}``.
- ``POST .../publishers/google/models/{m}:generateContent`` (``:streamGenerateContent``,
  ``?alt=sse``): the Gemini API's body, the same token rule; answered by the fake Gemini
  app.

Faults: ``refuse_tokens = True`` answers every call 401 ``UNAUTHENTICATED``, as for a
token this fake did not issue (or one expired), without touching the tokens it issued;
``refused`` lists the bearers answered 401.
For Claude, ``state.fail_status`` is answered as Vertex does (after the token check):
Google's error body ``{"error": {"code", "message", "status"}}`` and no ``Retry-After``
(429 ``RESOURCE_EXHAUSTED``, a quota, with no ``RetryInfo``; 500 ``INTERNAL``, 503
``UNAVAILABLE``); the state's stream switches (``cut_after_chunks``,
``error_before_content``, ``tool_call`` ...) are the fake Anthropic app's.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs

import jwt
import orjson
import trio

from ._asgi import Receive, Scope, Send, lifespan, read_body, send_json
from ._thread import ThreadedServer
from .anthropic_app import make_anthropic_app
from .gemini_app import make_gemini_app
from .server import make_config, serve_app
from .state import FakeState

VERSION = "vertex-2023-10-16"
# google-auth signs its assertion for Google's token endpoint, whatever `token_uri` says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
_PREDICT = "/publishers/anthropic/models/"
_GENERATE = "/publishers/google/models/"


_STATUSES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
             429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
             504: "DEADLINE_EXCEEDED"}
_QUOTA = ("Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_"
          "model with base model: anthropic-{model}. Please submit a quota increase request. "
          "https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai.")


def _google_error(code: int, status: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "status": status}})


class FakeVertex(ThreadedServer):
    thread_name = "fake-vertex"

    def __init__(self, public_key_pem: bytes, email: str, *, token_ttl_s: int = 3600,
                 state: FakeState | None = None) -> None:
        super().__init__()
        self.public_key = public_key_pem
        self.email = email
        self.token_ttl_s = token_ttl_s
        self.state = state or FakeState()
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # issued token -> expiry
        self.issued: list[str] = []
        self.calls: list[tuple[str, str, dict[str, Any]]] = []  # (path, bearer, body)
        self.refuse_tokens = False  # every bearer is one this fake did not issue
        self.refused: list[str] = []  # the bearers answered 401
        self._anthropic = make_anthropic_app(self.state)
        self._gemini = make_gemini_app(self.state)

    @property
    def token_uri(self) -> str:
        return self.base_url + "/token"

    async def _serve(self, stop: trio.Event, *,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await serve_app(self._app, make_config(self.host, self.port), stop,
                        task_status=task_status)

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        path = scope["path"]
        if path == "/token" and scope["method"] == "POST":
            await self._issue_token(receive, send)
        elif _PREDICT in path and (path.endswith(":rawPredict")
                                   or path.endswith(":streamRawPredict")):
            await self._predict(scope, receive, send)
        elif _GENERATE in path:
            await self._generate(scope, receive, send)
        else:
            await send_json(send, 404, _google_error(404, "NOT_FOUND", f"no {path}"), [])

    async def _issue_token(self, receive: Receive, send: Send) -> None:
        form = parse_qs((await read_body(receive)).decode())
        try:
            assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
            claims = jwt.decode(form["assertion"][0], self.public_key, algorithms=["RS256"],
                                audience=GOOGLE_TOKEN_AUDIENCE, issuer=self.email)
            assert "cloud-platform" in claims["scope"]
        except (KeyError, AssertionError, jwt.PyJWTError):
            await send_json(send, 400, orjson.dumps({"error": "invalid_grant",
                                                     "error_description": "bad assertion"}),
                            [])
            return
        token = "ya29.fake-" + secrets.token_urlsafe(16)
        with self._lock:
            self._tokens[token] = time.time() + self.token_ttl_s
            self.issued.append(token)
        await send_json(send, 200, orjson.dumps({"access_token": token, "token_type": "Bearer",
                                                 "expires_in": self.token_ttl_s}), [])

    async def _authorised(self, scope: Scope, send: Send) -> str | None:
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            valid = self._tokens.get(bearer, 0) > time.time() and not self.refuse_tokens
        if not valid:
            with self._lock:
                self.refused.append(bearer)
            await send_json(send, 401, _google_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), [])
            return None
        return bearer

    async def _generate(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await read_body(receive)
        bearer = await self._authorised(scope, send)
        if bearer is None:
            return
        with self._lock:
            self.calls.append((scope["path"], bearer, orjson.loads(raw)))
        path = "/v1beta/models/" + scope["path"].rsplit(_GENERATE, 1)[1]
        inner = {**scope, "path": path, "raw_path": path.encode(),
                 "headers": [(b"x-goog-api-key", b"vertex"),
                             (b"content-type", b"application/json")]}
        await self._gemini(inner, _replaying(raw), send)

    async def _predict(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await read_body(receive)
        bearer = await self._authorised(scope, send)
        if bearer is None:
            return
        body = orjson.loads(raw)
        model, verb = scope["path"].rsplit(_PREDICT, 1)[1].split(":")
        with self._lock:
            self.calls.append((scope["path"], bearer, body))
        status = self.state.fail_status
        if status is not None:
            message = _QUOTA.format(model=model.split("@")[0]) if status == 429 \
                else "The service is currently unavailable." if status == 503 \
                else "Internal error encountered." if status >= 500 \
                else f"Request failed with status {status}."
            await send_json(send, status, _google_error(
                status, _STATUSES.get(status, "UNKNOWN"), message), [])
            return
        if body.get("anthropic_version") != VERSION or "model" in body \
                or (verb == "streamRawPredict") != bool(body.get("stream")):
            await send_json(send, 400, _google_error(
                400, "INVALID_ARGUMENT", "anthropic_version must be vertex-2023-10-16, the "
                "model is in the path, streamRawPredict streams"), [])
            return
        forwarded = orjson.dumps({**{k: v for k, v in body.items()
                                     if k != "anthropic_version"}, "model": model})
        inner = {**scope, "path": "/v1/messages", "raw_path": b"/v1/messages",
                 "headers": [(b"x-api-key", b"vertex"), (b"anthropic-version", b"2023-06-01"),
                             (b"content-type", b"application/json")]}
        await self._anthropic(inner, _replaying(forwarded), send)


def _replaying(body: bytes) -> Receive:
    """An ASGI `receive` that hands over `body` once, then waits (no disconnect)."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await trio.sleep_forever()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
