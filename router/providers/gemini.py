"""Google AI (Gemini API): `generateContent`, `x-goog-api-key`.

The model id goes in the path (`/v1beta/models/{model}:generateContent`, or
`:streamGenerateContent?alt=sse` for a stream of SSE events without `[DONE]`); the body
has no model. The output limit goes in `generationConfig.maxOutputTokens`. Clients
reach it through the bridges of `router.protocols.chat_over_gemini`,
`messages_over_gemini` and `responses_over_gemini`; the client's query string and
headers are never forwarded.

Google says two things in its error bodies that other providers say in the status line
and headers, and the provider reads them there: the wait after a 429 is the body's
`RetryInfo.retryDelay` (no `Retry-After` header), so it becomes the answer's
`retry_after` (the key rests that long; the client is told); and a key that is not valid
is a 400 `API_KEY_INVALID`, which counts as a 401 (the key is set aside, and the client
is not told its request was wrong).
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

import orjson

from router.protocols.gemini import LIMIT_FIELD, NAME
from router.providers.base import HttpCall, Provider, UpstreamRequest
from router.providers.http import HttpAdapter, get_call
from router.providers.spec import ProviderSpec
from router.providers.whole_answer import RewritingPool, RewritingProvider, WholeAnswer

MAX_ERROR_BODY = 64 * 1024
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def _google_error(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) else {}


def retry_delay(error: dict[str, Any]) -> str | None:
    """`RetryInfo.retryDelay` ("37s", "0.5s") as whole seconds for `retry-after`."""
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("@type") == _RETRY_INFO:
            delay = str(detail.get("retryDelay") or "")
            try:
                seconds = float(delay[:-1]) if delay.endswith("s") else None
            except ValueError:
                seconds = None
            if seconds is not None and math.isfinite(seconds) and seconds >= 0:
                return str(math.ceil(seconds))
    return None


def body_retry_delay(body: bytes) -> str | None:
    """The `retry-after` a Google error body gives (its `RetryInfo`), if any."""
    return retry_delay(_google_error(body))


def invalid_key(error: dict[str, Any]) -> bool:
    return any(isinstance(d, dict) and d.get("reason") == "API_KEY_INVALID"
               for d in error.get("details") or ()) or str(
        error.get("message", "")).startswith("API key not valid")


class ReadError(WholeAnswer):
    """An error answer read whole, with what its body says in the status and headers."""

    def __init__(self, response: Any, body: bytes) -> None:
        super().__init__(response, body)
        error = _google_error(body)
        if self.status == 429 and self.retry_after is None:
            self.retry_after = retry_delay(error)
        if self.status == 400 and invalid_key(error):
            self.status = 401


class ErrorReadingPool(RewritingPool):
    """The provider's connection pool, reading 400 and 429 bodies (small) as they come."""

    async def rewrite(self, call: HttpCall, response: Any) -> Any:
        if response.status in (400, 429):
            return ReadError(response, await response.read(MAX_ERROR_BODY))
        return response


class GeminiProvider(RewritingProvider):
    pool_class = ErrorReadingPool


class GeminiAdapter(HttpAdapter):
    kind = "gemini"
    apis = (NAME,)
    default_base_url = "https://generativelanguage.googleapis.com"

    def limit_field(self, api: str) -> str:
        return LIMIT_FIELD

    def build_request(self, request: UpstreamRequest, credential: str | None) -> HttpCall:
        model = request.model
        model = quote(model[len("models/"):] if model.startswith("models/") else model,
                      safe="-._~")
        path = (f"/v1beta/models/{model}:streamGenerateContent?alt=sse" if request.stream
                else f"/v1beta/models/{model}:generateContent")
        headers = [(b"content-type", b"application/json"), (b"user-agent", b"aura-router")]
        if request.stream:
            headers.append((b"accept", b"text/event-stream"))
        if credential:
            headers.append((b"x-goog-api-key", credential.encode()))
        return HttpCall(path, tuple(headers), request.body)

    def probe_call(self, credential: str | None) -> HttpCall | None:
        """`GET /v1beta/models?pageSize=1` with `x-goog-api-key` (free; a key that is not
        valid is a 400 `API_KEY_INVALID`, read as a 401 like any call's)."""
        headers = [(b"x-goog-api-key", credential.encode())] if credential else []
        return get_call("/v1beta/models?pageSize=1", headers)

    def connect(self, spec: ProviderSpec) -> Provider:
        return GeminiProvider(spec, self)


ADAPTER = GeminiAdapter()
