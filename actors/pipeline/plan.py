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


@dataclass(frozen=True, slots=True)
class Leg:
    """One target of the route, ready to call."""

    target: Target
    provider: Provider
    native: ApiFormat  # the format the provider is spoken to in
    request: ClientRequest  # the request in that format
    bridge: Bridge | None  # None: the client's own format, passed through


def plan_route(providers: dict[str, Provider], fmt: ApiFormat, request: ClientRequest,
               model: ModelSpec, passthrough: tuple[tuple[str, str], ...] = ()) -> list[Leg]:
    legs: list[Leg] = []
    native = (replace(request, body=request.as_sent)
              if request.as_sent is not None and keeps_system_entries(passthrough) else request)
    translated: dict[str, ClientRequest] = {}
    for target in model.route:
        provider = providers[target.provider]
        api = upstream_api(fmt.name, provider.spec.apis)
        if api is None:
            raise BadRequest(f"model {model.id!r} cannot be reached through the {fmt.name} "
                             "API", param="model")
        if api == fmt.name:
            legs.append(Leg(target, provider, fmt, native, None))
            continue
        bridge = BRIDGES[(fmt.name, api)]
        if api not in translated:
            body = bridge.request(request.body, UpstreamTarget(
                model.id, provider.spec.kind, model.reasoning))
            if provider.spec.kind != "openai" and api == "openai.chat":
                body["max_tokens"] = 0  # compatible servers know max_tokens; the limit is set later
            translated[api] = replace(request, body=body, wants_usage=True)
        legs.append(Leg(target, provider, FORMATS[api], translated[api], bridge))
    return legs
