"""Vertex AI: Claude models (Anthropic's Messages API) and Gemini models (Google's
`generateContent`) at Google's endpoint.

`POST {base}/publishers/anthropic/models/{model}:rawPredict` (`:streamRawPredict` when
streamed), where `{base}` is `https://{location}-aiplatform.googleapis.com/v1/projects/
{project}/locations/{location}` (`aiplatform.googleapis.com` for `global`): the provider's
base URL holds the project and location, so one entry is one deployment. The body is the
Messages body without `model` (it is in the path, as Vertex spells it:
`claude-sonnet-4-5@20250929`) and with `anthropic_version: vertex-2023-10-16`; the answer,
streamed or not, is Anthropic's own. The credential is a Google OAuth2 access token,
sent as `Authorization: Bearer`: the `vertex-token` actor gets it from the service
account with google-auth and replaces it before it expires (never on a request's path).

Gemini models are kind `vertex_gemini`: `{base}/publishers/google/models/{model}:
generateContent` (`:streamGenerateContent?alt=sse`), the Gemini API's own body and
answers (router.providers.gemini), with the same token.

Errors are Google's (`{"error": {"code", "message", "status"}}`). A 429 for a Claude
model (`RESOURCE_EXHAUSTED`, a quota) comes without `Retry-After` and, as Vertex sends
it for Anthropic's models, without a `RetryInfo` either: the provider reads it whole and
takes the body's `RetryInfo` if one is there, else the key's default rest, as the
answer's retry-after (the key rests that long; the client is told).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from router.providers.base import HttpCall, Provider, UpstreamRequest
from router.providers.gemini import GeminiAdapter, body_retry_delay
from router.providers.http import HttpAdapter
from router.providers.spec import ProviderSpec
from router.providers.whole_answer import RewritingPool, RewritingProvider, undated_rate_limit

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"


def vertex_base_url(project: str, location: str, host: str | None = None) -> str:
    """The base URL of one project and location (`host` overrides Google's, for tests
    and private endpoints)."""
    if host is None:
        host = "https://aiplatform.googleapis.com" if location == "global" \
            else f"https://{location}-aiplatform.googleapis.com"
    return f"{host.rstrip('/')}/v1/projects/{quote(project, safe='')}/locations/" \
           f"{quote(location, safe='')}"


def vertex_body(body: bytes, stream: bool) -> bytes:
    request = orjson.loads(body)
    request.pop("model", None)
    request["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
    if stream:
        request["stream"] = True
    return orjson.dumps(request)


class VertexPool(RewritingPool):
    """The provider's connection pool, giving a 429 the wait its body says, or the key's
    rest (Vertex gives Claude's quota errors no delay)."""

    async def rewrite(self, call: HttpCall, response: Any) -> Any:
        return await undated_rate_limit(response, body_retry_delay)


class VertexProvider(RewritingProvider):
    pool_class = VertexPool


PROBE_WHY = "connect, with an access token minted from the service account"


class VertexAdapter(HttpAdapter):
    kind = "vertex"
    apis = ("anthropic.messages",)
    needs_base_url = True
    connect_only_why = PROBE_WHY  # the token's mint (google-auth) is the credential check

    def build_request(self, request: UpstreamRequest, credential: str | None) -> HttpCall:
        verb = "streamRawPredict" if request.stream else "rawPredict"
        headers = [(b"content-type", b"application/json"), (b"user-agent", b"aura-router")]
        if request.stream:
            headers.append((b"accept", b"text/event-stream"))
        if credential:
            headers.append((b"authorization", b"Bearer " + credential.encode()))
        return HttpCall(f"/publishers/anthropic/models/{quote(request.model, safe='@')}:{verb}",
                        tuple(headers), vertex_body(request.body, request.stream))

    def connect(self, spec: ProviderSpec) -> Provider:
        return VertexProvider(spec, self)


class VertexGeminiAdapter(GeminiAdapter):
    kind = "vertex_gemini"
    needs_base_url = True
    default_base_url = ""
    serves_kinds = ("gemini",)  # Gemini models route here when no Google AI key is set
    connect_only_why = PROBE_WHY

    def probe_call(self, credential: str | None) -> HttpCall | None:
        return None

    def mode_upstream(self, spec: ProviderSpec, model: str, kind: str) -> str | None:
        return model if kind == "gemini" else None  # Vertex knows Gemini by its own ids

    def build_request(self, request: UpstreamRequest, credential: str | None) -> HttpCall:
        call = super().build_request(request, None)  # the body and Gemini's headers
        path = call.path.replace("/v1beta/models/", "/publishers/google/models/", 1)
        headers = call.headers
        if credential:
            headers += ((b"authorization", b"Bearer " + credential.encode()),)
        return HttpCall(path, headers, call.body)


ADAPTER = VertexAdapter()
GEMINI = VertexGeminiAdapter()
