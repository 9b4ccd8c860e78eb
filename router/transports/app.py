"""The Quart app: every route but the hot model calls (health, readiness, models,
usage, admin). Errors come out in the caller's API shape, never as HTML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from quart import request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors.pipeline.auth import credential_from
from actors.pipeline.count_tokens import count_tokens
from actors.pipeline.request import limit_rate
from router.catalog import ModelSpec
from router.errors import NotFound, RouterError
from router.transports.admin import admin_routes
from router.transports.common import caller_shape, error_response, json_body, json_response

if TYPE_CHECKING:
    from actors.root import Runtime


def _dollars(micros: int) -> float:
    """Display-only dollars for the seed clients' `*_dollars` fields (SPEC §4.6)."""
    return micros / 1_000_000


def build_quart_app(rt: "Runtime") -> QuartTrio:
    app = QuartTrio("aura-router")
    # Quart's 60 s defaults silently cut long streams; the router owns its deadlines.
    app.config.update(RESPONSE_TIMEOUT=None, BODY_TIMEOUT=None,
                      MAX_CONTENT_LENGTH=rt.config.max_body_bytes)

    @app.errorhandler(RouterError)
    async def on_router_error(error: RouterError):  # type: ignore[no-untyped-def]
        return error_response(error, caller_shape())

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        wrapped = NotFound(f"no route for {request.method} {request.path}") \
            if error.code in (404, 405) else RouterError(error.description or "error")
        wrapped.status = error.code or 500
        return error_response(wrapped, caller_shape())

    async def principal():  # type: ignore[no-untyped-def]
        credential = credential_from(request.headers.get("authorization"),
                                     request.headers.get("x-api-key"))
        return await rt.auth.authenticate(credential, request.headers.get("x-aura-account"))

    @app.get("/health")
    async def health():  # type: ignore[no-untyped-def]
        return "ok"

    @app.get("/ready")
    async def ready():  # type: ignore[no-untyped-def]
        reasons = []
        try:
            await rt.ledger.ping()
        except Exception as exc:  # the point is to report it, whatever it is
            reasons.append(f"ledger unusable: {type(exc).__name__}")
        stats = await rt.provider_stats()
        if not any(s["usable"] for s in stats):
            reasons.append("no provider is usable: " + "; ".join(
                f"{s['name']}: " + ("not running" if not s["running"] else
                                    "circuit open" if s["breaker"]["state"] == "open"
                                    else "every credential refused") for s in stats))
        if reasons:
            return json_response({"status": "unavailable", "reasons": reasons}, 503)
        return json_response({"status": "ready", "providers": len(stats)})

    @app.get("/v1/models")
    async def models():  # type: ignore[no-untyped-def]
        who = await principal()
        listed = [m for m in rt.config.catalog.routable() if who.may_use(m.id)]
        if "anthropic-version" in request.headers:
            data = [anthropic_model(m) for m in listed]
            return json_response({"data": data, "has_more": False,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})
        return json_response({"object": "list", "data": [openai_model(m) for m in listed]})

    @app.get("/v1/models/<path:model_id>")
    async def model(model_id: str):  # type: ignore[no-untyped-def]
        who = await principal()
        found = rt.config.catalog.resolve(model_id)
        if found is None or not found.route or not who.may_use(found.id):
            raise NotFound(f"model {model_id!r} does not exist", param="model")
        return json_response(anthropic_model(found) if "anthropic-version" in request.headers
                             else openai_model(found))

    @app.post("/v1/messages/count_tokens")
    async def messages_count_tokens():  # type: ignore[no-untyped-def]
        who = await principal()
        limit_rate(rt, who)  # free, but it spends the platform's provider quota
        passthrough = tuple((k, v) for k, v in request.headers.items()
                            if k.lower() in ("anthropic-beta", "anthropic-version"))
        counted = await count_tokens(rt.config.catalog, rt.providers, who, await json_body(),
                                     request.query_string.decode("latin-1"), passthrough)
        response = json_response(orjson.loads(counted.body))
        response.headers["x-aura-model"] = counted.model
        if counted.provider is None:
            response.headers["x-aura-estimate"] = "true"
        else:
            response.headers["x-aura-provider"] = counted.provider
        return response

    @app.get("/v1/usage")
    async def usage():  # type: ignore[no-untyped-def]
        who = await principal()
        state = await rt.ledger.account(who.account)
        spent = await rt.ledger.total_captured(who.account)
        recent = await rt.ledger.recent_usage(who.account, 20)
        return json_response({
            "account": who.account, "balance_micros": state.balance,
            "held_micros": state.held, "available_micros": state.available,
            "balance_usd": f"{state.balance // 1_000_000}.{state.balance % 1_000_000:06d}"
            if state.balance >= 0 else f"-{-state.balance // 1_000_000}."
                                       f"{-state.balance % 1_000_000:06d}",
            "limit_dollars": _dollars(state.available + spent),
            "usage_dollars": _dollars(spent),
            "remaining_dollars": _dollars(state.available),
            "recent": [{"request_id": r.request_id, "model": r.model, "provider": r.provider,
                        "input_tokens": r.usage.input_tokens,
                        "output_tokens": r.usage.output_tokens,
                        "cache_read_tokens": r.usage.cache_read_tokens,
                        "cache_write_tokens": r.usage.cache_write_tokens,
                        "cost_micros": r.cost_micros,
                        "at": _iso(r.at)} for r in recent]})

    app.register_blueprint(admin_routes(rt))
    return app


def openai_model(m: ModelSpec) -> dict[str, object]:
    return {"id": m.id, "object": "model", "created": m.created, "owned_by": m.kind,
            "display_name": m.display_name, "max_output_tokens": m.max_output_tokens,
            "pricing": m.prices.as_strings()}


def anthropic_model(m: ModelSpec) -> dict[str, object]:
    return {"type": "model", "id": m.id, "display_name": m.display_name,
            "created_at": _iso(m.created), "max_output_tokens": m.max_output_tokens,
            "pricing": m.prices.as_strings()}


def _iso(at: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
