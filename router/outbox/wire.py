"""What an outbox event sends, and what the sink's answer means (docs/integration.md).

Pure: the request each event makes (the usage sink's `POST /internal/usage`, the storage
sink's `POST /internal/messages`, the credit service's capture, release or debit), the
verdict on a status (delivered, retried, parked as dead) and the retry delay (exponential
with full jitter, capped). Money stays integer micro-USD on the wire.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from router.ledger.base import OutboxEvent
from router.providers.base import HttpCall

RETRY_FIRST_S = 1.0
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                "reasoning_tokens")


@dataclass(frozen=True)
class SinkRoute:
    """Where one sink's events go: its base URL's path prefix lives in the pool."""

    name: str
    token: str | None
    path: str  # for usage and messages; the credit service builds its own paths
    billing_mode: str = "two_phase"


def iso_ms(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] \
        + "Z"


def usage_status(row: dict[str, Any]) -> str:
    """`recovered`: settled from a checkpoint after its router died; `completed`
    otherwise (an answer cut short or refused upstream is billed what it used)."""
    return "recovered" if row["recovered"] else "completed"


def usage_body(event: OutboxEvent, row: dict[str, Any]) -> bytes:
    return orjson.dumps({
        "event_id": event.event_id, "request_id": row["request_id"],
        "account": row["account"], "model": row["model"], "provider": row["provider"],
        **{name: row[name] for name in USAGE_FIELDS},
        "cost_micros": row["cost_micros"], "estimated": not row["reported"],
        "status": usage_status(row), "started_at": iso_ms(row["started_at"]),
        "finished_at": iso_ms(row["at"])})


def transcript_body(request_id: str, account: str, model: str, api: str, body: bytes,
                    answer: str) -> bytes:
    """The storage sink's event, built when the request settles (its body is kept in
    the outbox: the prompt is not in the ledger). `messages` are the client's own, in
    its format (a Responses call's `input`); a system prompt sent apart (Anthropic's
    `system`, Responses' `instructions`) comes as `system`."""
    request = orjson.loads(body)
    messages = request.get("input" if api == "openai.responses" else "messages")
    if isinstance(messages, str):  # a Responses call's input may be one user text
        messages = [{"role": "user", "content": messages}]
    event: dict[str, Any] = {"event_id": f"messages.{request_id}", "request_id": request_id,
                             "account": account, "model": model, "messages": messages,
                             "answer": answer, "api": api}
    system = request.get("instructions" if api == "openai.responses" else "system")
    if system is not None:
        event["system"] = system
    return orjson.dumps(event)


def _headers(token: str | None, key: str) -> tuple[tuple[bytes, bytes], ...]:
    headers = [(b"content-type", b"application/json"), (b"idempotency-key", key.encode())]
    if token:
        headers.append((b"authorization", b"Bearer " + token.encode()))
    return tuple(headers)


def billing_call(route: SinkRoute, row: dict[str, Any]) -> HttpCall | None:
    """The credit service's side of a settlement: a capture of what was used or a
    release (two_phase), a debit (check_debit; nothing to send for 0)."""
    request_id, cost = row["request_id"], row["cost_micros"]
    usage = {name: row[name] for name in USAGE_FIELDS} | {"model": row["model"],
                                                          "estimated": not row["reported"]}
    headers = _headers(route.token, request_id)
    if route.billing_mode == "check_debit":
        if cost == 0:
            return None
        return HttpCall("/v1/debits", headers, orjson.dumps({
            "account": row["account"], "request_id": request_id, "amount_micros": cost,
            "usage": usage}))
    if cost == 0:
        return HttpCall(f"/v1/holds/{request_id}/release", headers, b"{}")
    return HttpCall(f"/v1/holds/{request_id}/capture", headers, orjson.dumps({
        "amount_micros": cost, "usage": usage}))


def event_call(route: SinkRoute, event: OutboxEvent,
               row: dict[str, Any] | None) -> HttpCall | None:
    """The request for this event; None when there is nothing to send."""
    if event.sink == "messages":
        assert event.body is not None
        return HttpCall(route.path, _headers(route.token, event.event_id), event.body)
    if event.sink == "billing" and event.body is not None:
        # A hold whose placing had no known outcome: the service lets go of it if it has it.
        return HttpCall(f"/v1/holds/{event.request_id}/release",
                        _headers(route.token, event.request_id), b"{}")
    if row is None:
        return None
    if event.sink == "billing":
        return billing_call(route, row)
    return HttpCall(route.path, _headers(route.token, event.event_id),
                    usage_body(event, row))


def verdict(sink: str, status: int, call: HttpCall) -> str:
    """`delivered`, `retry` (408, 409, 429, 5xx: the sink may take it later) or `dead`
    (any other 4xx: sending it again cannot help; parked for an operator). The credit
    service's 409 is dead too: a capture or release conflicting with what it already
    applied for that request (ours are the same every time) needs an operator; and its
    404 to a release means there is nothing to let go of."""
    if 200 <= status < 300:
        return "delivered"
    if sink == "billing":
        if status == 404 and call.path.endswith("/release"):
            return "delivered"
        if status == 409:
            return "dead"
    if status in (408, 409, 429) or status >= 500 or status < 200:
        return "retry"
    return "dead"


def retry_delay_s(attempts: int, cap_s: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in (0, min(cap, first * 2^n)]."""
    ceiling = min(cap_s, RETRY_FIRST_S * 2 ** min(attempts, 30))
    return max(0.05, rng.uniform(0, ceiling))
