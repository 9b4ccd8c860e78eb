"""The Redis ledger: the `LedgerModel` rules as Lua scripts (billing, accounts, usage
reports), one round trip per operation.

Each hold, checkpoint batch, settlement, recovery, grant and account opening is one
script (router/ledger/redis/scripts.py), so a hold's check of `available` (and of the
key's spend cap) and its write are atomic across every router instance (I3), and a
settlement keyed by request id returns its first result on a replay (I4). Reads of one
key are one plain command; reads across keys are one script.

A settlement (or a recovery) also queues its outbox events in its own script
(outbox.py).

Account listings read `accounts`, a sorted set of every id with all scores 0 (so
ZRANGEBYLEX gives ids in byte order, the order of every backend, and a prefix is one
range of it: router/ledger/listing.py). The script that creates an account adds it there
in the same atomic step. Accounts written before that index existed are added once by
`index_accounts` (a SCAN of `acct:*`), run by a listing when its script finds no
`accounts:indexed` mark; the mark is set only once the whole keyspace was walked, so a
listing is never served from a half-built index, two routers walking at once only
repeat idempotent ZADDs, and accounts created meanwhile are indexed by their scripts.
Each listing checks the mark inside its script (no extra round trip). (A router of an
older release, running beside this one during an upgrade, still creates accounts
without indexing them: delete `accounts:indexed` once the last one has stopped, and the
next listing walks the keyspace again.)

Entries are a stream per account whose ids are the account's own entry numbers (`seq`
counts per account, not across the ledger as in SQLite). Usage rows are kept by request
id and indexed by `at`, so exports come out in `at` order (ties by request id) however
late a request settles.
"""

from __future__ import annotations

from typing import Any

import orjson

from router.errors import (DuplicateRequest, InsufficientFunds, LedgerError, SpendCapReached,
                           UnknownRequest)
from router.ledger.base import (AccountState, Checkpoint, Entry, Instance, LeasedHold,
                                Settlement, UsageRecord, UsageTotal)
from router.ledger.export import row_dict
from router.ledger.listing import id_range
from router.ledger.redis import scripts
from router.ledger.redis.client import RedisSession
from router.ledger.totals import Part, added_up, check, edge
from router.usage import Usage

# The largest integer a Lua number holds exactly: money beyond it is refused.
MAX_MICROS = 2**53 - 1
USAGE_PAGE = 5_000  # usage rows per script call of an export
TOTALS_PAGE = 2_000  # usage rows added up per script call of `usage_totals` (~10 ms)
SCAN_COUNT = 1_000  # keys looked at per SCAN while indexing the accounts written before
_GLOB_SPECIAL = frozenset("*?[]\\")


def money(value: object, what: str = "amount") -> str:
    """An integer number of micro-USD as the scripts take it; never a float."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise LedgerError(f"{what} must be an integer number of micro-USD")
    if abs(value) > MAX_MICROS:
        raise LedgerError(f"{what} is beyond {MAX_MICROS} micro-USD")
    return str(value)


def when(value: float) -> str:
    """A time as the scripts store it: exact, read back with float()."""
    return repr(float(value))


def opt(value: str | None) -> str:
    """An optional string for a script: "" for None, else "+" and the value."""
    return "" if value is None else "+" + value


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def text_or_none(value: bytes | str | None) -> str | None:
    return None if value is None else text(value)


def pairs(reply: Any) -> dict[str, Any]:
    """A hash as HGETALL gives it (a map in RESP3, a flat list from a script)."""
    if isinstance(reply, dict):
        return {text(k): v for k, v in reply.items()}
    return {text(reply[i]): reply[i + 1] for i in range(0, len(reply or ()), 2)}


def glob_literal(literal: str) -> str:
    """`literal` as a MATCH pattern that matches itself only."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in literal)


def _lex_bounds(prefix: str | None, after: str | None) -> tuple[str, str]:
    """ZRANGEBYLEX's min and max for the ids of a listing."""
    span = id_range(prefix, after)
    low = "-" if span.low is None else ("[" if span.inclusive else "(") + span.low
    return low, "+" if span.high is None else "(" + span.high


def _refusal(reply: list[Any], request_id: str) -> LedgerError | None:
    kind = text(reply[0])
    if kind == "insufficient":
        return InsufficientFunds(int(reply[1]), int(reply[2]))
    if kind == "cap":
        return SpendCapReached(int(reply[1]), int(reply[2]))
    if kind == "duplicate":
        return DuplicateRequest(request_id)
    if kind == "unknown":
        return UnknownRequest(request_id)
    if kind == "negative":
        return LedgerError("a cost cannot be negative")
    return None


def usage_values(raw: bytes) -> tuple[Any, ...]:
    """A stored row (strings, in the export's column order) as typed values."""
    r = orjson.loads(raw)
    return (r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), int(r[6]), int(r[7]), int(r[8]),
            r[9] == "1", int(r[10]), float(r[11]), int(r[12]), r[13] == "1")


def _usage_record(r: tuple[Any, ...]) -> UsageRecord:
    return UsageRecord(r[0], r[1], r[2], r[3], Usage(r[4], r[5], r[6], r[7], r[8], r[9]),
                       r[10], r[11], r[12], r[13])


def _entry(account: str, item: Any) -> Entry:
    entry_id, fields = item
    f = pairs(fields)
    return Entry(int(text(entry_id).partition("-")[0]), account, text(f["kind"]),
                 int(f["amount"]), int(f["held_delta"]), text_or_none(f.get("request_id")),
                 int(f["balance_after"]), text_or_none(f.get("reason")), float(f["at"]))


class RedisLedger:
    """`BillingLedger`, `AccountBook` and `UsageReports` over a `RedisSession`."""

    def __init__(self, redis: RedisSession) -> None:
        self.redis = redis
        self.prefix = redis.prefix

    @staticmethod
    def _state(reply: list[Any], account: str, request_id: str = "") -> AccountState:
        refused = _refusal(reply, request_id)
        if refused is not None:
            raise refused
        return AccountState(account, int(reply[1]), int(reply[2]))

    # --- accounts -------------------------------------------------------------------

    async def grant(self, account: str, amount: int, reason: str | None,
                    at: float) -> AccountState:
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            raise LedgerError("amount must be a non-zero integer number of micro-USD")
        reply = await self.redis.script(scripts.GRANT, account, money(amount), opt(reason),
                                        when(at))
        return self._state(reply, account)

    async def open_account(self, account: str, starting_grant: int, at: float) -> bool:
        return bool(await self.redis.script(scripts.OPEN_ACCOUNT, account,
                                            money(starting_grant, "starting grant"),
                                            when(at)))

    async def account(self, account: str) -> AccountState:
        balance, held = await self.redis.command(b"HMGET", self.prefix + "acct:" + account,
                                                 "balance", "held")
        return AccountState(account, int(balance or 0), int(held or 0))

    async def exists(self, account: str) -> bool:
        return bool(await self.redis.command(b"EXISTS", self.prefix + "acct:" + account))

    async def listing(self, prefix: str | None, after: str | None,
                      limit: int) -> list[AccountState]:
        """One script: the ids' range of the `accounts` index and each one's figures,
        read together (the figures `account()` reads)."""
        if limit < 1:
            return []
        low, high = _lex_bounds(prefix, after)
        reply = await self.redis.script(scripts.LIST_ACCOUNTS, low, high, str(limit))
        while text(reply[0]) == "unindexed":  # once per Redis (or per deleted mark)
            await self.index_accounts()
            reply = await self.redis.script(scripts.LIST_ACCOUNTS, low, high, str(limit))
        return [AccountState(text(a), int(balance), int(held))
                for a, balance, held in reply[1]]

    async def index_accounts(self, *, again: bool = False) -> int:
        """Add the accounts written before the `accounts` index existed (or by an older
        release) to it, unless `accounts:indexed` says that was done (`again`: even
        so); the number of account keys looked at. Idempotent: ZADD NX of what is
        there, then the mark."""
        mark = self.prefix + "accounts:indexed"
        if not again and await self.redis.command(b"EXISTS", mark):
            return 0
        head = (self.prefix + "acct:").encode()
        pattern = glob_literal(self.prefix + "acct:") + "*"
        cursor: Any = b"0"
        seen = 0
        while True:
            cursor, keys = await self.redis.command(b"SCAN", cursor, b"MATCH", pattern,
                                                    b"COUNT", SCAN_COUNT)
            ids = [key[len(head):] for key in keys if key.startswith(head)]
            if ids:
                await self.redis.command(b"ZADD", self.prefix + "accounts", b"NX",
                                         *(part for i in ids for part in (b"0", i)))
            seen += len(ids)
            if int(cursor) == 0:
                break
        await self.redis.command(b"SET", mark, b"1")
        return seen

    async def entries(self, account: str, after: int = 0, limit: int = 100) -> list[Entry]:
        if limit == 0:
            return []
        start = str(after + 1) if after >= 0 else "-"
        count = ("COUNT", limit) if limit > 0 else ()  # negative: all (as SQLite's LIMIT)
        items = await self.redis.command(b"XRANGE", self.prefix + "entries:" + account,
                                         start, "+", *count)
        return [_entry(account, item) for item in items or ()]

    async def open_holds(self, account: str | None = None
                         ) -> list[tuple[str, str, int, float]]:
        return [(rid, acct, amount, deadline) for rid, acct, amount, deadline, _owner
                in await self._holds(account)]

    async def _holds(self, account: str | None
                     ) -> list[tuple[str, str, int, float, str | None]]:
        reply = await self.redis.script(scripts.OPEN_HOLDS, opt(account))
        return [(text(h[0]), text(h[1]), int(h[2]), float(h[3]),
                 text_or_none(h[4]) if len(h) > 4 else None) for h in reply]

    # --- billing --------------------------------------------------------------------

    async def hold(self, account: str, request_id: str, amount: int, deadline: float,
                   at: float, *, key_id: str | None = None, key_cap: int | None = None,
                   owner: str | None = None, model: str = "") -> AccountState:
        money(amount)
        if amount < 0:
            raise LedgerError("a hold cannot be negative")
        cap = money(key_cap, "key_cap") if key_cap is not None else ""
        reply = await self.redis.script(scripts.HOLD, account, request_id, str(amount),
                                        when(deadline), when(at), opt(key_id), cap,
                                        opt(owner), model)
        return self._state(reply, account, request_id)

    async def checkpoint(self, points: list[Checkpoint]) -> None:
        if not points:
            return
        args: list[str] = []
        for p in points:
            u = p.usage
            args += (p.request_id, p.provider, str(u.input_tokens), str(u.output_tokens),
                     str(u.cache_read_tokens), str(u.cache_write_tokens),
                     str(u.reasoning_tokens), "1" if u.reported else "0",
                     money(p.cost_micros, "cost"), when(p.at))
        await self.redis.script(scripts.CHECKPOINT, *args)

    async def settle(self, request_id: str, cost_micros: int, record: UsageRecord,
                     at: float, transcript: bytes | None = None) -> Settlement:
        """One script: the settlement, its usage row and its outbox events (outbox.py):
        one per configured derived sink and, with `transcript`, a `messages` event."""
        u = record.usage
        reply = await self.redis.script(
            scripts.SETTLE, request_id, money(cost_micros, "cost"), when(at), record.account,
            record.model, record.provider, str(u.input_tokens), str(u.output_tokens),
            str(u.cache_read_tokens), str(u.cache_write_tokens), str(u.reasoning_tokens),
            "1" if u.reported else "0", when(record.at), "1" if record.recovered else "0",
            b"" if transcript is None else b"+" + bytes(transcript))
        return self._settlement(reply, request_id)

    async def recover(self, request_id: str, at: float) -> Settlement:
        return self._settlement(await self.redis.script(scripts.RECOVER, request_id, when(at)),
                                request_id)

    @staticmethod
    def _settlement(reply: list[Any], request_id: str) -> Settlement:
        refused = _refusal(reply, request_id)
        if refused is not None:
            raise refused
        return Settlement(request_id, int(reply[1]), int(reply[2]), int(reply[3]),
                          int(reply[4]), replay=text(reply[0]) == "replay")

    async def key_spent(self, key_id: str) -> int:
        return int(await self.redis.command(b"GET", self.prefix + "keyspend:" + key_id) or 0)

    async def leased_holds(self) -> list[LeasedHold]:
        return [LeasedHold(rid, owner, deadline)
                for rid, _account, _amount, deadline, owner in await self._holds(None)]

    # --- instances and leases -------------------------------------------------------

    async def register_instance(self, instance: Instance) -> None:
        info = orjson.dumps({"host": instance.host, "pid": instance.pid,
                             "started_at": instance.started_at})
        await self.redis.script(scripts.REGISTER_INSTANCE, instance.id, info,
                                when(instance.lease_until))

    async def renew_lease(self, instance_id: str, until: float) -> None:
        await self.redis.script(scripts.RENEW_LEASE, instance_id, when(until))

    async def instances(self) -> list[Instance]:
        infos, leases = await self.redis.script(scripts.INSTANCES)
        lease_of = pairs(leases)
        out = []
        for instance_id, raw in pairs(infos).items():
            info = orjson.loads(raw)
            out.append(Instance(instance_id, info["host"], info["pid"], info["started_at"],
                                float(lease_of[instance_id])))
        return sorted(out, key=lambda i: i.id)

    # --- usage reports --------------------------------------------------------------

    async def spent(self, account: str) -> int:
        return int(await self.redis.command(b"HGET", self.prefix + "acct:" + account,
                                            "spent") or 0)

    async def recent_usage(self, account: str, limit: int = 20) -> list[UsageRecord]:
        if limit == 0:
            return []
        # 0 asks the script for all: what a negative limit means (as SQLite's LIMIT)
        reply = await self.redis.script(scripts.RECENT_USAGE, account, str(max(limit, 0)))
        return [_usage_record(usage_values(raw)) for raw in reply]

    async def usage_rows(self, account: str | None, since: float | None,
                         until: float | None, limit: int) -> list[dict[str, Any]]:
        """Pages of `USAGE_PAGE` rows, one script each, so that a 100 000-row export
        never holds Redis for long; each page resumes after the last row it gave."""
        rows: list[tuple[Any, ...]] = []
        limit = limit if limit >= 0 else 2**62  # negative: all (as SQLite's LIMIT)
        low = "-inf" if since is None else when(since)
        high = "+inf" if until is None else "(" + when(until)
        after: str | None = None
        while len(rows) < limit:
            want = min(USAGE_PAGE, limit - len(rows))
            page = [usage_values(raw) for raw in await self.redis.script(
                scripts.USAGE_PAGE, opt(account), low, high, str(want), opt(after))]
            rows += page
            if len(page) < want:
                break
            low, after = when(page[-1][11]), page[-1][0]
        return [row_dict(r) for r in rows]

    async def usage_totals(self, since: float, bucket_s: int,
                           buckets: int) -> list[UsageTotal]:
        """A walk through `usage:by_at` (the index of every row by `at`) over the window,
        in pages of `TOTALS_PAGE` rows, each added up by one script (`USAGE_TOTALS`)
        next to the rows: only a page's sums per bucket and model leave Redis, not its
        rows, and Redis is held for one page at a time (measured here: ~5 µs a row,
        ~10 ms a page), however long the window. Each page resumes after the last row the
        previous one read (as `usage_rows`), so no row is added twice.

        The cost is one pass over the window's rows per call (a day of 200 000 calls:
        ~1.3 s, in 100 slices). Redis keeps no running sums by time that settlements
        could update instead: a bucket of any `since` and `bucket_s` could not be read
        from them exactly."""
        check(since, bucket_s, buckets)
        if buckets == 0:
            return []
        end = "(" + when(edge(since, bucket_s * buckets))
        start, after = when(since), None
        parts: list[Part] = []
        while True:
            found, last, score, count = await self.redis.script(
                scripts.USAGE_TOTALS, when(since), str(bucket_s), str(buckets), start,
                end, str(TOTALS_PAGE), opt(after))
            parts += [(int(k), text(model), int(calls), int(billed), int(cost),
                       int(inputs), int(outputs))
                      for k, model, calls, billed, cost, inputs, outputs in found]
            if int(count) < TOTALS_PAGE:
                return added_up(parts)
            start, after = text(score), text(last)

    async def ping(self) -> bool:
        return await self.redis.command(b"PING") in (b"PONG", "PONG", True)
