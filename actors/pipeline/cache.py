"""The response cache's stage, between plan and reserve (docs/configuration.md#response-cache).

`lookup` finds a cacheable request's entry. A hit never reaches a provider: it is held
and settled at its own price (`CACHE_HIT_PRICE` times the list price of the usage the
answer first cost, rounded up to the micro-USD), recorded as a usage row whose provider
is `cache`, and answered with the bytes the first client was sent. A miss is served as
usual and its whole answer kept (`remember`) for the next one.
"""

from __future__ import annotations

import logging
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING

import trio

from actors.pipeline.context import Outcome
from actors.pipeline.idempotency import RecordingSink
from actors.pipeline.reserve import refuse
from router.auth.principal import Principal
from router.catalog import ModelSpec
from router.errors import InsufficientFunds
from router.gateway import ClientSink, ModelCall, Settled
from router.ledger.base import UsageRecord
from router.protocols.api import ClientRequest, Meter
from router.response_cache import CachedAnswer, cache_key, wants_cache

if TYPE_CHECKING:
    from actors.runtime import Runtime

log = logging.getLogger("aura.cache")


async def lookup(rt: "Runtime", call: ModelCall, principal: Principal,
                 request: ClientRequest) -> tuple[str | None, CachedAnswer | None]:
    """(the request's key if it may be cached, its entry if there is one)."""
    store = rt.response_cache
    if store is None or not wants_cache(request.body, call.cache_hint):
        return None, None
    scope = principal.account if rt.config.cache_scope == "account" else None
    key = cache_key(call.api, request.body, request.stream, scope)
    try:
        return key, await store.get(key)
    except Exception as exc:  # noqa: BLE001 - a cache that fails never fails the request
        log.warning("response cache unavailable (%s): served as a miss", type(exc).__name__)
        return key, None


def hit_cost(model: ModelSpec, answer: CachedAnswer, factor: Decimal) -> int:
    listed = model.prices.cost_micros(answer.usage)
    return int((Decimal(listed) * factor).to_integral_value(rounding=ROUND_CEILING))


async def serve_hit(rt: "Runtime", call: ModelCall, principal: Principal, model: ModelSpec,
                    answer: CachedAnswer, sink: ClientSink, outcome: Outcome) -> None:
    cost = hit_cost(model, answer, rt.config.cache_hit_price)
    now = rt.clock()
    with trio.CancelScope(shield=True):  # held means settled, whatever the client does
        try:
            await rt.ledger.hold(principal.account, call.request_id, cost,
                                 now + rt.config.hold_ttl_s, now, key_id=principal.key_id,
                                 key_cap=principal.spend_cap_micros if principal.key_id
                                 else None, owner=rt.instance.id, model=model.id)
        except InsufficientFunds as exc:
            raise refuse(cost, exc.available) from None
        record = UsageRecord(call.request_id, principal.account, model.id, "cache",
                             answer.usage, cost, now)
        settlement = await rt.ledger.settle(call.request_id, cost, record, now)
    outcome.provider, outcome.status = "cache", 200
    outcome.settled = Settled(answer.usage, cost, settlement)
    await sink.start(200, ((b"content-type", answer.content_type.encode("latin-1")),
                           (b"x-request-id", call.request_id.encode()),
                           (b"x-aura-model", model.id.encode()),
                           (b"x-aura-cache", b"hit")))
    await sink.body(answer.body)
    sink.settled(outcome.settled)


async def remember(rt: "Runtime", key: str, recorded: RecordingSink, meter: Meter,
                   outcome: Outcome, model: ModelSpec) -> None:
    """Keep a whole, successful, tool-free answer (never an error or a cut stream)."""
    store, settled = rt.response_cache, outcome.settled
    body = recorded.replayable()
    if store is None or body is None or settled is None or not meter.whole \
            or meter.upstream_error is not None:
        return
    try:
        await store.put(key, CachedAnswer(recorded.content_type, body, settled.usage,
                                          model.id), rt.config.cache_ttl_s)
    except Exception as exc:  # noqa: BLE001 - a cache that fails never fails the request
        log.warning("response cache unavailable (%s): answer not kept", type(exc).__name__)
