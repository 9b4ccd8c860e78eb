"""The route plan and the stream stage with in-memory providers: what the hold must cover,
which body each target gets, and what the client and the bill see when an upstream
answer cannot be translated."""

from __future__ import annotations

from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, AsyncIterator

import orjson
import pytest
import trio

from actors.pipeline.context import Outcome
from actors.pipeline.plan import Leg, plan_route
from actors.pipeline.reserve import Reservation
from actors.pipeline.stream import Delivery, run_stream
from router.catalog import Catalog, ModelSpec, ProviderSpec, Target
from router.errors import BadRequest, RouterError
from router.gateway import ClientSink
from router.pricing import Prices
from router.providers import registry
from router.providers.base import limit_field
from router.providers.breaker import CircuitBreaker
from router.providers.credentials import CredentialPool
from router.protocols.api import ClientRequest, Meter, UpstreamOptions
from router.protocols.formats import FORMATS
from router.redact import Redactor
from router.tokens import TOOL_USE_OVERHEAD_TOKENS, measure
from tests.unit.contexts import request_context

PRICES = Prices(Decimal("1"), Decimal("2"), Decimal("0.1"), Decimal("1.25"))


class CannedResponse:
    content_type = "application/json"
    retry_after = None

    def __init__(self, parts: list[bytes], status: int = 200) -> None:
        self.parts, self.status = parts, status
        self._chunks: AsyncIterator[bytes] | None = None

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part

    async def next_chunk(self) -> bytes | None:
        if self._chunks is None:
            self._chunks = self.aiter_bytes()
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None

    async def read(self, limit: int) -> bytes:
        return b"".join(self.parts)[:limit]


class NoDelivery:
    async def before_content(self, whole: bool) -> None:
        pass


REDACTOR = Redactor(["sk-live-123456"], ["https://internal:8000"])


def job(api: str, request: ClientRequest, max_output: int = 100,
        first_event_grace_s: float = 20.0) -> tuple[str, ClientRequest, int, float]:
    return api, request, max_output, first_event_grace_s


async def stream_to(legs: list[Leg], spec: tuple[str, ClientRequest, int, float],
                    meter: Meter, outcome: Outcome, sink: ClientSink,
                    delivery: Delivery) -> RouterError | None:
    """The stream stage for one planned request (estimated input: 10 tokens)."""
    api, request, max_output, grace = spec
    ctx = request_context(model(), Reservation("req_test", "acct", 10**9, max_output, 0),
                          api=api, request=request, legs=tuple(legs), first_event_grace_s=grace)
    return await run_stream(ctx, meter, outcome, sink, delivery, REDACTOR)


def new_outcome() -> Outcome:
    return Outcome("req_test", "test")


class CannedProvider:
    """A provider that answers every call with the same bytes, and records the bodies."""

    def __init__(self, name: str, kind: str, parts: list[bytes] | None = None) -> None:
        self.spec = ProviderSpec(name, kind, "http://upstream.invalid")
        self.adapter = registry.adapter(kind)
        self.credentials = CredentialPool(())
        self.breaker = CircuitBreaker()
        self.parts = parts or []
        self.sent: list[dict[str, Any]] = []

    @asynccontextmanager
    async def open(self, request: Any) -> AsyncIterator[CannedResponse]:
        self.sent.append(orjson.loads(request.body))
        yield CannedResponse(self.parts)


class Sink:
    def __init__(self) -> None:
        self.started, self.status, self.data = False, 0, b""

    async def start(self, status: int, headers: Any) -> None:
        self.started, self.status = True, status

    async def body(self, data: bytes) -> None:
        self.data += data

    async def error(self, error: RouterError, shape: str) -> None:
        await self.start(error.status, ())
        await self.body(error.body(shape))  # type: ignore[arg-type]

    def settled(self, settled: Any) -> None:
        pass


def model(*targets: tuple[str, str]) -> ModelSpec:
    return ModelSpec("m", "openai", PRICES, 4096,
                     tuple(Target(p, upstream) for p, upstream in targets))


def anthropic_request(**extra: Any) -> Any:
    return FORMATS["anthropic.messages"].parse({
        "model": "m", "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}], **extra})


def test_each_provider_kind_gets_its_own_translation() -> None:
    providers = {"oai": CannedProvider("oai", "openai"),
                 "local": CannedProvider("local", "ollama")}
    legs, _ = plan_route(providers, FORMATS["anthropic.messages"], anthropic_request(),
                         model(("oai", "gpt-x"), ("local", "llama")))
    bodies = [orjson.loads(leg.native.upstream_body(leg.request, UpstreamOptions(
        leg.target.upstream_model, 50, limit_field(leg.provider, leg.native.name))))
              for leg in legs]
    assert bodies[0]["max_completion_tokens"] == 50 and "max_tokens" not in bodies[0]
    assert bodies[1]["max_tokens"] == 50 and "max_completion_tokens" not in bodies[1]


def test_the_hold_covers_what_a_translation_adds() -> None:
    providers = {"ant": CannedProvider("ant", "anthropic")}
    messages = [{"role": "user", "content": "weather?"}]
    for i in range(20):
        messages += [{"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function",
             "function": {"name": f"tool_number_{i}", "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": f"call_{i}", "content": "sunny"}]
    request = FORMATS["openai.chat"].parse({"model": "m", "messages": messages})
    legs, size = plan_route(providers, FORMATS["openai.chat"], request, model(("ant", "c")))
    sent = legs[0].request.body
    assert "tools" in sent and "tools" not in request.body  # defined for Anthropic
    assert size.input_bound(0) >= measure(sent).input_bound(0)
    assert size.input_bound(0) >= request.size.input_bound(0) + TOOL_USE_OVERHEAD_TOKENS


def test_output_schemas_and_nesting_are_measured() -> None:
    schema = {"type": "object", "properties": {f"f{i}": {"type": "string",
                                                         "description": "d" * 200}
                                               for i in range(50)}}
    body = {"messages": [{"role": "user", "content": "hi"}],
            "output_config": {"format": {"type": "json_schema", "schema": schema}}}
    assert measure(body).text_bytes > 50 * 200
    responses = {"input": "hi", "text": {"format": {"type": "json_schema", "schema": schema}}}
    assert measure(responses).text_bytes > 50 * 200
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    with pytest.raises(BadRequest):
        measure({"messages": [{"role": "user", "content": deep}]})


def test_a_target_that_cannot_take_the_request_is_skipped_for_one_that_can() -> None:
    providers = {"ant": CannedProvider("ant", "anthropic"),
                 "oai": CannedProvider("oai", "openai")}
    request = FORMATS["openai.chat"].parse({"model": "m", "temperature": 1.5,
                                            "messages": [{"role": "user", "content": "x"}]})
    legs, _ = plan_route(providers, FORMATS["openai.chat"], request,
                         model(("ant", "claude"), ("oai", "gpt")))
    assert [leg.target.provider for leg in legs] == ["oai"]
    with pytest.raises(BadRequest) as refused:
        plan_route(providers, FORMATS["openai.chat"], request, model(("ant", "claude")))
    assert refused.value.param == "temperature"


@pytest.mark.parametrize("field,value", [
    ("tool_choice", {"type": "function", "function": "f"}),
    ("response_format", "json_object"),
    ("thinking", {"type": "enabled", "budget_tokens": "lots"}),
])
def test_odd_types_are_a_400_not_a_crash(field: str, value: Any) -> None:
    providers = {"ant": CannedProvider("ant", "anthropic"),
                 "oai": CannedProvider("oai", "openai")}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    if field == "thinking":
        fmt, route = FORMATS["anthropic.messages"], model(("oai", "gpt"))
        request = anthropic_request(thinking=value)
        reasoning = ModelSpec("m", "openai", PRICES, 4096, route.route, reasoning=True)
        with pytest.raises(BadRequest):
            plan_route(providers, fmt, request, reasoning)
        return
    request = FORMATS["openai.chat"].parse({"model": "m", "tools": tools, field: value,
                                            "messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(BadRequest):
        plan_route(providers, FORMATS["openai.chat"], request, model(("ant", "claude")))


async def test_an_answer_that_cannot_be_translated_is_a_502_and_costs_nothing() -> None:
    weird = orjson.dumps({"id": "msg_1", "type": "message", "role": "assistant",
                          "content": [{"type": "text", "text": "hi"}],
                          "stop_reason": ["weird"],
                          "usage": {"input_tokens": 1000, "output_tokens": 500}})
    providers = {"ant": CannedProvider("ant", "anthropic", [weird])}
    request = FORMATS["openai.chat"].parse({"model": "m", "messages": [
        {"role": "user", "content": "x"}]})
    legs, _ = plan_route(providers, FORMATS["openai.chat"], request, model(("ant", "c")))
    meter, outcome, sink = Meter(), new_outcome(), Sink()
    failed = await stream_to(legs, job("openai.chat", request), meter, outcome, sink, NoDelivery())
    assert failed is not None and failed.status == 502
    assert not sink.started
    assert meter.usage(10).is_empty, "the client got nothing: nothing is billed"


async def test_a_stream_whose_end_cannot_be_translated_ends_with_an_error_event() -> None:
    chunks = [
        b'data: {"id":"c1","model":"g","choices":[{"index":0,"delta":{"role":"assistant",'
        b'"content":"hi"},"finish_reason":null}]}\n\n',
        b'data: {"id":"c1","model":"g","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,'
        b'"id":"call_1","function":{"name":"f","arguments":"{}"}}]},"finish_reason":null}]}\n\n',
        b'data: {"id":"c1","model":"g","choices":[],"usage":{"prompt_tokens":3,'
        b'"completion_tokens":2}}\n\n',
        b"data: [DONE]\n\n",
        b'data: {"id":"c1","model":"g","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,'
        b'"function":{"arguments":"x"}}]},"finish_reason":null}]}\n\n',
    ]
    providers = {"oai": CannedProvider("oai", "openai", chunks)}
    request = anthropic_request(stream=True)
    legs, _ = plan_route(providers, FORMATS["anthropic.messages"], request, model(("oai", "g")))
    meter, outcome, sink = Meter(), new_outcome(), Sink()
    await stream_to(legs, job("anthropic.messages", request), meter, outcome, sink, NoDelivery())
    assert sink.data.count(b"event: message_stop") == 1
    assert sink.data.endswith(b"\n\n") and b"event: error" in sink.data
    assert meter.completed and meter.output_tokens == 2


def test_a_provider_prefixed_alias_calls_and_bills_the_model_it_stands_for() -> None:
    cheap = ModelSpec("cheap", "openai", PRICES, 4096)
    dear = ModelSpec("dear", "openai", Prices(Decimal(10), Decimal(30), Decimal(1),
                                               Decimal(10)), 4096)
    catalog = Catalog(providers={"oai": ProviderSpec("oai", "openai", "http://x")},
                      models={"cheap": cheap, "dear": dear}, aliases={"dear": "cheap"})
    resolved = catalog.resolve("oai/dear")
    assert resolved is not None
    assert resolved.route == (Target("oai", "cheap"),) and resolved.prices == cheap.prices


def test_provider_errors_are_normalised_without_leaking_the_platforms_key() -> None:
    from actors.pipeline.stream import provider_message

    assert provider_message(400, b'{"detail": "Model foo not found"}', REDACTOR) == \
        "Model foo not found"
    assert provider_message(422, b'{"error": {"message": "bad temperature"}}', REDACTOR) == \
        "bad temperature"
    leaky = b'{"detail": "Invalid key sk-live-123456 for https://internal:8000"}'
    assert "sk-live" not in provider_message(401, leaky, REDACTOR)
    assert "internal" not in provider_message(503, leaky, REDACTOR)
    shown = provider_message(400, leaky, REDACTOR)
    assert "sk-live" not in shown and "internal" not in shown and "[redacted]" in shown
    assert provider_message(400, b"<html>oops</html>", REDACTOR).startswith(
        "the provider refused")



class SlowProvider(CannedProvider):
    """Streams `parts` with a pause before each."""

    def __init__(self, parts: list[bytes], pause_s: float, total_s: float = 1800.0) -> None:
        super().__init__("slow", "anthropic", parts)
        self.spec = ProviderSpec("slow", "anthropic", "http://upstream.invalid",
                                 timeout_total_s=total_s)
        self.pause_s = pause_s

    @asynccontextmanager
    async def open(self, request: Any) -> AsyncIterator[Any]:
        provider = self

        class Slow(CannedResponse):
            sent = 0

            async def next_chunk(self) -> bytes | None:  # cancel-safe, like the real pool
                if self.sent >= len(provider.parts):
                    return None
                await trio.sleep(provider.pause_s)
                self.sent += 1
                return provider.parts[self.sent - 1]

        yield Slow(self.parts)


ANTHROPIC_STREAM = [
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message",'
    b'"role":"assistant","model":"c","content":[],"usage":{"input_tokens":3,"output_tokens":1}}}'
    b'\n\n',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n',
] + [b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
     b'{"type":"text_delta","text":"w"}}\n\n'] * 10 + [
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":10}}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n']


async def test_a_half_open_probe_closes_the_breaker_as_soon_as_the_answer_starts(
        autojump_clock: trio.abc.Clock) -> None:
    provider = SlowProvider(ANTHROPIC_STREAM, pause_s=1.0)
    provider.breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5)
    provider.breaker.record_failure(trio.current_time())
    await trio.sleep(5)
    request = anthropic_request(stream=True)
    legs, _ = plan_route({"slow": provider}, FORMATS["anthropic.messages"], request,
                         model(("slow", "c")))
    states = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream_to, legs, job("anthropic.messages", request), Meter(),
                           new_outcome(), Sink(), NoDelivery())
        await trio.sleep(4)  # mid-answer: its first content came at 3 s
        states.append(provider.breaker.state)
    assert states == ["closed"], "healthy answers flow: others need not wait for its end"


async def test_an_error_event_before_content_counts_against_the_provider() -> None:
    error = [ANTHROPIC_STREAM[0], b'event: error\ndata: {"type":"error","error":{"type":'
             b'"overloaded_error","message":"Overloaded"}}\n\n']
    provider = CannedProvider("ant", "anthropic", error)
    provider.breaker = CircuitBreaker(failure_threshold=2, cooldown_s=30)
    request = anthropic_request(stream=True)
    legs, _ = plan_route({"ant": provider}, FORMATS["anthropic.messages"], request,
                         model(("ant", "c")))
    for _ in range(2):
        meter, sink = Meter(), Sink()
        failed = await stream_to(legs, job("anthropic.messages", request), meter,
                                  new_outcome(), sink, NoDelivery())
        assert failed is not None and failed.status == 503 and not sink.started
        assert meter.usage(10).is_empty, "nothing reached the client: nothing is billed"
    assert provider.breaker.state == "open", "a 200 that fails before content is a failure"


async def test_the_whole_answer_deadline_does_not_blame_the_provider(
        autojump_clock: trio.abc.Clock) -> None:
    provider = SlowProvider(ANTHROPIC_STREAM, pause_s=1.0, total_s=4.5)
    request = anthropic_request(stream=True)
    legs, _ = plan_route({"slow": provider}, FORMATS["anthropic.messages"], request,
                         model(("slow", "c")))
    meter, sink = Meter(), Sink()
    await stream_to(legs, job("anthropic.messages", request), meter, new_outcome(), sink, NoDelivery())
    assert b"did not finish within 4.5 s" in sink.data
    assert meter.output_deltas == 2, "billed for what streamed before the deadline"
    assert provider.breaker.state == "closed" and provider.breaker.failures == 0


class RecordingSink(Sink):
    """Notes when the status line went out, and what content had arrived by then."""

    def __init__(self) -> None:
        super().__init__()
        self.started_at: float | None = None
        self.deltas_at_start = -1
        self.meter: Meter | None = None

    async def start(self, status: int, headers: Any) -> None:
        await super().start(status, headers)
        self.started_at = trio.current_time()
        assert self.meter is not None
        self.deltas_at_start = self.meter.output_deltas


async def test_the_status_line_waits_for_the_first_content(
        autojump_clock: trio.abc.Clock) -> None:
    provider = SlowProvider(ANTHROPIC_STREAM, pause_s=1.0)
    request = anthropic_request(stream=True)
    legs, _ = plan_route({"slow": provider}, FORMATS["anthropic.messages"], request,
                         model(("slow", "c")))
    meter, sink = Meter(), RecordingSink()
    sink.meter = meter
    start = trio.current_time()
    await stream_to(legs, job("anthropic.messages", request), meter, new_outcome(), sink,
                     NoDelivery())
    assert sink.status == 200 and sink.deltas_at_start == 1, "committed on the first content"
    assert sink.started_at is not None and sink.started_at - start == pytest.approx(3.0)
    assert sink.data.startswith(b"event: message_start"), "what came before is not lost"


async def test_a_slow_first_content_commits_after_the_grace(
        autojump_clock: trio.abc.Clock) -> None:
    provider = SlowProvider(ANTHROPIC_STREAM, pause_s=10.0)
    request = anthropic_request(stream=True)
    legs, _ = plan_route({"slow": provider}, FORMATS["anthropic.messages"], request,
                         model(("slow", "c")))
    meter, sink = Meter(), RecordingSink()
    sink.meter = meter
    start = trio.current_time()
    grace = job("anthropic.messages", request, first_event_grace_s=5.0)
    await stream_to(legs, grace, meter, new_outcome(), sink, NoDelivery())
    assert sink.started_at is not None and sink.started_at - start == pytest.approx(5.0)
    assert sink.deltas_at_start == 0, "200 before any content: heartbeats keep it alive"
    assert sink.data.count(b"event: message_stop") == 1 and meter.completed


class Checkpoints:
    """A `Delivery` that notes what the meter held when content was first let out."""

    def __init__(self, meter: Meter) -> None:
        self.meter, self.calls = meter, []  # type: ignore[var-annotated]

    async def before_content(self, whole: bool) -> None:
        self.calls.append((whole, self.meter.output_deltas))


async def test_the_bill_is_made_durable_before_the_first_content_leaves() -> None:
    request = anthropic_request(stream=True)
    for chunks, expected in ((ANTHROPIC_STREAM, (False, 1)),
                             ([b"".join(ANTHROPIC_STREAM)], (False, 10))):
        provider = CannedProvider("ant", "anthropic", chunks)
        legs, _ = plan_route({"ant": provider}, FORMATS["anthropic.messages"], request,
                             model(("ant", "c")))
        meter, sink = Meter(), Sink()
        delivery = Checkpoints(meter)
        await stream_to(legs, job("anthropic.messages", request), meter, new_outcome(),
                         sink, delivery)
        # once, before the body was sent: a checkpoint of what streamed so far
        assert delivery.calls == [expected]
    whole = anthropic_request()
    answer = orjson.dumps({"id": "m", "type": "message", "role": "assistant", "model": "c",
                           "content": [{"type": "text", "text": "hi"}],
                           "stop_reason": "end_turn",
                           "usage": {"input_tokens": 3, "output_tokens": 1}})
    provider = CannedProvider("ant", "anthropic", [answer])
    legs, _ = plan_route({"ant": provider}, FORMATS["anthropic.messages"], whole,
                         model(("ant", "c")))
    meter = Meter()
    delivery = Checkpoints(meter)
    await stream_to(legs, job("anthropic.messages", whole), meter, new_outcome(), Sink(),
                     delivery)
    assert delivery.calls == [(True, 1)], "a whole answer is settled before it is sent"
