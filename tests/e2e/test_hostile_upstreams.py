"""Money against upstreams that misbehave: the router enforces the limit it held for,
multiplies the hold by `n`, shows the client its bill when the upstream reports none,
hides an upstream that fails before its first content, and lowers a limit the account
cannot afford (docs/billing.md).

Every test checks the same promise through the real server and the official SDKs:
capture <= hold, and the ledger's usage row is what the client was told.
"""

from __future__ import annotations

from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, ant, oai, router_config, words

MESSAGES = [{"role": "user", "content": "hello there"}]
ENDLESS = 10**9


@pytest.fixture(scope="module")
def healthy() -> Iterator[FakeProviderServer]:
    """A second, well-behaved upstream to fail over to."""
    with FakeProviderServer() as server:
        yield server


@pytest.fixture(scope="module")
def hostile_router(fake: FakeProviderServer, healthy: FakeProviderServer,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    extra = f"""
[[providers]]
name = "local"
kind = "openai_compatible"
base_url = "{fake.openai_base_url}"
timeout_connect_s = 2
timeout_idle_s = 5

[[providers]]
name = "good"
kind = "anthropic"
base_url = "{healthy.anthropic_base_url}"
api_keys = ["sk-ant-good"]

[[models]]
id = "llama"
route = ["local:llama-3"]
input_per_mtok = "1"
output_per_mtok = "2"
max_output_tokens = 4096

[[models]]
id = "claude-with-backup"
route = ["ant:claude-haiku-4-5", "good:claude-haiku-4-5"]
input_per_mtok = "1"
output_per_mtok = "5"
max_output_tokens = 64000
"""
    config = router_config(fake.openai_base_url, fake.anthropic_base_url, extra)
    with RouterProcess(tmp_path_factory.mktemp("hostile"), config) as proc:
        yield proc


def usage_row(router: RouterProcess, key: str, request_id: str) -> dict[str, Any]:
    rows = [r for r in router.usage(key)["recent"] if r["request_id"] == request_id]
    assert len(rows) == 1, f"one usage row for {request_id}"
    return rows[0]


def money(router: RouterProcess, account: str, request_id: str) -> tuple[int, int]:
    """(hold, capture) of one request, from the ledger."""
    entries = [e for e in router.ledger(account) if e["request_id"] == request_id]
    hold = sum(e["held_delta_micros"] for e in entries if e["kind"] == "hold")
    capture = -sum(e["amount_micros"] for e in entries if e["kind"] == "capture")
    assert sum(e["held_delta_micros"] for e in entries) == 0, "no hold left open"
    return hold, capture


def billed_as_told(router: RouterProcess, account: str, key: str,
                   request_id: str) -> dict[str, Any]:
    """capture <= hold, and the usage row bills the capture; the row, to compare with what
    the client was told."""
    hold, capture = money(router, account, request_id)
    row = usage_row(router, key, request_id)
    assert 0 < capture <= hold and row["cost_micros"] == capture
    return row


def endless(fake: FakeProviderServer) -> None:
    """An upstream that ignores every limit and would stream forever."""
    fake.state.ignore_limits = True
    fake.state.reply_words = ENDLESS


# --- the router ends what the upstream will not -------------------------------------------

@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5"],
                         ids=["passed-through", "translated-from-anthropic"])
def test_an_upstream_that_ignores_limits_and_streams_forever_is_cut_at_the_limit(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer, model: str) -> None:
    endless(clean_fake)
    account, key = hostile_router.new_account(5_000_000)
    client = oai(hostile_router, key)
    with client.chat.completions.with_streaming_response.create(
            model=model, messages=MESSAGES, max_tokens=20, stream=True,
            stream_options={"include_usage": True}) as raw:
        request_id = raw.headers["x-request-id"]
        chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices
                and c.choices[0].finish_reason]
    assert text == words(20) and finishes == ["length"], "a normal end, at the limit"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 20
    assert getattr(usage, "estimated", None) is True, "the router's count, marked"
    row = billed_as_told(hostile_router, account, key, request_id)
    assert (row["input_tokens"] + row["cache_read_tokens"], row["output_tokens"]) == (
        usage.prompt_tokens, 20)


def test_anthropic_sdk_sees_max_tokens_when_the_router_cuts(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    endless(clean_fake)
    account, key = hostile_router.new_account(5_000_000)
    client = ant(hostile_router, key)
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=32,
                                messages=MESSAGES) as stream:
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert final.stop_reason == "max_tokens"
    assert final.content[0].text == words(32)  # type: ignore[union-attr]
    assert final.usage.output_tokens == 32
    row = billed_as_told(hostile_router, account, key, request_id)
    assert (row["input_tokens"], row["output_tokens"]) == (final.usage.input_tokens, 32)


def test_a_translated_stream_is_cut_in_the_clients_format(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    endless(clean_fake)
    account, key = hostile_router.new_account(5_000_000)
    client = ant(hostile_router, key)
    with client.messages.stream(model="llama", max_tokens=16, messages=MESSAGES) as stream:
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 16
    sent = clean_fake.state.last
    assert sent is not None and sent.body["max_tokens"] == 16, "compatible servers: max_tokens"
    assert "max_completion_tokens" not in sent.body
    assert billed_as_told(hostile_router, account, key, request_id)["output_tokens"] == 16


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5"],
                         ids=["passed-through", "translated-from-anthropic"])
def test_responses_stream_ends_incomplete_at_the_limit(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer, model: str) -> None:
    endless(clean_fake)
    account, key = hostile_router.new_account(5_000_000)
    client = oai(hostile_router, key)
    with client.responses.stream(model=model, input="hello", max_output_tokens=24) as stream:
        events = list(stream)
    final = events[-1]
    assert final.type == "response.incomplete"
    assert final.response.incomplete_details.reason == "max_output_tokens"
    assert final.response.usage.output_tokens == 24
    assert final.response.output_text == words(24), "the SDK keeps what streamed"
    rows = hostile_router.usage(key)["recent"]  # the account's only request
    assert len(rows) == 1 and rows[0]["output_tokens"] == 24
    billed_as_told(hostile_router, account, key, rows[0]["request_id"])


def test_a_whole_answer_over_the_limit_is_billed_at_most_the_hold(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.ignore_limits = True
    clean_fake.state.reply_words = 400
    account, key = hostile_router.new_account(5_000_000)
    client = oai(hostile_router, key)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    hold, capture = money(hostile_router, account, raw.headers["x-request-id"])
    assert capture == hold, "the hold is all the platform can charge"
    assert raw.parse().usage.completion_tokens == 400  # type: ignore[union-attr]
    exported = hostile_router.admin("GET", f"/admin/usage?account={account}").json()["data"]
    assert [(r["cost_micros"], r["output_tokens"]) for r in exported] == [(capture, 400)]
    assert exported[0]["overrun_micros"] > 0, "the platform's loss is visible"


# --- n choices -------------------------------------------------------------------------------

def test_n_choices_multiply_the_hold(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.honour_n = True
    clean_fake.state.reply_words = 200
    account, key = hostile_router.new_account(5_000_000)
    client = oai(hostile_router, key)
    one = client.chat.completions.with_raw_response.create(
        model="llama", messages=MESSAGES, max_tokens=100)
    eight = client.chat.completions.with_raw_response.create(
        model="llama", messages=MESSAGES, max_tokens=100, n=8)
    answer = eight.parse()
    assert len(answer.choices) == 8 and answer.usage.completion_tokens == 800  # type: ignore
    hold_1, _ = money(hostile_router, account, one.headers["x-request-id"])
    hold_8, capture_8 = money(hostile_router, account, eight.headers["x-request-id"])
    output_price = 2  # micro-USD per token at 2 USD per million
    assert hold_8 - hold_1 == 7 * 100 * output_price, "seven more choices of 100 tokens"
    row = usage_row(hostile_router, key, eight.headers["x-request-id"])
    assert capture_8 <= hold_8 and row["output_tokens"] == 800 and row["cost_micros"] == capture_8


def test_n_streams_are_cut_at_n_times_the_limit(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.honour_n = clean_fake.state.ignore_limits = True
    clean_fake.state.reply_words = ENDLESS
    account, key = hostile_router.new_account(5_000_000)
    client = oai(hostile_router, key)
    with client.chat.completions.with_streaming_response.create(
            model="llama", messages=MESSAGES, max_tokens=10, n=3, stream=True,
            stream_options={"include_usage": True}) as raw:
        chunks = list(raw.parse())
        request_id = raw.headers["x-request-id"]
    finished = {c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason}
    assert finished == {0, 1, 2} and chunks[-1].usage.completion_tokens == 30  # type: ignore
    hold, capture = money(hostile_router, account, request_id)
    assert 0 < capture <= hold


# --- the client always sees its bill ----------------------------------------------------------

@pytest.mark.parametrize("mode", ["none", "zero_input"])
def test_openai_clients_see_the_routers_count_when_the_upstream_reports_none(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer, mode: str) -> None:
    clean_fake.state.usage_mode = mode
    _, key = hostile_router.new_account(5_000_000)
    client = oai(hostile_router, key)
    with client.chat.completions.with_streaming_response.create(
            model="llama", messages=MESSAGES, stream=True,
            stream_options={"include_usage": True}) as raw:
        chunks = list(raw.parse())
        request_id = raw.headers["x-request-id"]
    usage = chunks[-1].usage
    assert usage is not None and getattr(usage, "estimated", None) is True
    row = usage_row(hostile_router, key, request_id)
    assert usage.prompt_tokens == row["input_tokens"] > 0
    assert usage.completion_tokens == row["output_tokens"] == 12
    whole = client.chat.completions.with_raw_response.create(model="llama", messages=MESSAGES)
    row = usage_row(hostile_router, key, whole.headers["x-request-id"])
    shown = whole.parse().usage
    assert shown is not None and (shown.prompt_tokens, shown.completion_tokens) == (
        row["input_tokens"], row["output_tokens"]) and row["input_tokens"] > 0


@pytest.mark.parametrize("mode", ["none", "zero_input"])
def test_anthropic_clients_see_the_routers_count_when_the_upstream_reports_none(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer, mode: str) -> None:
    clean_fake.state.usage_mode = mode
    _, key = hostile_router.new_account(5_000_000)
    client = ant(hostile_router, key)
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=100,
                                messages=MESSAGES) as stream:
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    row = usage_row(hostile_router, key, request_id)
    assert final.usage.input_tokens == row["input_tokens"] > 0
    assert final.usage.output_tokens == row["output_tokens"] == 12
    assert row["cost_micros"] > 0
    raw = client.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=100,
                                                   messages=MESSAGES)
    row = usage_row(hostile_router, key, raw.headers["x-request-id"])
    shown = raw.parse().usage
    assert (shown.input_tokens, shown.output_tokens) == (row["input_tokens"],
                                                         row["output_tokens"])


# --- failing before the first content ------------------------------------------------------

def test_an_error_before_any_content_is_a_typed_error_with_its_status(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.error_before_content = "overloaded_error"
    account, key = hostile_router.new_account(1_000_000)
    client = ant(hostile_router, key)
    with pytest.raises(anthropic.APIStatusError) as raised:
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=50,
                                    messages=MESSAGES) as stream:
            stream.get_final_message()
    assert raised.value.status_code == 503
    assert hostile_router.account(account)["balance_micros"] == 1_000_000, "it cost nothing"
    clean_fake.state.error_before_content = "server_error"
    chat = oai(hostile_router, key)
    with pytest.raises(openai.APIStatusError) as failed:
        list(chat.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert failed.value.status_code == 502


def test_an_error_or_a_cut_before_content_fails_over_to_the_next_target(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer,
        healthy: FakeProviderServer) -> None:
    _, key = hostile_router.new_account(1_000_000)
    client = ant(hostile_router, key)
    for fault in ("error", "cut"):
        clean_fake.state.reset()
        if fault == "error":
            clean_fake.state.error_before_content = "overloaded_error"
        else:
            clean_fake.state.cut_after_chunks = 0
        with client.messages.stream(model="claude-with-backup", max_tokens=50,
                                    messages=MESSAGES) as stream:
            final = stream.get_final_message()
            assert stream.response.headers["x-aura-provider"] == "good", fault
        assert final.content[0].text == words(12)  # type: ignore[union-attr]
        assert final.stop_reason == "end_turn"


# --- what the account can afford ----------------------------------------------------------

def test_an_unaffordable_limit_is_lowered_and_said_so(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reply_words = 50
    account, key = hostile_router.new_account(20_000)  # $0.02: not 64 000 tokens at $5/M
    r = httpx.post(hostile_router.base_url + "/v1/messages", headers={"x-api-key": key},
                   json={"model": "claude-with-backup", "max_tokens": 64000,
                         "messages": MESSAGES}, timeout=10)
    assert r.status_code == 200, r.text
    lowered = int(r.headers["x-aura-max-tokens"])
    assert 256 <= lowered < 64000
    assert clean_fake.state.last is not None
    assert clean_fake.state.last.body["max_tokens"] == lowered, "enforced upstream too"
    hold, capture = money(hostile_router, account, r.headers["x-request-id"])
    assert hold <= 20_000 and 0 < capture <= hold


def test_below_the_minimum_output_it_is_a_402(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = hostile_router.new_account(1_000)  # 1 000 µUSD: fewer than 256 tokens at $5/M
    r = httpx.post(hostile_router.base_url + "/v1/messages", headers={"x-api-key": key},
                   json={"model": "claude-with-backup", "max_tokens": 64000,
                         "messages": MESSAGES}, timeout=10)
    assert r.status_code == 402, r.text
    assert r.headers["x-should-retry"] == "false"
    assert clean_fake.state.snapshot() == [], "nothing was sent upstream"


def test_strict_policy_refuses_what_affordable_lowers(
        fake: FakeProviderServer, clean_fake: FakeProviderServer,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    with RouterProcess(tmp_path_factory.mktemp("strict"), config,
                       env={"HOLD_POLICY": "strict"}) as strict:
        _, key = strict.new_account(20_000)
        r = httpx.post(strict.base_url + "/v1/messages", headers={"x-api-key": key},
                       json={"model": "claude-haiku-4-5", "max_tokens": 64000,
                             "messages": MESSAGES}, timeout=10)
        assert r.status_code == 402 and "insufficient credits" in r.text
        assert clean_fake.state.snapshot() == []
        client = ant(strict, key)
        answer = client.messages.create(model="claude-haiku-4-5", max_tokens=100,
                                        messages=MESSAGES)
        assert answer.stop_reason == "end_turn"


# --- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("n", 0), ("n", -3), ("n", 1000), ("n", 2.5),
                                         ("n", "2"), ("max_tokens", 10**30),
                                         ("max_completion_tokens", "many")])
def test_bad_multipliers_and_limits_are_400s_naming_the_field(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer, field: str,
        value: Any) -> None:
    account, key = hostile_router.new_account(1_000_000)
    client = oai(hostile_router, key)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                       extra_body={field: value})
    assert raised.value.body["param"] == field  # type: ignore[index]
    assert clean_fake.state.snapshot() == []
    assert hostile_router.ledger(account)[-1]["kind"] == "grant", "nothing held"


# --- translated answers, compatible servers, the websocket bill ----------------------------

def test_compatible_servers_get_text_arrays_as_strings_and_max_tokens(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.honour_only_max_tokens = True  # llama.cpp
    _, key = hostile_router.new_account(5_000_000)
    client = oai(hostile_router, key)
    answer = client.chat.completions.create(model="llama", max_completion_tokens=5, messages=[
        {"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
        {"role": "user", "content": [{"type": "text", "text": "Say"},
                                     {"type": "text", "text": "hello"}]}])
    sent = clean_fake.state.last
    assert sent is not None
    assert [m["content"] for m in sent.body["messages"]] == ["You are terse.", "Say\nhello"]
    assert sent.body["max_tokens"] == 5 and "max_completion_tokens" not in sent.body
    assert answer.choices[0].finish_reason == "length", "the server itself stopped at 5"
    assert answer.choices[0].message.content == words(5)


async def test_the_websocket_done_frame_carries_the_routers_count(
        hostile_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    import json

    import trio
    from trio_websocket import open_websocket_url

    clean_fake.state.usage_mode = "none"
    _, key = hostile_router.new_account(5_000_000)
    url = hostile_router.base_url.replace("http://", "ws://") + "/v1/ws"
    async with open_websocket_url(url, extra_headers=[
            (b"authorization", f"Bearer {key}".encode())]) as ws:
        await ws.send_message(json.dumps({"type": "request", "id": "c1",
                                          "api": "openai.chat", "body": {
                                              "model": "llama", "stream": True,
                                              "messages": MESSAGES}}))
        with trio.fail_after(10):
            while (frame := json.loads(await ws.get_message()))["type"] != "done":
                assert frame["type"] == "event", frame
    rows = (await trio.to_thread.run_sync(hostile_router.usage, key))["recent"]
    assert frame["usage"]["estimated"] is True
    assert (frame["usage"]["input_tokens"], frame["usage"]["output_tokens"]) == (
        rows[0]["input_tokens"], rows[0]["output_tokens"])
    assert frame["cost_micros"] == rows[0]["cost_micros"] > 0
