"""Between auth and reserve: what each target of the route gets, in its own format.

For each target the plan picks the format to speak (the client's own where the provider
speaks it, else a bridge's) and translates the body once per format, so a request the
upstream cannot express is refused with a 400 before any credit is held.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from router.catalog import ModelSpec, Target
from router.errors import BadRequest
from router.protocols.anthropic import keeps_system_entries
from router.protocols.api import ApiFormat, ClientRequest
from router.protocols.formats import BRIDGES, FORMATS, upstream_api
from router.protocols.translate import Bridge, UpstreamTarget
from router.providers.base import Provider
from router.tokens import TextSize, measure


@dataclass(frozen=True, slots=True)
class Leg:
    """One target of the route, ready to call."""

    target: Target
    provider: Provider
    native: ApiFormat  # the format the provider is spoken to in
    request: ClientRequest  # the request in that format
    bridge: Bridge | None  # None: the client's own format, passed through


def plan_route(providers: dict[str, Provider], fmt: ApiFormat, request: ClientRequest,
               model: ModelSpec, passthrough: tuple[tuple[str, str], ...] = ()
               ) -> tuple[list[Leg], TextSize]:
    """The legs to try, in order, and the size the hold must cover: the largest of the
    client's body and every translation of it (a translation may add text, such as the
    tool definitions Anthropic needs for a tool history).

    A target the request cannot be translated for is skipped if another target can
    serve it; if none can, the first target's reason is the 400."""
    legs: list[Leg] = []
    size = request.size
    refused: BadRequest | None = None
    native = (replace(request, body=request.as_sent)
              if request.as_sent is not None and keeps_system_entries(passthrough) else request)
    translated: dict[tuple[str, str], ClientRequest | BadRequest] = {}
    for target in model.route:
        provider = providers.get(target.provider)
        if provider is None:  # removed from the provider store since the model resolved
            continue
        api = upstream_api(fmt.name, provider.adapter.apis)
        if api is None:
            refused = refused or BadRequest(
                f"model {model.id!r} cannot be reached through the {fmt.name} API",
                param="model")
            continue
        if api == fmt.name:
            legs.append(Leg(target, provider, fmt, native, None))
            continue
        bridge = BRIDGES[(fmt.name, api)]
        key = (api, provider.spec.kind)
        if key not in translated:
            translated[key] = _translate(bridge, request, model, provider.spec.kind, api)
        leg_request = translated[key]
        if isinstance(leg_request, BadRequest):
            refused = refused or leg_request
            continue
        size = size.at_least(leg_request.size)
        legs.append(Leg(target, provider, FORMATS[api], leg_request, bridge))
    if not legs:
        raise refused or BadRequest(f"model {model.id!r} has no route", param="model")
    return legs, size


def _translate(bridge: Bridge, request: ClientRequest, model: ModelSpec, kind: str,
               api: str) -> ClientRequest | BadRequest:
    try:
        body = bridge.request(request.body, UpstreamTarget(model.id, kind, model.reasoning))
    except BadRequest as exc:
        return exc
    except (TypeError, AttributeError, ValueError, KeyError) as exc:
        return BadRequest(f"the request cannot be translated for model {model.id!r}: a field "
                          f"has an unexpected type ({type(exc).__name__}: {exc})"[:300])
    return replace(request, body=body, wants_usage=True, size=measure(body))
