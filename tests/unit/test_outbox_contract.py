"""The outbox keeps the same promises on every ledger backend (router/ledger/base.py
`Outbox`, docs/integration.md): a settlement queues its events in the same transaction
(derived sinks by configuration, a `messages` event with its transcript), a recovery
after a crash does too, a replayed settlement queues nothing more, claims hand out each
(sink, account) queue's head only, in settlement order, and dead events are kept,
listed and revivable."""

from __future__ import annotations

from router.ledger.base import Checkpoint, Instance, UsageRecord
from router.ledger.stores import Stores
from router.usage import Usage

NOW = 1_000.0


async def _settled(stores: Stores, account: str, request_id: str, cost: int, at: float,
                   transcript: bytes | None = None) -> None:
    await stores.billing.hold(account, request_id, 5_000, at + 3600, at, model="m")
    record = UsageRecord(request_id, account, "m", "oai", Usage(10, 20, reported=True), cost,
                         at)
    await stores.billing.settle(request_id, cost, record, at, transcript)


async def test_settlements_queue_their_events_in_order_per_sink_and_account(
        stores: Stores) -> None:
    outbox = stores.outbox
    await stores.accounts.grant("alice", 100_000, "t", NOW)
    await stores.accounts.grant("bob", 100_000, "t", NOW)
    await _settled(stores, "alice", "before", 10, NOW)
    assert await outbox.claim(NOW + 1, 10, 30) == [], "no sink configured: nothing queued"

    await outbox.configure(frozenset({"usage"}))
    await _settled(stores, "alice", "a1", 100, NOW + 1, transcript=b'{"answer":"hi"}')
    await _settled(stores, "alice", "a2", 200, NOW + 2)
    await _settled(stores, "bob", "b1", 300, NOW + 3)
    replayed = UsageRecord("a2", "alice", "m", "oai", Usage(1, 1), 999, NOW + 4)
    await stores.billing.settle("a2", 999, replayed, NOW + 4, b"again")  # a replay
    assert await outbox.pending() == {"usage": 3, "messages": 1}

    first = await outbox.claim(NOW + 10, 10, 30)
    assert [e.event_id for e in first] == ["usage.a1", "messages.a1", "usage.b1"], \
        "each (sink, account) queue's head only"
    messages = next(e for e in first if e.sink == "messages")
    assert messages.body == b'{"answer":"hi"}' and messages.account == "alice"
    assert all(e.body is None for e in first if e.sink == "usage")
    assert await outbox.claim(NOW + 11, 10, 30) == [], "claimed heads are leased"

    row = await outbox.usage_row("a1")
    assert row is not None and (row["cost_micros"], row["input_tokens"], row["account"],
                                row["started_at"], row["at"]) == (100, 10, "alice",
                                                                  NOW + 1, NOW + 1)
    await outbox.delivered(first[0], NOW + 12)
    await outbox.retry_at(first[2], NOW + 100, "sink answered 503")
    assert [e.event_id for e in await outbox.claim(NOW + 12, 10, 30)] == ["usage.a2"]
    assert [e.event_id for e in await outbox.claim(NOW + 200, 10, 30)] == \
        ["messages.a1", "usage.a2", "usage.b1"], "leases run out; retries come back when due"


async def test_a_dead_event_is_kept_listed_and_revived_without_blocking_its_queue(
        stores: Stores) -> None:
    outbox = stores.outbox
    await outbox.configure(frozenset({"usage", "billing"}))
    await stores.accounts.grant("carol", 100_000, "t", NOW)
    await _settled(stores, "carol", "c1", 10, NOW)
    await _settled(stores, "carol", "c2", 20, NOW + 1)
    heads = await outbox.claim(NOW + 2, 10, 30)
    assert sorted(e.event_id for e in heads) == ["billing.c1", "usage.c1"]
    usage_c1 = next(e for e in heads if e.sink == "usage")
    await outbox.park(usage_c1, "sink answered 400: bad event", NOW + 2)
    dead = await outbox.listing("dead", 10)
    assert [(e.event_id, e.state, e.last_error, e.attempts) for e in dead] == \
        [("usage.c1", "dead", "sink answered 400: bad event", 1)]
    assert [e.event_id for e in await outbox.claim(NOW + 3, 10, 30)] == ["usage.c2"], \
        "a dead event does not hold up the rest of its queue"
    assert await outbox.revive("usage.c1", NOW + 4) is True
    assert await outbox.revive("usage.c1", NOW + 4) is False, "only a dead event"
    assert await outbox.listing("dead", 10) == []
    assert await outbox.pending() == {"usage": 2, "billing": 2}


async def test_a_recovered_hold_queues_its_events_too(stores: Stores) -> None:
    outbox = stores.outbox
    await outbox.configure(frozenset({"usage"}))
    await stores.accounts.grant("dan", 100_000, "t", NOW)
    await stores.billing.register_instance(Instance("dead", "h", 1, NOW, NOW + 1))
    await stores.billing.hold("dan", "d1", 5_000, NOW + 3600, NOW, owner="dead", model="m")
    await stores.billing.checkpoint([Checkpoint("d1", "oai", Usage(10, 5), 77, NOW + 1)])
    await stores.billing.recover("d1", NOW + 20)
    [event] = await outbox.claim(NOW + 21, 10, 30)
    assert event.event_id == "usage.d1"
    row = await outbox.usage_row("d1")
    assert row is not None and row["recovered"] and row["cost_micros"] == 77
    await stores.billing.recover("d1", NOW + 30)  # a replay queues nothing
    await outbox.delivered(event, NOW + 31)
    assert await outbox.pending() == {}
