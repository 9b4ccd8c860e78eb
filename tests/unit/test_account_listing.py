"""`AccountBook.listing` keeps the same promises on every ledger backend (SQLite,
PostgreSQL, Redis): a prefix is matched literally and case-sensitively (`%`, `_`, `\\`,
upper and lower case, non-ASCII ids), ids come in code point order, a cursor visits
every account once, and each account's figures are `account()`'s. Then what only one
backend can get wrong: Redis's index of ids (kept by the scripts that create accounts,
and filled once with the accounts written before it existed), and the http backend's
balances asked of the credit service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from router.config import load_config
from router.errors import BillingUnavailable
from router.ledger.base import AccountState
from router.ledger.http.client import CreditServiceDown
from router.ledger.http.ledger import HttpBillingLedger
from router.ledger.listing import id_range, prefix_end
from router.ledger.redis import RedisLedger
from router.ledger.sqlite.mirror import SqliteMirror
from router.ledger.stores import Stores, open_stores
from tests.backends import backend_env

# Ids a LIKE, a case-folding collation or a locale's order would get wrong.
TRICKY = ["alice", "Alice", "ALICE", "al%ce", "al_ce", "alXce", "al\\ce", "alic", "a%",
          "a_b", "ab", "zoe", "zoé", "zoë", "Zoë", "zoé-2", "日本", "日本語", "e\u0301",
          "é", "z", "\U0001F600smile", "team 1", "team-1"]


def _expected(ids: list[str], prefix: str | None, after: str | None = None) -> list[str]:
    """What a listing must give, by brute force over every id."""
    return sorted(i for i in ids if (not prefix or i.startswith(prefix))
                  and (after is None or i > after))


async def _make(stores: Stores, ids: list[str]) -> None:
    """Each id created one of the four ways an account comes to be."""
    for n, account in enumerate(ids):
        how = n % 4
        if how == 0:
            await stores.accounts.grant(account, 1_000 + n, "t", 1.0)
        elif how == 1:
            assert await stores.accounts.open_account(account, 500 + n, 1.0)
        elif how == 2:
            await stores.keys.issue(account, at=1.0)
        else:  # a hold of 0 on a new account opens it (as every backend's hold does)
            await stores.billing.hold(account, f"r-open-{n}", 0, 99.0, 1.0)


async def _ids(stores: Stores, prefix: str | None, after: str | None = None,
               limit: int = 1_000) -> list[str]:
    return [s.account for s in await stores.accounts.listing(prefix, after, limit)]


async def test_a_prefix_is_literal_and_case_sensitive(stores: Stores) -> None:
    await _make(stores, TRICKY)
    assert await _ids(stores, None) == sorted(TRICKY), "all, in code point order"
    assert await _ids(stores, "") == sorted(TRICKY), "an empty prefix is none"
    assert await _ids(stores, "al%") == ["al%ce"], "% is not a wildcard"
    assert await _ids(stores, "al_") == ["al_ce"], "_ is not a wildcard"
    assert await _ids(stores, "a_") == ["a_b"]
    assert await _ids(stores, "al\\") == ["al\\ce"], "\\ is not an escape"
    assert await _ids(stores, "A") == ["ALICE", "Alice"], "upper case only"
    assert await _ids(stores, "ali") == ["alic", "alice"], "lower case only"
    assert await _ids(stores, "zo") == ["zoe", "zoé", "zoé-2", "zoë"]
    assert await _ids(stores, "zoé") == ["zoé", "zoé-2"]
    assert await _ids(stores, "Zo") == ["Zoë"]
    assert await _ids(stores, "日本") == ["日本", "日本語"]
    assert await _ids(stores, "é") == ["é"], "precomposed é is not e + U+0301"
    assert await _ids(stores, "e") == ["e\u0301"]
    assert await _ids(stores, "\U0001F600") == ["\U0001F600smile"]
    assert await _ids(stores, "team ") == ["team 1"], "spaces are kept"
    assert await _ids(stores, "nobody") == []
    for prefix in {account[:k] for account in TRICKY for k in range(1, len(account) + 1)}:
        assert await _ids(stores, prefix) == _expected(TRICKY, prefix), prefix


async def test_a_cursor_visits_every_account_once_in_order(stores: Stores) -> None:
    ids = TRICKY + [f"team-{n:02d}" for n in range(23)]
    await _make(stores, ids)
    for prefix, size in ((None, 4), ("team-", 5), ("team-", 1), ("a", 2), ("zo", 3)):
        seen: list[str] = []
        after: str | None = None
        while True:
            page = await _ids(stores, prefix, after, size)
            assert len(page) <= size
            seen += page
            if len(page) < size:
                break
            after = page[-1]
        assert seen == _expected(ids, prefix), (prefix, size)
    # A cursor before the prefix's range starts it at the range; one past it ends it.
    assert await _ids(stores, "team-", "a", 3) == ["team-00", "team-01", "team-02"]
    assert await _ids(stores, "team-", "team-21") == ["team-22"]
    assert await _ids(stores, "team-", "zzz") == []
    assert await _ids(stores, None, "zoë") == _expected(ids, None, "zoë")
    assert await _ids(stores, None, "not-an-account") == _expected(ids, None,
                                                                     "not-an-account")
    assert await stores.accounts.listing(None, None, 0) == []


async def test_the_figures_are_those_account_gives_after_grants_and_a_hold(
        stores: Stores) -> None:
    await _make(stores, TRICKY)
    await stores.accounts.grant("alice", 7_000, "more", 2.0)
    await stores.accounts.grant("alice", -1_500, "adjust", 3.0)
    await stores.billing.hold("alice", "r-held", 2_345, 99.0, 3.0)
    await stores.billing.hold("zoë", "r-zoe", 100, 99.0, 3.0)
    listed = {s.account: s for s in await stores.accounts.listing(None, None, 1_000)}
    alice = listed["alice"]
    assert (alice.balance, alice.held, alice.available) == (6_500, 2_345, 4_155)
    assert listed["zoë"].held == 100
    assert listed["al%ce"].held == 0  # the key's account: nothing granted
    for account, state in listed.items():
        assert state == await stores.accounts.account(account), account
    [page] = await stores.accounts.listing("alice", None, 1)
    assert page == await stores.accounts.account("alice")


def test_the_range_of_a_prefix_is_exactly_the_ids_that_start_with_it() -> None:
    samples = TRICKY + ["", "b", "a\U0010FFFF", "a\U0010FFFFz", "a\U0010FFFF\U0010FFFF",
                        "\ud7ff", "\ud7ffx", "\ue000", "\U0010FFFF"]
    for prefix in ["a", "al%", "zo", "\ud7ff", "a\U0010FFFF", "日", "A"]:
        end = prefix_end(prefix)
        for s in samples:
            inside = prefix <= s and (end is None or s < end)
            assert inside == s.startswith(prefix), (prefix, s, end)
    assert prefix_end("\U0010FFFF") is None and prefix_end("") is None
    assert prefix_end("\ud7ff") == "\ue000", "the next character, past the surrogates"
    span = id_range("team-", "team-03")
    assert (span.low, span.inclusive, span.high) == ("team-03", False, "team.")


# --- Redis: the index of ids ----------------------------------------------------------

@pytest.fixture
async def redis_stores(tmp_path: Path) -> Any:
    opened = open_stores(load_config(env=backend_env("redis", tmp_path), cwd=tmp_path))
    async with opened.session():
        yield opened


async def test_redis_scripts_index_each_account_they_create(redis_stores: Stores) -> None:
    ledger = redis_stores.accounts
    assert isinstance(ledger, RedisLedger)
    assert await ledger.index_accounts() == 0, "an empty Redis: nothing to walk"
    await _make(redis_stores, TRICKY)  # the walk is over: only the scripts index these
    redis = redis_stores.details["redis_session"]
    indexed = await redis.command(b"ZRANGE", ledger.prefix + "accounts", 0, -1)
    assert [i.decode() for i in indexed] == sorted(TRICKY)
    assert await _ids(redis_stores, None) == sorted(TRICKY)


async def test_redis_accounts_written_before_the_index_are_listed(
        redis_stores: Stores) -> None:
    """A Redis an older release wrote: account hashes, no index, no mark. The first
    listing walks the keyspace once; a later one does not walk it again."""
    ids = TRICKY + [f"old-{n:04d}" for n in range(2_500)]  # more than one SCAN page
    redis = redis_stores.details["redis_session"]
    prefix = redis_stores.accounts.prefix  # type: ignore[attr-defined]
    await _make(redis_stores, TRICKY)
    await redis.command(b"DEL", prefix + "accounts", prefix + "accounts:indexed")
    for n, account in enumerate(ids[len(TRICKY):]):
        await redis.command(b"HSET", prefix + "acct:" + account, "balance", str(n),
                            "held", "0", "created_at", "1.0")
    fresh = RedisLedger(redis)  # another process: it has not seen the mark
    assert await _ids_of(fresh, None) == sorted(ids)
    assert await _ids_of(fresh, "old-00") == [f"old-{n:04d}" for n in range(100)]
    assert (await fresh.listing("old-0042", None, 5))[0] == \
        AccountState("old-0042", 42, 0)
    assert await RedisLedger(redis).index_accounts() == 0, "marked: not walked again"
    # An older release's router writes an account the index does not get: listed once
    # the mark is deleted (the next listing walks again) or the walk is asked for.
    await redis.command(b"HSET", prefix + "acct:late", "balance", "1", "held", "0")
    assert "late" not in await _ids_of(fresh, None)
    await redis.command(b"DEL", prefix + "accounts:indexed")
    assert "late" in await _ids_of(fresh, None)
    await redis.command(b"HSET", prefix + "acct:later", "balance", "1", "held", "0")
    assert await fresh.index_accounts(again=True) >= len(ids) + 2  # SCAN may repeat a key
    assert await _ids_of(fresh, "late") == ["late", "later"]


async def _ids_of(ledger: RedisLedger, prefix: str | None) -> list[str]:
    return [s.account for s in await ledger.listing(prefix, None, 10_000)]


# --- http: balances at the credit service ---------------------------------------------

class _Service:
    """The credit service's `GET /v1/accounts/{account}`, in memory."""

    def __init__(self, balances: dict[str, AccountState]) -> None:
        self.balances = balances
        self.down = False
        self.asked: list[str] = []

    async def account(self, account: str) -> AccountState | None:
        self.asked.append(account)
        if self.down:
            raise CreditServiceDown("no answer")
        return self.balances.get(account)


async def test_http_lists_local_accounts_with_the_services_balances(tmp_path: Path) -> None:
    local = open_stores(load_config(env=backend_env("sqlite", tmp_path), cwd=tmp_path))
    db = local.billing.db  # type: ignore[attr-defined]
    service = _Service({"bob": AccountState("bob", 9_000, 1_000),
                        "carol": AccountState("carol", 50, 0),
                        "only-at-the-service": AccountState("only-at-the-service", 1, 0)})
    ledger = HttpBillingLedger(local.billing, SqliteMirror(db),  # type: ignore[arg-type]
                               service, "two_phase")  # type: ignore[arg-type]
    for account in ("carol", "bob", "dave"):
        await ledger.open_account(account, 0, 1.0)
    listed = await ledger.listing(None, None, 10)
    assert listed == [AccountState("bob", 9_000, 1_000), AccountState("carol", 50, 0),
                      AccountState("dave", 0, 0)]
    for state in listed:
        assert state == await ledger.account(state.account)
    assert await ledger.listing("c", None, 10) == [AccountState("carol", 50, 0)]
    assert [s.account for s in await ledger.listing(None, "bob", 1)] == ["carol"]
    service.down = True
    with pytest.raises(BillingUnavailable):
        await ledger.listing(None, None, 10)
    local.close()
