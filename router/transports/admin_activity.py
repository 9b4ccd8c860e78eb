"""`GET /admin/activity?window=hour|day`: the console overview's figures (docs/api.md):
calls, errors, billed calls, spend and tokens per bucket, spend per model
(router/activity.py says where each figure comes from)."""

from __future__ import annotations

from quart import Blueprint, request

from router.activity import WINDOWS, summarize, window_start
from router.errors import BadRequest
from router.gateway import Gateway
from router.transports.common import json_response, require_admin


def activity_routes(gw: Gateway) -> Blueprint:
    bp = Blueprint("admin_activity", __name__, url_prefix="/admin")

    @bp.before_request
    async def gate() -> None:
        require_admin(gw.config.admin_api_key)

    @bp.get("/activity")
    async def activity():  # type: ignore[no-untyped-def]
        name = request.args.get("window", "").strip() or "hour"
        window = WINDOWS.get(name)
        if window is None:
            raise BadRequest("'window' must be 'hour' or 'day'", param="window")
        now = gw.clock()
        totals = await gw.reports.usage_totals(window_start(window, now), window.bucket_s,
                                               window.buckets)
        scope = "process" if gw.config.workers > 1 else "all"
        return json_response(summarize(window, now, totals, gw.activity, scope))

    return bp
