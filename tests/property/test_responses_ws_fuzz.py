"""Hypothesis fuzzing of the Responses websocket mode (`GET /v1/responses`, upgrade)
against the real router, with the official SDK's connection (docs/websocket.md).

Whatever a client sends — text that is not JSON, binary messages, JSON of the wrong
type, unknown event types, `response.create` events with fields of the wrong type, bad
lanes, oversized messages — every message the router sends back validates against the
SDK's own `ResponsesServerEvent` (an `error` with a 4xx status and a message, never a
crash's 500, or a whole response); the socket then still serves a valid request; and
once everything settles no hold is left open.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator

import openai
import orjson
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses.responses_server_event import ResponsesServerEvent

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, eventually, router_config

MAX_FRAME = 4096
_EXAMPLES = int(os.environ.get("WS_FUZZ_EXAMPLES", "0"))
FUZZ_SETTINGS = settings(max_examples=_EXAMPLES or 40, deadline=None,
                         derandomize=not _EXAMPLES, suppress_health_check=list(HealthCheck))
SERVER_EVENT = pydantic.TypeAdapter(ResponsesServerEvent)
ENDS = ("response.completed", "response.incomplete", "response.failed", "error")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10)
creates = st.fixed_dictionaries(
    {"type": st.just("response.create"),
     "model": st.sampled_from(["gpt-4o-mini", "claude-haiku-4-5", "no-such-model", ""])
     | json_values,
     "input": st.sampled_from(["hi", ""]) | json_values},
    optional={"stream_id": st.sampled_from(["a", "", "x" * 200]) | json_values,
              "max_output_tokens": st.integers(-5, 2**40) | json_values,
              "background": json_values, "stream": json_values, "tools": json_values,
              "instructions": json_values})
messages = st.one_of(
    creates.map(json.dumps),
    st.fixed_dictionaries({"type": st.sampled_from(["response.steer", "ping", "", "x"])
                           | json_values}).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=60),
    st.binary(max_size=60),
    st.integers(MAX_FRAME + 1, 4 * MAX_FRAME).map(
        lambda n: '{"type":"response.create","pad":"' + "x" * n + '"}'))
VALID = {"type": "response.create", "model": "gpt-4o-mini", "input": "hi",
         "max_output_tokens": 16}


@pytest.fixture(scope="module")
def fuzzed(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    env = {"WS_MAX_FRAME_BYTES": str(MAX_FRAME), "WS_MAX_STREAMS": "4",
           "RESUME_WINDOW_S": "2"}
    with RouterProcess(tmp_path_factory.mktemp("rwsfuzz"),
                       router_config(fake.openai_base_url, fake.anthropic_base_url),
                       env=env) as proc:
        yield proc


@pytest.fixture(scope="module")
def funded(fuzzed: RouterProcess) -> tuple[str, str]:
    return fuzzed.new_account(1_000_000_000)


def _answers(connection: Any) -> list[dict[str, Any]]:
    """Messages until one response or error ended; each validated, none a 500."""
    seen = []
    while True:
        message = orjson.loads(connection.recv_bytes())
        SERVER_EVENT.validate_python(message)
        if message["type"] == "error":
            assert message["error"]["message"], message
            assert 400 <= message["status"] <= 599 and message["status"] != 500, message
        seen.append(message)
        if message["type"] in ENDS:
            return seen


@FUZZ_SETTINGS
@given(message=messages)
def test_any_message_gets_a_well_formed_answer_and_the_socket_lives_on(
        fuzzed: RouterProcess, funded: tuple[str, str], message: str | bytes) -> None:
    _, key = funded
    sdk = openai.OpenAI(api_key=key, base_url=fuzzed.base_url + "/v1", max_retries=0)
    with sdk.responses.connect() as connection:
        connection._connection.send(message)  # raw: the SDK would validate it first
        _answers(connection)
        connection.send(VALID)  # type: ignore[arg-type]
        assert _answers(connection)[-1]["type"] in ("response.completed",
                                                    "response.incomplete")


def test_nothing_is_left_held(fuzzed: RouterProcess, funded: tuple[str, str]) -> None:
    account, _ = funded
    eventually(lambda: fuzzed.account(account)["held_micros"] == 0, within_s=10)
