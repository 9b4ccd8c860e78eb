"""POST /v1/messages/count_tokens: the provider's own count for Anthropic-kind models, a
documented estimate for the others.

Counting is free (as Anthropic's endpoint is): nothing is held or billed. For a model
with an Anthropic-kind target, the body goes to that provider's count_tokens endpoint
(failing over like a model call before giving up). For any other model the answer is
the router's own estimate, marked `x-aura-estimate: true`: a quarter of the UTF-8 bytes
of the text (system, messages, tools), plus 4 per message and the model's per-image
maximum per image. It tracks BPE counts within tens of percent for prose and code; it
is not what the provider will bill.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from actors.pipeline.stream import provider_message
from router.auth.principal import Principal
from router.catalog import Catalog
from router.errors import BadRequest, Forbidden, NotFound, ProviderFailed, RouterError, from_provider_status
from router.protocols.anthropic import keeps_system_entries
from router.protocols.formats import FORMATS
from router.providers.base import Provider, UpstreamRequest, UpstreamUnavailable
from router.providers.http import HttpProvider

MAX_COUNT_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class TokenCount:
    body: bytes
    model: str
    provider: str | None  # None: the router's estimate


async def count_tokens(catalog: Catalog, providers: dict[str, Provider], who: Principal,
                       body: dict, query: str,
                       passthrough: tuple[tuple[str, str], ...]) -> TokenCount:
    request = FORMATS["anthropic.messages"].parse(body)
    model = catalog.resolve(request.model)
    if model is None:
        raise NotFound(f"model {request.model!r} does not exist or has no price", param="model")
    if not who.may_use(model.id):
        raise Forbidden(f"this key may not use model {model.id!r}")
    error: RouterError | None = None
    for target in model.route:
        provider = providers[target.provider]
        if provider.spec.kind != "anthropic" or not isinstance(provider, HttpProvider):
            continue
        sent = request.as_sent if request.as_sent is not None and keeps_system_entries(
            passthrough) else request.body
        try:
            encoded = orjson.dumps({**sent, "model": target.upstream_model})
        except TypeError as exc:
            raise BadRequest(f"the request body cannot be encoded: {exc}") from None
        upstream = UpstreamRequest("anthropic.count_tokens", encoded, False, query, passthrough)
        try:
            async with provider.open(upstream) as response:
                answer = await response.read(MAX_COUNT_BODY)
                if response.status == 200:
                    return TokenCount(answer, model.id, target.provider)
                error = from_provider_status(response.status, provider_message(response.status, answer))
        except UpstreamUnavailable as exc:
            error = ProviderFailed(str(exc))
        if error.status < 500 and error.status != 429:
            raise error
    if error is not None:
        raise error
    estimate = request.size.input_estimate(model.per_image_tokens)
    return TokenCount(orjson.dumps({"input_tokens": estimate}), model.id, None)

