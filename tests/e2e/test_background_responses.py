"""OpenAI background mode with the official OpenAI Python SDK, unchanged: `background:
true` (streamed or not), `retrieve` (the object, and `stream=True, starting_after=N` to
resume), `cancel`; for an OpenAI-kind and an Anthropic-kind model; only the owner may
read or cancel; billed once."""

from __future__ import annotations

import time
from typing import Any, Iterator

import httpx
import openai
import pytest
from openai.types.responses import Response

from tests.fakes import FakeProviderServer
from tests.harness import (RouterProcess, assert_account_invariants, eventually,
                           every_kind_config)

MODELS = ("gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash", "llama")  # one per kind


@pytest.fixture(scope="module")
def bgrouter(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[RouterProcess]:
    with RouterProcess(tmp_path_factory.mktemp("bg"),
                       every_kind_config(fake),
                       env={"RESUME_WINDOW_S": "30"}) as proc:
        yield proc


def client(router: RouterProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=router.base_url + "/v1", max_retries=0)


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


@pytest.mark.parametrize("model", MODELS)
def test_background_response_is_polled_to_completion_and_billed_once(
        bgrouter: RouterProcess, clean_fake: FakeProviderServer, model: str) -> None:
    clean_fake.state.chunk_delay_s = 0.02
    account, key = bgrouter.new_account(2_000_000)
    sdk = client(bgrouter, key)
    created = sdk.responses.create(model=model, input="A story.", background=True,
                                   max_output_tokens=50)
    assert created.id and created.status in ("queued", "in_progress")
    assert created.background is True
    deadline = time.monotonic() + 10
    response = created
    while response.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.05)
        response = sdk.responses.retrieve(created.id)
    assert response.status == "completed"
    assert response.output_text == words(12)
    assert response.id == created.id
    raw = httpx.get(f"{bgrouter.base_url}/v1/responses/{created.id}",
                    headers={"authorization": f"Bearer {key}"}).json()
    Response.model_validate(raw)  # validated against the SDK's type, not just built
    eventually(lambda: bgrouter.account(account)["held_micros"] == 0)
    usage = bgrouter.usage(key)
    assert [r["output_tokens"] for r in usage["recent"]] == [12]  # billed once
    assert_account_invariants(bgrouter, account)


@pytest.mark.parametrize("model", MODELS)
def test_a_dropped_background_stream_resumes_with_starting_after(
        bgrouter: RouterProcess, clean_fake: FakeProviderServer, model: str) -> None:
    clean_fake.state.chunk_delay_s = 0.03
    clean_fake.state.reply_words = 30
    account, key = bgrouter.new_account(2_000_000)
    sdk = client(bgrouter, key)
    first: list[Any] = []
    stream = sdk.responses.create(model=model, input="A story.", background=True,
                                  stream=True, max_output_tokens=100)
    for event in stream:
        first.append(event)
        if event.type == "response.output_text.delta" and len(first) > 8:
            break
    stream.close()  # the client goes away mid-answer: the response runs on
    response_id = first[0].response.id
    last_seen = first[-1].sequence_number
    rest = list(sdk.responses.retrieve(response_id, stream=True, starting_after=last_seen))
    events = first + rest
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == words(30)
    eventually(lambda: bgrouter.account(account)["held_micros"] == 0)
    assert [r["output_tokens"] for r in bgrouter.usage(key)["recent"]] == [30]
    assert sdk.responses.retrieve(response_id).status == "completed"
    assert_account_invariants(bgrouter, account)


def test_cancel_stops_a_background_response_and_bills_what_was_produced(
        bgrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.chunk_delay_s = 0.05
    clean_fake.state.reply_words = 400
    account, key = bgrouter.new_account(2_000_000)
    sdk = client(bgrouter, key)
    stream = sdk.responses.create(model="gpt-4o-mini", input="Long.", background=True,
                                  stream=True, max_output_tokens=1000)
    response_id = None
    for event in stream:
        if event.type == "response.created":
            response_id = event.response.id
        if event.type == "response.output_text.delta":
            break
    stream.close()
    assert response_id is not None
    assert sdk.responses.retrieve(response_id).status == "in_progress"
    cancelled = sdk.responses.cancel(response_id)
    assert cancelled.status == "cancelled"
    assert sdk.responses.retrieve(response_id).status == "cancelled"
    eventually(lambda: bgrouter.account(account)["held_micros"] == 0)
    produced = bgrouter.usage(key)["recent"][0]["output_tokens"]
    assert 0 < produced < 400
    assert_account_invariants(bgrouter, account)


def test_only_the_owner_reads_or_cancels(bgrouter: RouterProcess,
                                         clean_fake: FakeProviderServer) -> None:
    _, key = bgrouter.new_account(2_000_000)
    _, other_key = bgrouter.new_account(2_000_000)
    created = client(bgrouter, key).responses.create(
        model="gpt-4o-mini", input="Mine.", background=True)
    other = client(bgrouter, other_key)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.cancel(created.id)
    with pytest.raises(openai.NotFoundError):
        list(other.responses.retrieve(created.id, stream=True, starting_after=0))
    with pytest.raises(openai.NotFoundError):
        client(bgrouter, key).responses.retrieve("resp_unknown")


def test_a_refused_background_request_is_an_error_not_a_response(
        bgrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = bgrouter.new_account(1)
    with pytest.raises(openai.APIStatusError) as caught:
        client(bgrouter, key).responses.create(model="gpt-4o-mini", input="hi",
                                               background=True)
    assert caught.value.status_code == 402
    assert bgrouter.account(account)["held_micros"] == 0


def test_background_must_be_a_boolean(bgrouter: RouterProcess,
                                      clean_fake: FakeProviderServer) -> None:
    account, key = bgrouter.new_account(2_000_000)
    with pytest.raises(openai.BadRequestError) as caught:
        client(bgrouter, key).responses.create(model="gpt-4o-mini", input="hi",
                                               background="yes")  # type: ignore[arg-type]
    assert "background" in str(caught.value)
    assert bgrouter.account(account)["held_micros"] == 0
