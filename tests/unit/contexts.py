"""A `RequestContext` for tests that drive one pipeline stage by hand."""

from __future__ import annotations

from typing import Any

from actors.pipeline.context import RequestContext
from actors.pipeline.reserve import Reservation
from router.auth.principal import Principal
from router.catalog import ModelSpec
from router.gateway import ModelCall
from router.protocols.api import ClientRequest
from router.protocols.formats import FORMATS
from router.tokens import measure


def request_context(model: ModelSpec, reservation: Reservation, *,
                    api: str = "anthropic.messages", request: ClientRequest | None = None,
                    legs: tuple[Any, ...] = (), estimated_input: int = 10,
                    first_event_grace_s: float = 20.0) -> RequestContext:
    if request is None:
        request = ClientRequest({}, model.id, True, None, measure({}))
    call = ModelCall(api, b"{}", None, reservation.request_id)
    return RequestContext(call, FORMATS[api], Principal(reservation.account), model, request,
                          legs, reservation, estimated_input, (), first_event_grace_s)
