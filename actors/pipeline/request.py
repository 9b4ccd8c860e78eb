"""One model call, end to end: auth -> plan -> reserve -> stream -> settle.

Runs in the task of whoever owns the call: the request's own task, in the per-request
nursery the transport owns (a client gone cancels it), or a stream hub task for
resumable streams (it outlives its client). Each stage needs the previous one's answer,
so they run in order; settlement runs in `finally`, shielded, whatever happened, and
every call ends with its `Outcome` told to the observers.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

import orjson
import trio

from actors.pipeline.cache import lookup, remember, serve_hit
from actors.pipeline.context import Outcome, RequestContext
from actors.pipeline.idempotency import RecordingSink, replay
from actors.pipeline.plan import plan_route
from actors.pipeline.reserve import reserve
from actors.pipeline.settle import Billing
from actors.pipeline.stream import run_stream
from router.auth.principal import Principal
from router.errors import BadRequest, Conflict, Forbidden, NotFound, RateLimited, RouterError
from router.gateway import ClientSink, ModelCall
from router.ledger.base import MAX_IDEMPOTENCY_KEY, Claim
from router.outbox.wire import transcript_body
from router.protocols.api import ClientRequest, Meter
from router.protocols.formats import FORMATS
from router.ratelimit import Limit, retry_after_header
from router.redact import quote_input
from router.tiers import Verdict, classify, tier_of

if TYPE_CHECKING:
    from actors.runtime import Runtime

log = logging.getLogger("aura.request")


def parse_body(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


async def run_model_call(rt: "Runtime", call: ModelCall, sink: ClientSink) -> None:
    fmt = FORMATS[call.api]
    outcome = Outcome(call.request_id, call.api)
    claimed: tuple[str, str] | None = None  # (account, idempotency key) this call holds
    try:
        principal = await rt.auth.authenticate(call.credential, call.account_header)
        outcome.account = principal.account
        request = fmt.parse(parse_body(call.body))
        model = rt.config.catalog.resolve(_tiered(rt, request, outcome))
        if model is None:
            raise NotFound(f"model {quote_input(request.model)} does not exist or has no "
                           "price", param="model")
        outcome.model = model.id
        if not principal.may_use(model.id):
            raise Forbidden(f"this key may not use model {quote_input(model.id)}")
        legs, size = plan_route(rt.providers, fmt, request, model, call.passthrough_headers)
        await limit_rate(rt, principal)
        if size is not request.size:
            request = replace(request, size=size)
        if call.idempotency_key is not None:
            claimed, early = await _claim(rt, call, principal)
            if early is not None:
                await replay(sink, early)
                return
            sink = RecordingSink(sink)
        cached: tuple[str, RecordingSink] | None = None  # a miss to remember
        if claimed is None:  # (an Idempotency-Key replays its own first answer)
            key, hit = await lookup(rt, call, principal, request)
            if hit is not None:
                await serve_hit(rt, call, principal, model, hit, sink, outcome)
                rt.observe(outcome)
                return
            if key is not None:
                sink = RecordingSink(sink)
                cached = (key, sink)
        try:
            reservation = await reserve(rt.ledger, principal, request, model, call.request_id,
                                        now=rt.clock(), policy=rt.hold_policy,
                                        ledger_s=outcome.ledger_s)
        except BaseException:  # refused or cancelled: the key is free for a retry
            if claimed is not None:
                with trio.CancelScope(shield=True):
                    await rt.idempotency.abandon(*claimed)
            raise
    except Exception as caught:  # noqa: BLE001 - every failure gets an answer in its shape
        if isinstance(caught, RouterError):
            exc = caught
        else:
            log.exception("request %s failed before reaching a provider", call.request_id)
            exc = RouterError("the router failed to handle this request")
        if outcome.model is not None:
            exc.extra_headers.setdefault("x-aura-model", outcome.model)
        outcome.status = exc.status
        await sink.error(exc, fmt.shape)
        rt.observe(outcome)
        return

    base_headers = ((b"x-request-id", call.request_id.encode()),
                    (b"x-aura-model", model.id.encode()))
    if outcome.tier is not None:
        base_headers += ((b"x-aura-tier", outcome.tier.split(" ", 1)[0].encode()),)
    if cached is not None:
        base_headers += ((b"x-aura-cache", b"miss"),)
    if reservation.lowered:  # the limit the router enforces, where the client did not set it
        base_headers += ((b"x-aura-max-tokens", str(reservation.max_output).encode()),)
    ctx = RequestContext(call, fmt, principal, model, request, tuple(legs), reservation,
                         request.size.input_estimate(model.per_image_tokens), base_headers,
                         rt.config.first_event_grace_s)
    meter = Meter()
    transcript = None
    if rt.config.sends_messages:  # STORE_MESSAGES: the storage sink gets prompt and answer
        meter.answer = []
        transcript = partial(_transcript, call, principal.account, model.id, meter)
    billing = Billing(rt.ledger, ctx, meter, outcome, rt.clock, transcript)
    rt.live_requests[call.request_id] = billing  # checkpointed by the lease keeper
    try:
        failed = await run_stream(ctx, meter, outcome, sink, billing, rt.redactor)
        if failed is not None:
            outcome.status = failed.status
            failed.extra_headers.setdefault("x-aura-model", model.id)
            await sink.error(failed, fmt.shape)
    finally:
        try:
            outcome.settled = await billing.settle()
            rt.outbox_doorbell.ring()
            sink.settled(outcome.settled)
            if cached is not None:
                await remember(rt, cached[0], cached[1], meter, outcome, model)
            if claimed is not None:
                await _close_claim(rt, claimed, sink, meter)
        finally:
            if not billing.unsettled:  # else the lease keeper retries it
                rt.live_requests.pop(call.request_id, None)
        rt.observe(outcome)


def _tiered(rt: "Runtime", request: ClientRequest, outcome: Outcome) -> str:
    """The model to serve: the one asked for, or for `auto*` its tier's (router/tiers.py);
    the verdict goes to the log line and `x-aura-tier`."""
    tier = tier_of(request.model)
    if tier is None:
        return request.model
    tiers = rt.config.tiers
    verdict = Verdict(tier, ("asked",)) if tier else \
        classify(request.body, request.size, tiers.rules)
    outcome.tier = verdict.describe()
    chosen = tiers.models.get(verdict.tier)
    if chosen is None:
        raise NotFound(f"no model serves the {verdict.tier} tier", param="model")
    return chosen


def _transcript(call: ModelCall, account: str, model: str, meter: Meter) -> bytes:
    return transcript_body(call.request_id, account, model, call.api, call.body,
                           "".join(meter.answer or ()))


async def _claim(rt: "Runtime", call: ModelCall, principal: Principal
                 ) -> tuple[tuple[str, str] | None, Claim | None]:
    """Claim the call's Idempotency-Key: (the claim to release later, a stored answer to
    replay instead of calling anyone)."""
    key = call.idempotency_key
    assert key is not None
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise BadRequest(f"'Idempotency-Key' must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
                         param="Idempotency-Key")
    claim = await rt.idempotency.begin(principal.account, key, call.body, call.request_id,
                                       rt.clock())
    if claim.kind == "replay":
        return None, claim
    if claim.kind == "in_flight":
        raise Conflict("a request with this Idempotency-Key is still in progress "
                       f"({claim.request_id})")
    if claim.kind == "mismatch":
        raise Conflict("this Idempotency-Key was used with a different request body")
    return (principal.account, key), None


async def limit_rate(rt: "Runtime", principal: Principal) -> None:
    """RATE_LIMIT_RPM per account (0: none) and the key's own rpm, before any hold: one
    check for both, counted in both or neither (shared by every instance when
    `REDIS_URL` is set; then a Redis that cannot answer refuses with 503)."""
    limits = []
    if rt.config.rate_limit_rpm > 0:
        limits.append(Limit(f"account:{principal.account}", rt.config.rate_limit_rpm,
                            "account"))
    if principal.key_id is not None and principal.rpm:
        limits.append(Limit(f"key:{principal.key_id}", principal.rpm, "key"))
    if not limits:
        return
    refused = await rt.rate_limiter.admit(limits)
    if refused is not None:
        limit, retry_after = refused.limit, retry_after_header(refused.wait_s)
        raise RateLimited(f"rate limited: this {limit.whose} may make {limit.per_minute} "
                          f"requests per minute; retry in {retry_after} s",
                          headers={"retry-after": retry_after})


async def _close_claim(rt: "Runtime", claimed: tuple[str, str], sink: ClientSink,
                       meter: Meter) -> None:
    """Keep a complete successful answer for replays; free the key otherwise."""
    assert isinstance(sink, RecordingSink)
    stored = sink.replayable() if meter.whole else None
    with trio.CancelScope(shield=True):
        if stored is None:
            await rt.idempotency.abandon(*claimed)
        else:
            await rt.idempotency.finish(*claimed, sink.status, sink.content_type, stored)
