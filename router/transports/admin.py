"""Admin routes (docs/api.md): accounts, credits, keys, providers, streams, usage export,
the outbox, the console overview's activity.

`Authorization: Bearer $ADMIN_API_KEY`."""

from __future__ import annotations

import re
from typing import Any

import trio
from quart import Blueprint, Response, request

from router.activity import WINDOWS, summarize, window_start
from router.errors import BadRequest, Conflict, InsufficientFunds, LedgerError, NotFound
from router.gateway import Gateway
from router.ledger.base import OutboxEvent
from router.ledger.export import (DEFAULT_LIMIT, MAX_LIMIT, iso_utc, parse_time, record_dict,
                                  to_csv)
from router.redact import quote_input
from router.transports.common import int_field, json_body, json_response, require_admin

MAX_ACCOUNT_ID = 200
ACCOUNTS_PAGE = 50  # GET /admin/accounts: accounts per page unless ?limit says
MAX_ACCOUNTS_PAGE = 1_000
_DIGITS = re.compile(r"[0-9]{1,9}")


def _account_id(account: Any) -> str:
    if not isinstance(account, str) or not account.strip() or len(account) > MAX_ACCOUNT_ID:
        raise BadRequest("'account' must be a non-empty string of at most 200 characters",
                         param="account")
    return account


def _query(name: str) -> str | None:
    """A query parameter, with `?name=` (empty) read as absent."""
    value = request.args.get(name, "").strip()
    return value or None


def _id_param(name: str) -> str | None:
    """An account id (or the start of one) as given, spaces and case kept; `?name=`
    (empty) is absent."""
    value = request.args.get(name) or None
    if value is not None and len(value) > MAX_ACCOUNT_ID:
        raise BadRequest(f"'{name}' must be at most {MAX_ACCOUNT_ID} characters", param=name)
    return value


def _page_size() -> int:
    text = _query("limit")
    if text is None:
        return ACCOUNTS_PAGE
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_ACCOUNTS_PAGE:
        raise BadRequest(f"'limit' must be an integer from 1 to {MAX_ACCOUNTS_PAGE}",
                         param="limit")
    return int(text)


def _time_param(name: str) -> float | None:
    text = _query(name)
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise BadRequest(f"'{name}': {exc}", param=name) from None


def _limit_param() -> int:
    text = _query("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise BadRequest(f"'limit' must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return int(text)


def _format_param() -> str:
    fmt = (_query("format") or "json").lower()
    if fmt not in ("json", "csv"):
        raise BadRequest("'format' must be 'json' or 'csv'", param="format")
    return fmt


async def _csv_response(rows: list[dict[str, Any]], has_more: bool) -> Response:
    text = await trio.to_thread.run_sync(to_csv, rows)
    return Response(text, status=200, content_type="text/csv; charset=utf-8",
                    headers={"content-disposition": 'attachment; filename="aura-usage.csv"',
                             "x-aura-has-more": "true" if has_more else "false"})


def _event_json(event: OutboxEvent) -> dict[str, Any]:
    return {"event_id": event.event_id, "sink": event.sink, "request_id": event.request_id,
            "account": event.account, "state": event.state, "attempts": event.attempts,
            "created_at": iso_utc(event.created_at), "next_at": iso_utc(event.next_at),
            "last_error": event.last_error}


def admin_routes(gw: Gateway) -> Blueprint:
    bp = Blueprint("admin", __name__, url_prefix="/admin")

    @bp.before_request
    async def gate() -> None:
        require_admin(gw.config.admin_api_key)

    def account_json(state: Any) -> dict[str, Any]:
        return {"account": state.account, "balance_micros": state.balance,
                "held_micros": state.held, "available_micros": state.available}

    @bp.post("/accounts/<account>/credits")
    async def credits(account: str):  # type: ignore[no-untyped-def]
        body = await json_body()
        amount = int_field(body, "amount_micros", required=True)
        if amount == 0:
            raise BadRequest("'amount_micros' must not be zero", param="amount_micros")
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise BadRequest("'reason' must be a string", param="reason")
        try:
            state = await gw.accounts.grant(_account_id(account), amount, reason, gw.clock())
        except InsufficientFunds as exc:
            raise Conflict(f"an adjustment of {amount} would make available negative "
                           f"({exc.available} available)") from None
        except LedgerError as exc:
            raise BadRequest(str(exc)) from None
        return json_response(account_json(state))

    @bp.get("/accounts")
    async def accounts():  # type: ignore[no-untyped-def]
        """Accounts in id order, a page at a time: `?prefix=` (literal, case-sensitive),
        `?after=` (the previous page's `next_after`), `?limit=` (1-1000, default 50)."""
        prefix, after, limit = _id_param("prefix"), _id_param("after"), _page_size()
        # One account past the page tells the last page from a full one.
        states = await gw.accounts.listing(prefix, after, limit + 1)
        data = [account_json(state) for state in states[:limit]]
        return json_response({"data": data, "has_more": len(states) > limit,
                              "next_after": data[-1]["account"] if data else None})

    async def known_account(account: str) -> str:
        if not await gw.accounts.exists(_account_id(account)):
            raise NotFound(f"no account {quote_input(account)}")
        return account

    @bp.get("/accounts/<account>")
    async def account(account: str):  # type: ignore[no-untyped-def]
        state = await gw.accounts.account(await known_account(account))
        keys = await gw.keys.list(account)
        return json_response({**account_json(state),
                              "keys": [k.public() for k in keys]})

    @bp.get("/accounts/<account>/ledger")
    async def ledger(account: str):  # type: ignore[no-untyped-def]
        try:
            after = int(request.args.get("after", "0"))
            limit = min(int(request.args.get("limit", "100")), 1000)
        except ValueError:
            raise BadRequest("'after' and 'limit' must be integers") from None
        if not 0 <= after < 2**63 or limit < 1:  # a seq is a 64-bit integer in every store
            raise BadRequest("'after' must be from 0 to 2^63-1 and 'limit' >= 1")
        entries = await gw.accounts.entries(await known_account(account), after, limit)
        data = [{"seq": e.seq, "kind": e.kind, "amount_micros": e.amount,
                 "held_delta_micros": e.held_delta, "request_id": e.request_id,
                 "balance_after_micros": e.balance_after, "reason": e.reason, "at": e.at}
                for e in entries]
        return json_response({"data": data, "next_after": data[-1]["seq"] if data else after})

    @bp.get("/accounts/<account>/usage")
    async def account_usage(account: str):  # type: ignore[no-untyped-def]
        """The account's latest settled calls, newest first (the console's account page;
        `/admin/usage` is the export, oldest first)."""
        text = _query("limit")
        if text is not None and (not _DIGITS.fullmatch(text) or not 1 <= int(text) <= 200):
            raise BadRequest("'limit' must be an integer from 1 to 200", param="limit")
        records = await gw.reports.recent_usage(await known_account(account),
                                                int(text) if text else 50)
        return json_response({"data": [record_dict(r) for r in records]})

    @bp.post("/keys")
    async def issue_key():  # type: ignore[no-untyped-def]
        body = await json_body()
        account = _account_id(body.get("account"))
        ttl_hours = int_field(body, "ttl_hours", positive=True)
        models = body.get("models")
        if models is not None and (not isinstance(models, list) or not all(
                isinstance(m, str) for m in models)):
            raise BadRequest("'models' must be a list of model ids", param="models")
        label = body.get("label")
        if label is not None and not isinstance(label, str):
            raise BadRequest("'label' must be a string", param="label")
        now = gw.clock()
        key, record = await gw.keys.issue(
            account, label=label, models=models, rpm=int_field(body, "rpm", positive=True),
            spend_cap_micros=int_field(body, "spend_cap_micros", positive=True),
            expires_at=now + ttl_hours * 3600 if ttl_hours else None, at=now)
        return json_response({**record.public(), "key": key}, 201)

    @bp.get("/keys")
    async def list_keys():  # type: ignore[no-untyped-def]
        keys = await gw.keys.list(request.args.get("account"))
        return json_response({"data": [k.public() for k in keys]})

    @bp.delete("/keys/<key_id>")
    async def revoke_key(key_id: str):  # type: ignore[no-untyped-def]
        now = gw.clock()
        record = await gw.keys.revoke(key_id, now)
        if record is None:
            raise NotFound(f"no key with id {quote_input(key_id)}")
        # A store keeps the first revocation's time: another one means this call found
        # the key revoked already (nothing changed).
        return json_response({**record.public(), "already_revoked": record.revoked_at != now})

    @bp.get("/usage")
    async def usage_export():  # type: ignore[no-untyped-def]
        account = _query("account")
        since, until = _time_param("since"), _time_param("until")
        limit, fmt = _limit_param(), _format_param()
        # One row past the limit tells a truncated export from a complete one.
        rows = await gw.reports.usage_rows(account, since, until, limit + 1)
        has_more = len(rows) > limit
        rows = rows[:limit]
        if fmt == "csv":
            return await _csv_response(rows, has_more)
        return json_response({"data": rows, "count": len(rows), "has_more": has_more})

    @bp.get("/outbox")
    async def outbox():  # type: ignore[no-untyped-def]
        """Events waiting for their sink (`?state=pending|dead`, default both), with the
        pending count per sink (`aura_outbox_pending{sink}`). Bodies are not shown: a
        stored conversation is the user's, not the operator's."""
        state = _query("state")
        if state not in (None, "pending", "dead"):
            raise BadRequest("'state' must be 'pending' or 'dead'", param="state")
        limit = min(_limit_param(), 1000) if _query("limit") else 100
        events = await gw.outbox.listing(state, limit)
        return json_response({"pending": await gw.outbox.pending(), "count": len(events),
                              "data": [_event_json(e) for e in events]})

    @bp.post("/outbox/<event_id>/retry")
    async def retry_event(event_id: str):  # type: ignore[no-untyped-def]
        if not await gw.outbox.revive(event_id, gw.clock()):
            raise NotFound(f"no dead event with id {quote_input(event_id)}")
        return json_response({"event_id": event_id, "state": "pending"})

    @bp.get("/providers")
    async def providers():  # type: ignore[no-untyped-def]
        """Each provider's health: breaker, credentials (index and prefix, never the key),
        cooldowns, pool and in-flight figures, and its source (config or store)."""
        return json_response({"data": await gw.provider_stats()})

    # The provider store (router/provider_store.py; docs/api.md): a stored provider is
    # running in this process when these answer, and in the others within a poll.
    @bp.post("/providers/<name>")
    async def put_provider(name: str):  # type: ignore[no-untyped-def]
        body = await json_body()
        if "name" in body and body.pop("name") != name:
            raise BadRequest("'name' in the body must match the path (or be left out)",
                             param="name")
        created, view = await gw.provider_admin.put(name, body)
        return json_response(view, 201 if created else 200)

    @bp.get("/providers/<name>")
    async def get_provider(name: str):  # type: ignore[no-untyped-def]
        return json_response(await gw.provider_admin.describe(name))

    @bp.delete("/providers/<name>")
    async def delete_provider(name: str):  # type: ignore[no-untyped-def]
        return json_response(await gw.provider_admin.remove(name))

    @bp.get("/activity")
    async def activity():  # type: ignore[no-untyped-def]
        """The console overview's figures (router/activity.py says where each comes from)."""
        name = _query("window") or "hour"
        window = WINDOWS.get(name)
        if window is None:
            raise BadRequest("'window' must be 'hour' or 'day'", param="window")
        now = gw.clock()
        totals = await gw.reports.usage_totals(window_start(window, now), window.bucket_s,
                                               window.buckets)
        scope = "process" if gw.config.workers > 1 else "all"
        return json_response(summarize(window, now, totals, gw.activity, scope))

    @bp.get("/streams")
    async def streams():  # type: ignore[no-untyped-def]
        """The resumable streams the hub holds: who reads them and what they keep."""
        data = [stream.describe() for stream in gw.streams.streams()]
        return json_response({"data": data, "count": len(data),
                              "buffer_bytes": gw.config.stream_buffer_bytes})

    return bp
