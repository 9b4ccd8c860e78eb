"""POST /v1/messages/count_tokens: the provider's own count where a target's kind counts
tokens (Anthropic), a documented estimate for the others.

Counting is free (as Anthropic's endpoint is): nothing is held or billed. For a model
with a target whose kind counts tokens, the body goes to that provider's endpoint
(failing over like a model call before giving up). For any other model the answer is
the router's own estimate, marked `x-aura-estimate: true`: a quarter of the UTF-8 bytes
of the text (system, messages, tools), plus 4 per message and the model's per-image
maximum per image. It tracks BPE counts within tens of percent for prose and code; it
is not what the provider will bill.
"""

from __future__ import annotations

import orjson

from actors.pipeline.stream import provider_message
from router.auth.principal import Principal
from router.catalog import Catalog
from router.errors import (BadRequest, Forbidden, NotFound, RouterError, UpstreamError,
                           from_provider_status)
from router.gateway import TokenCount
from router.protocols.anthropic import keeps_system_entries
from router.protocols.api import json_object
from router.protocols.formats import FORMATS
from router.providers.base import Provider, UpstreamRequest
from router.redact import Redactor, quote_input

MAX_COUNT_BODY = 64 * 1024


async def count_tokens(catalog: Catalog, providers: dict[str, Provider], who: Principal,
                       body: dict, query: str, passthrough: tuple[tuple[str, str], ...],
                       redactor: Redactor) -> TokenCount:
    request = FORMATS["anthropic.messages"].parse(body)
    model = catalog.resolve(request.model)
    if model is None:
        raise NotFound(f"model {quote_input(request.model)} does not exist or has no price",
                       param="model")
    if not who.may_use(model.id):
        raise Forbidden(f"this key may not use model {quote_input(model.id)}")
    error: RouterError | None = None
    for target in model.route:
        provider = providers[target.provider]
        if not provider.adapter.counts_tokens:
            continue
        sent = request.as_sent if request.as_sent is not None and keeps_system_entries(
            passthrough) else request.body
        try:
            encoded = orjson.dumps({**sent, "model": target.upstream_model})
        except TypeError as exc:
            raise BadRequest(f"the request body cannot be encoded: {exc}") from None
        upstream = UpstreamRequest("anthropic.count_tokens", target.upstream_model, encoded,
                                   False, query, passthrough)
        try:
            async with provider.open(upstream) as response:
                answer = await response.read(MAX_COUNT_BODY)
                if response.status == 200:
                    counted = json_object(answer)
                    if counted is not None and isinstance(counted.get("input_tokens"), int):
                        return TokenCount(orjson.dumps(counted), model.id, target.provider)
                    error = from_provider_status(502, "the provider's count could not be read")
                else:
                    error = from_provider_status(response.status, provider_message(
                        response.status, answer, redactor))
        except UpstreamError as exc:
            error = exc.as_refusal()
        if error.status < 500 and error.status != 429:
            raise error
    if error is not None:
        raise error
    estimate = request.size.input_estimate(model.per_image_tokens)
    return TokenCount(orjson.dumps({"input_tokens": estimate}), model.id, None)

