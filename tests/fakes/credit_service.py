"""`FakeCreditService`: a strict fake of the external credit service ("z-billing").

For tests of the router's ``Z_BILLING_URL`` client: a real HTTP server on loopback (see
`FakeService`) that speaks the spec's wire contract and refuses what a careful real
service would refuse, so router bugs show up as errors rather than silent money loss::

    with FakeCreditService(api_key="zb-key") as zb:
        zb.grant("acct-1", 5_000_000)
        ...  # router with Z_BILLING_URL=zb.base_url, Z_BILLING_API_KEY="zb-key"
        assert zb.applied_captures() == {"req-1": 1}

Every call needs ``Authorization: Bearer <api_key>`` (else 401) and every POST an
``Idempotency-Key`` equal to the body's (or path's) ``request_id`` (else 400).  Bodies are
JSON objects; a malformed body, missing field or wrong type is a 400 naming the field.
Amounts are non-negative integers (micros); ``expires_at`` is integer unix seconds.

* ``POST /v1/holds {"account", "request_id", "amount_micros", "expires_at"}``:
  201 ``{"available_micros"}`` (what is available *after* the hold) or 402
  ``{"available_micros", "error"}`` when ``amount_micros`` > available.  A 402 creates
  nothing, so a retry is evaluated afresh.  Same ``request_id`` again: the same body is a
  replay (201 with the first answer, no second hold, counted in `replays`); another body
  is 409.  ``expires_at`` must lie in ``(now, now + max_hold_s]`` (else 400: catches
  milliseconds for seconds).  Unknown account (never granted): 404.
* ``POST /v1/holds/{request_id}/capture {"amount_micros", "usage": {...}}``: 200
  ``{"captured_micros", "balance_micros"}``; debits the balance, frees the hold.
  Unknown hold 404; amount over the hold 400; a capture again with the same amount is a
  replay (200), with another amount 409; capture of a released hold 409 ``hold_released``,
  of an expired hold 410 ``hold_expired`` (gone: no retry will bring it back).
* ``POST /v1/holds/{request_id}/release`` (no body or any JSON object): 200
  ``{"released_micros"}``.  Unknown hold 404; release again is a replay (200); release of
  an expired hold is a 200 (it is released anyway); release after capture is 409
  ``hold_captured``: the capture stands, and a client that thinks it released money it
  actually spent has a bug worth seeing.
* ``GET /v1/accounts/{account}``: 200 ``{"account", "balance_micros", "held_micros",
  "available_micros"}``; 404 for an unknown account.  Expired holds no longer count as held.
* ``POST /v1/debits {"account", "request_id", "amount_micros", "usage"}`` (check_debit
  mode): 200 ``{"balance_micros"}`` (after the debit).  No balance check: the balance may
  go negative (recorded in `overdrafts`).  Same ``request_id``: same account and amount is
  a replay (200, the first answer), anything else 409.

Errors are ``{"error": {"code", "message"}}``.  Fault switches on top of `FakeService`'s
``down`` / ``slow_s`` / ``fail_next``:

* ``garbage = True``: every request answers 200 with a non-JSON (HTML) body, nothing applied;
* ``timeout_after_apply = True``: every write (hold, capture, release, debit) is applied --
  or replayed -- and then never answered (the request hangs until the client gives up);
  ``timeout_next_after_apply(n)`` does the same for the next ``n`` writes only (so a retry
  can see the replay).  Writes refused (4xx) are answered as usual.

The clock is ``now()`` (``time.time`` plus whatever `advance` added), for expiry tests.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from ._service import (HANG, Action, Call, FakeService, Reply, check_bearer, check_body,
                       error_reply, json_reply)

HoldState = Literal["held", "captured", "released"]

_GARBAGE = Reply(200, b"<html><body>502 Bad Gateway (but with a 200)</body></html>",
                 b"text/html")
_HOLD_ACTION = re.compile(r"^/v1/holds/([^/]+)/(capture|release)$")
_ACCOUNT = re.compile(r"^/v1/accounts/([^/]+)$")
_KEY_MISMATCH = error_reply(400, "idempotency_key", "Idempotency-Key must equal request_id")


def _check_new_write(call: Call, fields: dict[str, str]) -> Reply | None:
    """The refusal (400) of a hold or debit whose body lacks ``account``, ``request_id``,
    ``amount_micros`` or `fields`, or whose Idempotency-Key is not its ``request_id``."""
    refused = check_body(call, {"account": "text", "request_id": "text",
                                "amount_micros": "count", **fields})
    if refused is None and call.idempotency_key != call.json["request_id"]:
        return _KEY_MISMATCH
    return refused


@dataclass(frozen=True)
class Hold:
    request_id: str
    account: str
    amount_micros: int
    expires_at: int
    available_micros: int  # the 201's answer, given again to a replay
    state: HoldState = "held"
    captured_micros: int | None = None
    usage: dict[str, Any] | None = None


@dataclass(frozen=True)
class Debit:
    request_id: str
    account: str
    amount_micros: int
    usage: dict[str, Any]
    balance_micros: int  # the 200's answer, given again to a replay


@dataclass(frozen=True)
class Overdraft:
    account: str
    request_id: str
    balance_micros: int  # the (negative) balance after the debit


class FakeCreditService(FakeService):
    thread_name = "fake-credit-service"

    def __init__(self, api_key: str = "z-billing-test-key", *, host: str = "127.0.0.1",
                 port: int = 0, clock: Callable[[], float] = time.time,
                 max_hold_s: int = 7 * 86400) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self.max_hold_s = max_hold_s
        self._clock = clock
        self._offset_s = 0.0
        self.garbage = False
        self.timeout_after_apply = False
        self._timeout_next = 0
        self._balances: dict[str, int] = {}
        self._holds: dict[str, Hold] = {}
        self._debits: dict[str, Debit] = {}
        self._captures: dict[str, int] = {}
        self._debit_counts: dict[str, int] = {}
        self._replays: dict[str, int] = {}
        self._overdrafts: list[Overdraft] = []

    # --- test-side API --------------------------------------------------------------

    def now(self) -> float:
        return self._clock() + self._offset_s

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (holds expire by it)."""
        with self._lock:
            self._offset_s += seconds

    def grant(self, account: str, micros: int) -> int:
        """Add ``micros`` (may be negative or 0) to the account, creating it; the new balance."""
        with self._lock:
            self._balances[account] = self._balances.get(account, 0) + micros
            return self._balances[account]

    def account(self, account: str) -> dict[str, int] | None:
        """What ``GET /v1/accounts/{account}`` would answer, or None for an unknown account."""
        with self._lock:
            return self._account_view(account) if account in self._balances else None

    def hold(self, request_id: str) -> Hold | None:
        with self._lock:
            return self._holds.get(request_id)

    def holds(self) -> list[Hold]:
        with self._lock:
            return list(self._holds.values())

    def debits(self) -> list[Debit]:
        with self._lock:
            return list(self._debits.values())

    def applied_captures(self) -> dict[str, int]:
        """request_id -> how many captures were applied (a replay is not); 1 is right."""
        with self._lock:
            return dict(self._captures)

    def applied_debits(self) -> dict[str, int]:
        with self._lock:
            return dict(self._debit_counts)

    def replays(self) -> dict[str, int]:
        """request_id -> how many writes under it were harmless replays (any kind)."""
        with self._lock:
            return dict(self._replays)

    def overdrafts(self) -> list[Overdraft]:
        with self._lock:
            return list(self._overdrafts)

    def timeout_next_after_apply(self, n: int = 1) -> None:
        with self._lock:
            self._timeout_next = n

    def reset(self) -> None:
        """Forget accounts, holds, debits, counts, calls; switches off; clock back to now."""
        super().reset()
        with self._lock:
            for table in (self._balances, self._holds, self._debits, self._captures,
                          self._debit_counts, self._replays):
                table.clear()
            self._overdrafts.clear()
            self._timeout_next = 0
            self._offset_s = 0.0
        self.garbage = False
        self.timeout_after_apply = False

    # --- the server side (called on the server thread) ---------------------------------

    def handle(self, call: Call) -> Action:
        if self.garbage:
            return _GARBAGE
        if refused := check_bearer(call, self.api_key):
            return refused
        path = call.path.split("?", 1)[0]
        if call.method == "GET" and (m := _ACCOUNT.match(path)):
            with self._lock:
                if m[1] not in self._balances:
                    return error_reply(404, "unknown_account", f"no account {m[1]!r}")
                return json_reply(200, self._account_view(m[1]))
        if call.method != "POST":
            return error_reply(405 if path.startswith("/v1/") else 404, "not_found",
                               f"no route {call.method} {path}")
        if path == "/v1/holds":
            reply, written = self._create_hold(call)
        elif path == "/v1/debits":
            reply, written = self._debit(call)
        elif m := _HOLD_ACTION.match(path):
            request_id, verb = m[1], m[2]
            if call.idempotency_key != request_id:
                return _KEY_MISMATCH
            if verb == "capture":
                reply, written = self._capture(call, request_id)
            else:
                reply, written = self._release(call, request_id)
        else:
            return error_reply(404, "not_found", f"no route POST {path}")
        return HANG if written and self._take_timeout() else reply

    def _take_timeout(self) -> bool:
        with self._lock:
            if self._timeout_next > 0:
                self._timeout_next -= 1
                return True
        return self.timeout_after_apply

    def _account_view(self, account: str) -> dict[str, Any]:  # under the lock
        balance = self._balances[account]
        now = self.now()
        held = sum(h.amount_micros for h in self._holds.values()
                   if h.account == account and h.state == "held" and h.expires_at > now)
        return {"account": account, "balance_micros": balance, "held_micros": held,
                "available_micros": balance - held}

    def _replayed(self, request_id: str) -> None:  # under the lock
        self._replays[request_id] = self._replays.get(request_id, 0) + 1

    def _create_hold(self, call: Call) -> tuple[Reply, bool]:
        if refused := _check_new_write(call, {"expires_at": "int"}):
            return refused, False
        body = call.json
        rid, account, amount, expires_at = (body["request_id"], body["account"],
                                            body["amount_micros"], body["expires_at"])
        with self._lock:
            if (old := self._holds.get(rid)) is not None:
                if (old.account, old.amount_micros, old.expires_at) != (account, amount,
                                                                        expires_at):
                    return error_reply(409, "idempotency_conflict",
                                       f"hold {rid!r} exists with another body"), False
                self._replayed(rid)
                return json_reply(201, {"available_micros": old.available_micros}), True
            now = self.now()
            if not now < expires_at <= now + self.max_hold_s:
                return error_reply(400, "invalid_field",
                                   f"field 'expires_at' must be unix seconds in (now, now + "
                                   f"{self.max_hold_s}]"), False
            if account not in self._balances:
                return error_reply(404, "unknown_account", f"no account {account!r}"), False
            available = self._account_view(account)["available_micros"]
            if amount > available:
                return json_reply(402, {"available_micros": available, "error": {
                    "code": "insufficient_credits",
                    "message": f"hold of {amount} over available {available}"}}), False
            self._holds[rid] = Hold(rid, account, amount, expires_at, available - amount)
            return json_reply(201, {"available_micros": available - amount}), True

    def _hold(self, rid: str, *, unless: HoldState) -> Hold | Reply:
        """The hold `rid`, or the refusal: 404 if there is none, 409 ``hold_<unless>`` if it
        was already `unless` (the other way of ending it).  Under ``self._lock``."""
        hold = self._holds.get(rid)
        if hold is None:
            return error_reply(404, "unknown_hold", f"no hold {rid!r}")
        if hold.state == unless:
            return error_reply(409, f"hold_{unless}", f"hold {rid!r} was {unless}")
        return hold

    def _capture(self, call: Call, rid: str) -> tuple[Reply, bool]:
        refused = check_body(call, {"amount_micros": "count", "usage": "object"})
        if refused:
            return refused, False
        amount = call.json["amount_micros"]
        with self._lock:
            hold = self._hold(rid, unless="released")
            if isinstance(hold, Reply):
                return hold, False
            if hold.state == "captured":
                if hold.captured_micros != amount:
                    return error_reply(409, "idempotency_conflict", f"hold {rid!r} was "
                                       f"captured with {hold.captured_micros}"), False
                self._replayed(rid)
                return json_reply(200, {"captured_micros": amount,
                                        "balance_micros": self._balances[hold.account]}), True
            if hold.expires_at <= self.now():
                return error_reply(410, "hold_expired", f"hold {rid!r} has expired"), False
            if amount > hold.amount_micros:
                return error_reply(400, "capture_exceeds_hold", f"capture of {amount} over "
                                   f"the hold's {hold.amount_micros}"), False
            self._holds[rid] = replace(hold, state="captured", captured_micros=amount,
                                       usage=call.json["usage"])
            self._balances[hold.account] -= amount
            self._captures[rid] = self._captures.get(rid, 0) + 1
            return json_reply(200, {"captured_micros": amount,
                                    "balance_micros": self._balances[hold.account]}), True

    def _release(self, call: Call, rid: str) -> tuple[Reply, bool]:
        if call.raw and (refused := check_body(call, {})):
            return refused, False
        with self._lock:
            hold = self._hold(rid, unless="captured")
            if isinstance(hold, Reply):
                return hold, False
            if hold.state == "released":
                self._replayed(rid)
            else:
                self._holds[rid] = replace(hold, state="released")
            return json_reply(200, {"released_micros": hold.amount_micros}), True

    def _debit(self, call: Call) -> tuple[Reply, bool]:
        if refused := _check_new_write(call, {"usage": "object"}):
            return refused, False
        body = call.json
        rid, account, amount = body["request_id"], body["account"], body["amount_micros"]
        with self._lock:
            if (old := self._debits.get(rid)) is not None:
                if (old.account, old.amount_micros) != (account, amount):
                    return error_reply(409, "idempotency_conflict",
                                       f"debit {rid!r} exists with another body"), False
                self._replayed(rid)
                return json_reply(200, {"balance_micros": old.balance_micros}), True
            if account not in self._balances:
                return error_reply(404, "unknown_account", f"no account {account!r}"), False
            balance = self._balances[account] = self._balances[account] - amount
            self._debits[rid] = Debit(rid, account, amount, body["usage"], balance)
            self._debit_counts[rid] = self._debit_counts.get(rid, 0) + 1
            if balance < 0:
                self._overdrafts.append(Overdraft(account, rid, balance))
            return json_reply(200, {"balance_micros": balance}), True
