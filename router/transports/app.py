"""The Quart app: every route but the hot model calls (health, readiness, models,
usage, admin, the OpenAPI document and its docs page). Errors come out in the caller's
API shape, never as HTML.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from router import openapi
from router.auth.credentials import credential_from
from router.catalog import ModelSpec
from router.errors import NotFound, RouterError
from router.gateway import Gateway
from router.ledger.export import iso_utc
from router.redact import quote_input
from router.transports.admin import admin_routes
from router.transports.console import console_routes
from router.transports.common import (caller_shape, error_response, json_body,
                                      json_response, require_admin)
from router.transports.docs_page import CSP, PAGE, DocsAssets


def _dollars(micros: int) -> float:
    """Display-only dollars for the seed clients' `*_dollars` fields (docs/api.md)."""
    return micros / 1_000_000


def build_quart_app(gw: Gateway) -> QuartTrio:
    app = QuartTrio("aura-router")
    # Quart's 60 s response default silently cuts long streams; the router owns its
    # deadlines. A body must arrive within BODY_TIMEOUT_S.
    app.config.update(RESPONSE_TIMEOUT=None, BODY_TIMEOUT=gw.config.body_timeout_s,
                      MAX_CONTENT_LENGTH=gw.config.max_body_bytes)
    # Paths are matched as they come: no redirect to a "cleaner" path, ever.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False

    @app.errorhandler(RouterError)
    async def on_router_error(error: RouterError):  # type: ignore[no-untyped-def]
        return error_response(error, caller_shape())

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        wrapped = NotFound(f"no route for {request.method} {quote_input(request.path)}") \
            if error.code in (404, 405) else RouterError(error.description or "error")
        wrapped.status = error.code or 500
        return error_response(wrapped, caller_shape())

    async def principal():  # type: ignore[no-untyped-def]
        credential = credential_from(request.headers.get("authorization"),
                                     request.headers.get("x-api-key"))
        return await gw.authenticate(credential, request.headers.get("x-aura-account"))

    @app.get("/health")
    async def health():  # type: ignore[no-untyped-def]
        return Response("ok", 200, {"content-type": "text/plain; charset=utf-8"})

    @app.get("/ready")
    async def ready():  # type: ignore[no-untyped-def]
        report = await gw.readiness()
        return json_response(report, 503 if report.get("reasons") else 200)

    @app.get("/metrics")
    async def metrics():  # type: ignore[no-untyped-def]
        if not gw.config.metrics_public:
            require_admin(gw.config.admin_api_key)
        body, content_type = await gw.metrics_text()
        return Response(body, 200, {"content-type": content_type})

    @app.get("/v1/models")
    async def models():  # type: ignore[no-untyped-def]
        who = await principal()
        listed = [m for m in gw.config.catalog.routable() if who.may_use(m.id)]
        if "anthropic-version" in request.headers:
            data = [anthropic_model(m) for m in listed]
            return json_response({"data": data, "has_more": False,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})
        return json_response({"object": "list", "data": [openai_model(m) for m in listed]})

    @app.get("/v1/models/<path:model_id>")
    async def model(model_id: str):  # type: ignore[no-untyped-def]
        who = await principal()
        found = gw.config.catalog.resolve(model_id)
        if found is None or not found.route or not who.may_use(found.id):
            raise NotFound(f"model {quote_input(model_id)} does not exist", param="model")
        return json_response(anthropic_model(found) if "anthropic-version" in request.headers
                             else openai_model(found))

    @app.post("/v1/messages/count_tokens")
    async def messages_count_tokens():  # type: ignore[no-untyped-def]
        who = await principal()
        passthrough = tuple((k, v) for k, v in request.headers.items()
                            if k.lower() in ("anthropic-beta", "anthropic-version"))
        counted = await gw.count_tokens(who, await json_body(),
                                        request.query_string[:2048].decode("latin-1"),
                                        passthrough)
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
        state = await gw.accounts.account(who.account)
        spent = await gw.reports.spent(who.account)
        recent = await gw.reports.recent_usage(who.account, 20)
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
                        "at": iso_utc(r.at)} for r in recent]})

    @app.get("/v1/accounts")
    async def oauth_accounts():  # type: ignore[no-untyped-def]
        """The OAuth logins (Claude Code's) the providers call with, and whether each is
        usable now: directory, state, cooldown, expiry. Never a token or its prefix."""
        await principal()
        data = []
        for stats in await gw.provider_stats():
            for c in cast("list[dict[str, Any]]", stats["credentials"]):
                if c.get("kind") == "oauth":
                    data.append({"provider": stats["name"], "account": c["account"],
                                 "state": c["state"], "reason": c["reason"],
                                 "cooldown_s": c["cooldown_s"],
                                 "expires_at": iso_utc(c["expires_at"]) if c["expires_at"]
                                 else None, "expires_in_s": c["expires_in_s"]})
        return json_response({"object": "list", "data": data})

    assets = DocsAssets()

    @app.get("/openapi.json")
    async def openapi_json():  # type: ignore[no-untyped-def]
        return Response(openapi.document(), 200, {"content-type": "application/json"})

    @app.get("/docs")
    async def docs():  # type: ignore[no-untyped-def]
        return Response(PAGE, 200, {"content-type": "text/html; charset=utf-8",
                                    "content-security-policy": CSP})

    @app.get("/docs/static/<name>")
    async def docs_asset(name: str):  # type: ignore[no-untyped-def]
        data = await assets.read(name)
        if data is None:
            raise NotFound(f"no docs asset {quote_input(name)}")
        return Response(data, 200, {"content-type": DocsAssets.content_type(name) or "",
                                    "cache-control": "public, max-age=86400"})

    app.register_blueprint(admin_routes(gw))
    app.register_blueprint(console_routes(gw))
    return app


def openai_model(m: ModelSpec) -> dict[str, object]:
    return {"id": m.id, "object": "model", "created": m.created, "owned_by": m.kind,
            "display_name": m.display_name, "max_output_tokens": m.max_output_tokens,
            "pricing": m.prices.as_strings()}


def anthropic_model(m: ModelSpec) -> dict[str, object]:
    return {"type": "model", "id": m.id, "display_name": m.display_name,
            "created_at": iso_utc(m.created), "max_output_tokens": m.max_output_tokens,
            "pricing": m.prices.as_strings()}
