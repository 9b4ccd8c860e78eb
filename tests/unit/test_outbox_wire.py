"""What an outbox event sends and what its sink's answer means (router/outbox/wire.py,
docs/integration.md): the usage event's shape, the credit service's capture, release and
debit, the conversation as the client sent it, which answers retry and which park, and
a retry delay that never passes its cap."""

from __future__ import annotations

import random

import orjson
import pytest

from router.ledger.base import OutboxEvent
from router.outbox.wire import (SinkRoute, event_call, retry_delay_s, transcript_body,
                                verdict)
from router.providers.base import HttpCall

ROW = {"request_id": "req_1", "account": "alice", "model": "m", "provider": "oai",
       "input_tokens": 10, "output_tokens": 20, "cache_read_tokens": 1,
       "cache_write_tokens": 2, "reasoning_tokens": 3, "reported": False,
       "cost_micros": 42, "at": 1_700_000_001.5, "overrun_micros": 0, "recovered": True,
       "started_at": 1_700_000_000.25}


def _event(sink: str, body: bytes | None = None) -> OutboxEvent:
    return OutboxEvent(f"{sink}.req_1", sink, "req_1", "alice", body, 1.0, 0, 1.0, "pending")


def _headers(call: HttpCall) -> dict[bytes, bytes]:
    return dict(call.headers)


def test_a_usage_event_is_the_ledgers_row_in_the_sinks_shape() -> None:
    call = event_call(SinkRoute("usage", "tok", "/internal/usage"), _event("usage"), ROW)
    assert call is not None and call.path == "/internal/usage"
    body = orjson.loads(call.body)
    assert body == {"event_id": "usage.req_1", "request_id": "req_1", "account": "alice",
                    "model": "m", "provider": "oai", "input_tokens": 10,
                    "output_tokens": 20, "cache_read_tokens": 1, "cache_write_tokens": 2,
                    "reasoning_tokens": 3, "cost_micros": 42, "estimated": True,
                    "status": "recovered", "started_at": "2023-11-14T22:13:20.250Z",
                    "finished_at": "2023-11-14T22:13:21.500Z"}
    assert _headers(call)[b"idempotency-key"] == b"usage.req_1"
    assert _headers(call)[b"authorization"] == b"Bearer tok"


def test_the_credit_service_gets_a_capture_a_release_or_a_debit() -> None:
    two_phase = SinkRoute("billing", "zb", "", "two_phase")
    capture = event_call(two_phase, _event("billing"), ROW)
    assert capture is not None and capture.path == "/v1/holds/req_1/capture"
    assert orjson.loads(capture.body)["amount_micros"] == 42
    assert _headers(capture)[b"idempotency-key"] == b"req_1", "the request id"
    release = event_call(two_phase, _event("billing"), {**ROW, "cost_micros": 0})
    assert release is not None and release.path == "/v1/holds/req_1/release"
    unknown = event_call(two_phase, _event("billing", b'{"action":"release"}'), None)
    assert unknown is not None and unknown.path == "/v1/holds/req_1/release"
    check_debit = SinkRoute("billing", "zb", "", "check_debit")
    debit = event_call(check_debit, _event("billing"), ROW)
    assert debit is not None and debit.path == "/v1/debits"
    assert orjson.loads(debit.body)["account"] == "alice"
    assert event_call(check_debit, _event("billing"), {**ROW, "cost_micros": 0}) is None


def test_the_stored_conversation_is_the_clients_own() -> None:
    chat = orjson.loads(transcript_body("r", "a", "m", "anthropic.messages", orjson.dumps(
        {"system": "be brief", "messages": [{"role": "user", "content": "hi"}]}), "yo"))
    assert chat["messages"] == [{"role": "user", "content": "hi"}]
    assert (chat["system"], chat["answer"], chat["event_id"]) == ("be brief", "yo",
                                                                   "messages.r")
    responses = orjson.loads(transcript_body("r", "a", "m", "openai.responses",
                                             orjson.dumps({"input": "hello"}), ""))
    assert responses["messages"] == [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize("sink, status, path, expected", [
    ("usage", 201, "/internal/usage", "delivered"),
    ("usage", 400, "/internal/usage", "dead"),
    ("usage", 404, "/internal/usage", "dead"),
    ("usage", 409, "/internal/usage", "retry"),
    ("usage", 429, "/internal/usage", "retry"),
    ("usage", 408, "/internal/usage", "retry"),
    ("usage", 503, "/internal/usage", "retry"),
    ("billing", 409, "/v1/holds/r/capture", "dead"),
    ("billing", 410, "/v1/holds/r/capture", "dead"),
    ("billing", 404, "/v1/holds/r/release", "delivered"),
    ("billing", 404, "/v1/holds/r/capture", "dead"),
])
def test_what_a_sinks_answer_means(sink: str, status: int, path: str, expected: str) -> None:
    assert verdict(sink, status, HttpCall(path, (), b"")) == expected


def test_the_retry_delay_grows_and_never_passes_its_cap() -> None:
    rng = random.Random(7)
    for attempts in range(40):
        delays = [retry_delay_s(attempts, 300.0, rng) for _ in range(50)]
        assert all(0 < d <= min(300.0, 2 ** attempts) for d in delays)
    assert max(retry_delay_s(30, 300.0, rng) for _ in range(200)) > 150, "jittered up high"
