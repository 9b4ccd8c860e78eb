"""Azure OpenAI: OpenAI's models on an Azure resource, addressed by deployment.

Two wire formats, chosen per provider by `api_version`:

- the deployments API (a dated `api_version`, default 2024-10-21):
  `POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`;
- the v1 API (`api_version = "v1"`, or a `base_url` ending in `/openai/v1`):
  `POST {endpoint}/openai/v1/chat/completions` (and `/responses`), no `api-version`, the
  deployment name in the body's `model`.

The key goes in the `api-key` header (Azure also takes an Entra ID bearer token, which
this router does not mint). The upstream model id of a route target is mapped to a
deployment by the provider's `deployments` table; an id it does not list is used as the
deployment name (Azure's usual convention). The output limit goes in
`max_completion_tokens`, as for OpenAI (the o-series refuse `max_tokens`).

Azure's stream starts with a chunk of `prompt_filter_results` with empty `choices` and
empty `id`/`model`: the decoder drops it, so clients and the meter see OpenAI's stream.
Content-filter verdicts inside choices (`content_filter_results`) and
`finish_reason: "content_filter"` pass through (a bridge maps the latter to `refusal`).
"""

from __future__ import annotations

import copy
from urllib.parse import quote

import orjson

from router.protocols.sse import SseEvent, SseParser
from router.providers.base import HttpCall, Provider, UpstreamRequest
from router.providers.http import HttpAdapter, HttpProvider, get_call
from router.providers.spec import ProviderSpec

DEFAULT_API_VERSION = "2024-10-21"
V1 = "v1"
_PATHS = {"openai.chat": "/chat/completions", "openai.responses": "/responses"}
_PROMPT_FILTER = b'"prompt_filter_results"'


class AzureStreamDecoder:
    """SSE, without Azure's prompt-annotation chunk (empty choices, no usage)."""

    def __init__(self) -> None:
        self.parser = SseParser()

    def feed(self, chunk: bytes) -> list[SseEvent]:
        events = self.parser.feed(chunk)
        if not any(_PROMPT_FILTER in e.data for e in events):
            return events
        return [e for e in events if not _annotation_only(e)]


def _annotation_only(event: SseEvent) -> bool:
    if _PROMPT_FILTER not in event.data:
        return False
    try:
        chunk = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(chunk, dict) and not chunk.get("choices") and not chunk.get("usage")


class AzureAdapter(HttpAdapter):
    kind = "azure"
    apis: tuple[str, ...] = ("openai.chat",)  # the v1 API speaks Responses too
    provider_fields = frozenset({"api_version", "deployments", "headers"})
    default_base_url = ""  # the resource endpoint: https://{resource}.openai.azure.com

    def __init__(self) -> None:
        self.api_version = DEFAULT_API_VERSION
        self.deployments: dict[str, str] = {}
        self.headers: tuple[tuple[bytes, bytes], ...] = ()
        self.prefix = "/openai/v1"  # of the v1 API's paths, below the base URL

    def bound(self, spec: ProviderSpec) -> "AzureAdapter":
        """This kind for one configured provider: its version, deployments, headers."""
        bound = copy.copy(self)
        v1 = spec.base_url.rstrip("/").endswith("/openai/v1")
        bound.api_version = V1 if v1 else (spec.api_version or DEFAULT_API_VERSION)
        bound.prefix = "" if v1 else "/openai/v1"
        bound.deployments = dict(spec.deployments)
        bound.headers = tuple((k.lower().encode(), v.encode("latin-1"))
                              for k, v in spec.headers if v)
        bound.apis = ("openai.chat", "openai.responses") if bound.api_version == V1 \
            else ("openai.chat",)
        return bound

    def connect(self, spec: ProviderSpec) -> Provider:
        return HttpProvider(spec, self.bound(spec))

    def limit_field(self, api: str) -> str:
        return "max_completion_tokens" if api == "openai.chat" else super().limit_field(api)

    def deployment(self, model: str) -> str:
        return self.deployments.get(model, model)

    def mode_upstream(self, spec: ProviderSpec, model_id: str, model_kind: str) -> str | None:
        """The id this provider serves a catalog model under in a provider mode, or None:
        the models its `deployments` list, or, without a table, every OpenAI model (its
        deployment named like the model)."""
        if spec.deployments:
            return model_id if model_id in dict(spec.deployments) else None
        return model_id if model_kind == "openai" else None

    def build_request(self, request: UpstreamRequest, credential: str | None) -> HttpCall:
        headers = [(b"content-type", b"application/json"), (b"user-agent", b"aura-router")]
        if request.stream:
            headers.append((b"accept", b"text/event-stream"))
        headers += self.headers
        if credential:
            headers.append((b"api-key", credential.encode()))
        deployment = self.deployment(request.model)
        body = request.body
        if self.api_version == V1:
            if deployment != request.model:  # the v1 API reads the deployment from the body
                parsed = orjson.loads(body)
                parsed["model"] = deployment
                body = orjson.dumps(parsed)
            return HttpCall(self.prefix + _PATHS[request.api], tuple(headers), body)
        path = (f"/openai/deployments/{quote(deployment, safe='')}{_PATHS[request.api]}"
                f"?api-version={quote(self.api_version, safe='')}")
        return HttpCall(path, tuple(headers), body)

    def probe_call(self, credential: str | None) -> HttpCall | None:
        """The resource's model list: `GET /openai/models?api-version=...` (the v1 API:
        `GET /openai/v1/models`), with the `api-key` header."""
        headers = list(self.headers)
        if credential:
            headers.append((b"api-key", credential.encode()))
        if self.api_version == V1:
            return get_call(self.prefix + "/models", headers)
        return get_call(f"/openai/models?api-version={quote(self.api_version, safe='')}",
                        headers)

    def decoder(self) -> AzureStreamDecoder:
        return AzureStreamDecoder()


ADAPTER = AzureAdapter()
