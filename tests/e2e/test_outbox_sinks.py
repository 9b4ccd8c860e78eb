"""Usage events and stored messages reach the platform's sinks through the durable outbox
(docs/integration.md): each settled request sends one usage event to AURA_NETWORK_URL and,
with STORE_MESSAGES, its prompt and answer to AURA_STORAGE_URL, each with
`Idempotency-Key: <event id>`. While a sink is down nothing is lost: when it comes back
every event arrives exactly once, in settlement order per account. An event a sink
refuses (400) is parked as dead, listed in /admin/outbox and delivered on demand, without
holding up the events after it."""

from __future__ import annotations

import os
import time
from typing import Any, Iterator

import anthropic
import openai
import pytest

from tests.fakes import FakeProviderServer
from tests.fakes.sinks import FakeSinks
from tests.harness import RouterProcess, eventually, router_config

# How long the sinks stay down: short in CI, 30 s for the figures in the note
# (OUTAGE_S=30 scripts/test tests/e2e/test_outbox_sinks.py -s).
OUTAGE_S = float(os.environ.get("OUTAGE_S", "2"))
NETWORK_TOKEN, STORAGE_TOKEN = "net-token-" + "n" * 20, "storage-token-" + "s" * 20


@pytest.fixture(scope="module")
def sinks() -> Iterator[FakeSinks]:
    with FakeSinks(usage_token=NETWORK_TOKEN, storage_token=STORAGE_TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def shipping(fake: FakeProviderServer, sinks: FakeSinks,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    with RouterProcess(tmp_path_factory.mktemp("outbox"), config, env={
            "AURA_NETWORK_URL": sinks.base_url, "AURA_NETWORK_TOKEN": NETWORK_TOKEN,
            "AURA_STORAGE_URL": sinks.base_url, "AURA_STORAGE_TOKEN": STORAGE_TOKEN,
            "OUTBOX_RETRY_MAX_S": "1"}) as proc:
        yield proc


@pytest.fixture
def clean_sinks(sinks: FakeSinks) -> Iterator[FakeSinks]:
    sinks.reset()
    yield sinks
    sinks.reset()


def _openai(router: RouterProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0)


def _usage_rows(router: RouterProcess, account: str) -> list[dict[str, Any]]:
    answer = router.admin("GET", f"/admin/usage?account={account}")
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def _outbox(router: RouterProcess, state: str = "") -> dict[str, Any]:
    answer = router.admin("GET", "/admin/outbox" + (f"?state={state}" if state else ""))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_each_request_sends_its_usage_and_its_conversation_once(
        shipping: RouterProcess, clean_sinks: FakeSinks, clean_fake: FakeProviderServer
) -> None:
    account, key = shipping.new_account(1_000_000)
    streamed = "".join(
        chunk.choices[0].delta.content or "" for chunk in _openai(shipping, key)
        .chat.completions.create(model="gpt-4o-mini", max_tokens=8, stream=True,
                                 messages=[{"role": "user", "content": "tell me a story"}])
        if chunk.choices)
    claude = anthropic.Anthropic(base_url=shipping.base_url, api_key=key, max_retries=0)
    message = claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=6,
                                     system="be brief",
                                     messages=[{"role": "user", "content": "hello there"}])
    eventually(lambda: len(clean_sinks.usage_events()) == 2
               and len(clean_sinks.messages()) == 2, what="two usage events and messages")

    rows = {r["request_id"]: r for r in _usage_rows(shipping, account)}
    for event in clean_sinks.usage_events():
        row = rows[event["request_id"]]
        assert event["event_id"] == f"usage.{row['request_id']}"
        assert (event["account"], event["model"], event["cost_micros"],
                event["input_tokens"], event["output_tokens"]) == \
            (account, row["model"], row["cost_micros"], row["input_tokens"],
             row["output_tokens"]), "the event says what the ledger billed"
        assert event["cost_micros"] > 0 and event["status"] == "completed"
        assert event["estimated"] is False, "the fake provider reported its usage"
    chat, claude_stored = clean_sinks.messages()
    assert chat["api"] == "openai.chat" and chat["account"] == account
    assert chat["messages"] == [{"role": "user", "content": "tell me a story"}]
    assert chat["answer"] == streamed != "", "the answer as the client read it"
    assert claude_stored["api"] == "anthropic.messages"
    assert claude_stored["system"] == "be brief"
    assert claude_stored["answer"] == message.content[0].text  # type: ignore[union-attr]
    assert clean_sinks.duplicates == 0 and clean_sinks.conflicts == []
    for call in clean_sinks.deliveries:
        assert call.idempotency_key == call.json["event_id"]
    assert _outbox(shipping)["pending"] == {}, "nothing left behind"


def test_a_sink_down_for_a_while_gets_every_event_once_and_in_order(
        shipping: RouterProcess, clean_sinks: FakeSinks, clean_fake: FakeProviderServer
) -> None:
    accounts = [shipping.new_account(1_000_000) for _ in range(2)]
    clean_sinks.down = "close"
    went_down = time.monotonic()
    sent: dict[str, list[str]] = {account: [] for account, _ in accounts}
    for i in range(6):  # one after the other: the settlement order is the sending order
        account, key = accounts[i % 2]
        sent[account].append(_openai(shipping, key).chat.completions.with_raw_response
                             .create(model="gpt-4o-mini", max_tokens=3,
                                     messages=[{"role": "user", "content": f"n{i}"}])
                             .headers["x-request-id"])
    eventually(lambda: sum(_outbox(shipping)["pending"].values()) == 12,
               what="twelve events waiting")
    eventually(lambda: any(e["attempts"] >= 2 for e in _outbox(shipping)["data"]),
               what="retries while the sink is down")
    time.sleep(max(0.0, went_down + OUTAGE_S - time.monotonic()))
    clean_sinks.down = None
    came_back = time.monotonic()
    eventually(lambda: len(clean_sinks.usage_events()) == 6
               and len(clean_sinks.messages()) == 6, within_s=15,
               what="every event after the sink came back")
    eventually(lambda: _outbox(shipping)["pending"] == {}, what="an empty outbox")
    back_s = time.monotonic() - came_back
    assert clean_sinks.conflicts == [], "a redelivery is the same event"
    attempts = len(clean_sinks.deliveries)
    print(f"\n[sinks] down {time.monotonic() - went_down - back_s:.0f} s with 12 events "
          f"(6 usage, 6 messages) waiting: all 12 stored exactly once "
          f"({clean_sinks.duplicates} duplicate deliveries deduped, {attempts} attempts), "
          f"{back_s:.1f} s after the sinks returned, in settlement order per account")
    for account, settled in sent.items():
        arrived = [e["request_id"] for e in clean_sinks.usage_events()
                   if e["account"] == account]
        assert arrived == settled, "in settlement order per account"
        stored = [e["request_id"] for e in clean_sinks.messages() if e["account"] == account]
        assert stored == settled


def test_a_refused_event_is_parked_listed_and_delivered_on_demand(
        shipping: RouterProcess, clean_sinks: FakeSinks, clean_fake: FakeProviderServer
) -> None:
    account, key = shipping.new_account(1_000_000)
    client = _openai(shipping, key)
    clean_sinks.down = "503"  # both queue up; then the sink refuses the first for good
    first, second = (client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=3, messages=[{"role": "user", "content": text}])
        .headers["x-request-id"] for text in ("one", "two"))
    bad = f"usage.{first}"
    clean_sinks.reject_event(bad, 400)
    clean_sinks.down = None
    eventually(lambda: [e["event_id"] for e in _outbox(shipping, "dead")["data"]] == [bad],
               within_s=10, what="the refused event parked")
    dead = _outbox(shipping, "dead")["data"]
    assert dead[0]["sink"] == "usage" and dead[0]["account"] == account
    assert "400" in dead[0]["last_error"] and NETWORK_TOKEN not in str(dead)
    eventually(lambda: [e["request_id"] for e in clean_sinks.usage_events()] == [second],
               what="the next event, not held up")
    assert shipping.admin("POST", "/admin/outbox/usage.nope/retry").status_code == 404
    clean_sinks.reject_event(bad, None)
    retried = shipping.admin("POST", f"/admin/outbox/{bad}/retry")
    assert retried.status_code == 200, retried.text
    eventually(lambda: bad in [e["event_id"] for e in clean_sinks.usage_events()],
               what="the revived event delivered")
    assert _outbox(shipping, "dead")["data"] == []
    assert any("parked as dead" in line and bad in line for line in shipping.output)
