"""The external credit service's client (`BILLING_BACKEND=http`, docs/integration.md).

The calls the router makes while a request waits: place a hold (`two_phase`), read an
account. Captures, releases and debits are not here: they leave through the durable
outbox (`router.outbox.wire`). Every call carries `Authorization: Bearer
$Z_BILLING_API_KEY` and, for writes, `Idempotency-Key: <request id>`, so an outcome we
never heard (a timeout, a dropped connection, a 5xx) is retried with the same key, a few
times within a bounded budget; then the caller fails closed. An answer that is not the
documented JSON is treated as no answer.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import orjson
import trio

from router.errors import AuraError, UpstreamError
from router.ledger.base import AccountState
from router.providers.base import HttpCall
from router.providers.h11_pool import H11Pool
from router.redact import display_url

log = logging.getLogger("aura.credit")

CALL_TIMEOUT_S = 5.0  # Z_BILLING_TIMEOUT_S
ATTEMPTS = 3
RETRY_FIRST_S = 0.1
MAX_ANSWER = 64 * 1024


class CreditServiceDown(AuraError):
    """No usable answer after every attempt (unknown outcome, garbage, 5xx, refused
    key): the caller fails closed."""


@dataclass(frozen=True, slots=True)
class HoldAnswer:
    placed: bool  # 201; False: 402
    available: int


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class CreditService:
    def __init__(self, url: str, api_key: str | None, *, timeout_s: float = CALL_TIMEOUT_S,
                 max_connections: int = 64, rng: random.Random | None = None) -> None:
        self.where = display_url(url)
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.pool = H11Pool(url, max_connections=max_connections,
                            connect_timeout_s=min(2.0, timeout_s), idle_timeout_s=timeout_s)
        self.rng = rng or random.Random()
        self.last_failure: str | None = None  # for /ready, cleared by the next good answer

    def _headers(self, key: str | None) -> tuple[tuple[bytes, bytes], ...]:
        headers = [(b"content-type", b"application/json"), (b"accept", b"application/json")]
        if self.api_key:
            headers.append((b"authorization", b"Bearer " + self.api_key.encode()))
        if key is not None:
            headers.append((b"idempotency-key", key.encode()))
        return tuple(headers)

    async def _call(self, call: HttpCall, what: str,
                    accept: tuple[int, ...]) -> tuple[int, dict[str, Any]]:
        """(status, JSON object) for a status in `accept`; retried while the outcome is
        unknown; `CreditServiceDown` when no attempt gave one."""
        failure = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                await trio.sleep(self.rng.uniform(0.5, 1.0) * RETRY_FIRST_S * 3 ** attempt)
            try:
                with trio.fail_after(self.timeout_s):
                    async with self.pool.send(call) as response:
                        status = response.status
                        raw = await response.read(MAX_ANSWER)
            except trio.TooSlowError:
                failure = f"no answer within {self.timeout_s:g} s"
                continue
            except UpstreamError as exc:
                failure = str(exc).replace("provider", "credit service")
                continue
            if status in (401, 403):
                failure = f"answered {status}: Z_BILLING_API_KEY is refused"
                break  # the same key will be refused again
            if status not in accept:
                failure = f"answered {status}"
                if status < 500 and status not in (408, 409, 429):
                    break
                continue
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
            if not isinstance(body, dict):
                failure = f"answered {status} with a body that is not a JSON object"
                continue
            self.last_failure = None
            return status, body
        self.last_failure = f"{what}: {failure}"
        log.error("credit service at %s: %s (%s)", self.where, failure, what)
        raise CreditServiceDown(failure)

    async def hold(self, account: str, request_id: str, amount: int,
                   expires_at: float) -> HoldAnswer:
        body = orjson.dumps({"account": account, "request_id": request_id,
                             "amount_micros": amount, "expires_at": int(expires_at)})
        status, answer = await self._call(
            HttpCall("/v1/holds", self._headers(request_id), body), f"hold {request_id}",
            (201, 402, 404))
        if status == 404:  # an account the service does not know has no credits
            return HoldAnswer(False, 0)
        available = _int(answer.get("available_micros"))
        if available is None:
            self.last_failure = f"hold {request_id}: answer without available_micros"
            log.error("credit service at %s answered a hold without an integer "
                      "available_micros", self.where)
            raise CreditServiceDown("answer without available_micros")
        return HoldAnswer(status == 201, available)

    async def account(self, account: str) -> AccountState | None:
        """The service's view of the account; None if it does not know it."""
        from urllib.parse import quote

        status, answer = await self._call(
            HttpCall(f"/v1/accounts/{quote(account, safe='')}", self._headers(None), b"",
                     method=b"GET"), f"account {account}", (200, 404))
        if status == 404:
            return None
        balance, held = _int(answer.get("balance_micros")), _int(answer.get("held_micros"))
        if balance is None:
            self.last_failure = f"account {account}: answer without balance_micros"
            raise CreditServiceDown("answer without balance_micros")
        return AccountState(account, balance, held or 0)

    async def probe(self) -> str | None:
        """Why the service cannot be used now, or None (for /ready)."""
        try:
            await self.account("aura-readiness-probe")
        except CreditServiceDown as exc:
            return f"credit service at {self.where}: {exc}"
        return None

    async def aclose(self) -> None:
        await self.pool.aclose()
