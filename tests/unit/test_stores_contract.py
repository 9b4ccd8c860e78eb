"""Every ledger backend's stores keep the same promises (router/ledger/base.py), checked
through the interfaces only, for each backend `open_stores` offers: the key store, the
idempotency store, the account book and the usage reports. (Billing itself is checked
against the model by tests/property/test_ledger_machine.py.)"""

from __future__ import annotations

import pytest

from router.errors import InsufficientFunds
from router.ledger.base import UsageRecord
from router.ledger.stores import Stores
from router.usage import Usage


async def test_keys_are_found_by_their_plaintext_only_and_revocation_sticks(
        stores: Stores) -> None:
    key, record = await stores.keys.issue("alice", label="laptop", models=["m"], rpm=5,
                                          spend_cap_micros=100, at=1.0)
    found = await stores.keys.find(key)
    assert found is not None and found.id == record.id and found.models == ("m",)
    assert await stores.keys.find(key + "x") is None
    assert key not in str(record.public()) and key not in repr(record)
    await stores.keys.issue("bob", at=2.0)
    assert [k.id for k in await stores.keys.list("alice")] == [record.id]
    revoked = await stores.keys.revoke(record.id, at=3.0)
    assert revoked is not None and revoked.revoked_at == 3.0
    found = await stores.keys.find(key)
    assert found is not None and not found.usable_at(4.0)
    assert await stores.keys.revoke("key_nope", at=5.0) is None


async def test_an_idempotency_key_is_claimed_once_replayed_after_and_freed_on_failure(
        stores: Stores) -> None:
    claims = stores.idempotency
    assert (await claims.begin("alice", "k", b"{}", "r1", 1.0)).kind == "new"
    assert (await claims.begin("alice", "k", b"{}", "r2", 2.0)).kind == "in_flight"
    assert (await claims.begin("alice", "k", b"{ }", "r2", 2.0)).kind == "mismatch"
    assert (await claims.begin("bob", "k", b"{}", "r3", 2.0)).kind == "new", "per account"
    await claims.finish("alice", "k", 200, "application/json", b'{"ok":1}')
    replay = await claims.begin("alice", "k", b"{}", "r4", 3.0)
    assert (replay.kind, replay.request_id, replay.status, replay.response) == \
        ("replay", "r1", 200, b'{"ok":1}')
    await claims.abandon("bob", "k")
    assert (await claims.begin("bob", "k", b"{}", "r5", 4.0)).kind == "new"


async def test_the_account_book_never_lets_available_go_below_zero(stores: Stores) -> None:
    book = stores.accounts
    assert not await book.exists("carol")
    state = await book.grant("carol", 1_000, "welcome", 1.0)
    assert (state.balance, state.available) == (1_000, 1_000) and await book.exists("carol")
    with pytest.raises(InsufficientFunds):
        await book.grant("carol", -1_001, "too much", 2.0)
    assert (await book.grant("carol", -400, "adjust", 3.0)).balance == 600
    assert await book.open_account("dave", 50, 4.0) is True
    assert await book.open_account("dave", 50, 5.0) is False, "the starting grant once"
    assert (await book.account("dave")).balance == 50
    entries = await book.entries("carol", 0, 10)
    assert [(e.kind, e.amount) for e in entries] == [("grant", 1_000), ("adjust", -400)]
    assert await book.entries("carol", entries[0].seq, 10) == entries[1:]


async def test_usage_reports_follow_what_was_settled(stores: Stores) -> None:
    await stores.accounts.grant("erin", 10_000, "t", 1.0)
    await stores.billing.hold("erin", "r1", 5_000, 99.0, 1.0, key_id="k", key_cap=9_000)
    assert await stores.billing.key_spent("k") == 5_000
    record = UsageRecord("r1", "erin", "m", "p", Usage(10, 20, reported=True), 1_200, 2.0)
    await stores.billing.settle("r1", 1_200, record, 2.0)
    assert await stores.billing.key_spent("k") == 1_200
    assert await stores.reports.spent("erin") == 1_200
    [recent] = await stores.reports.recent_usage("erin", 5)
    assert (recent.request_id, recent.cost_micros, recent.usage.output_tokens) == \
        ("r1", 1_200, 20)
    rows = await stores.reports.usage_rows("erin", None, None, 10)
    assert [(r["request_id"], r["cost_micros"]) for r in rows] == [("r1", 1_200)]
    assert await stores.reports.usage_rows("erin", 3.0, None, 10) == []
    assert await stores.ping()
