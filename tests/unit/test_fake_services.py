"""The fake platform services keep their contracts: credit service rules, sink dedupe, faults.

Each fake is started once for the module and reset before every test; all traffic is
real HTTP over loopback (httpx), as the router will send it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.credit_service import FakeCreditService
from tests.fakes.sinks import MESSAGES_PATH, USAGE_PATH, FakeSinks

KEY = "zb-key"
EXPIRES_AT = int(time.time()) + 3600  # one value, so that a retried hold has the same body


@pytest.fixture(scope="module")
def zb_server() -> Iterator[FakeCreditService]:
    with FakeCreditService(api_key=KEY) as server:
        yield server


@pytest.fixture
def zb(zb_server: FakeCreditService) -> FakeCreditService:
    zb_server.reset()
    zb_server.grant("acct", 1_000)
    return zb_server


@pytest.fixture
def client(zb: FakeCreditService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=zb.base_url, headers={"authorization": f"Bearer {KEY}"},
                      timeout=2.0) as c:
        yield c


def hold(client: httpx.Client, rid: str, amount: int, *, account: str = "acct",
         expires_in: int | None = None, **kw: Any) -> httpx.Response:
    expires_at = EXPIRES_AT if expires_in is None else int(time.time()) + expires_in
    body = {"account": account, "request_id": rid, "amount_micros": amount,
            "expires_at": expires_at}
    return client.post("/v1/holds", json=body, headers={"idempotency-key": rid}, **kw)


def capture(client: httpx.Client, rid: str, amount: int, **kw: Any) -> httpx.Response:
    body = {"amount_micros": amount, "usage": {"in": 1}}
    return client.post(f"/v1/holds/{rid}/capture", json=body, headers={"idempotency-key": rid},
                       **kw)


def release(client: httpx.Client, rid: str) -> httpx.Response:
    return client.post(f"/v1/holds/{rid}/release", headers={"idempotency-key": rid})


def debit(client: httpx.Client, rid: str, amount: int, account: str = "acct") -> httpx.Response:
    body = {"account": account, "request_id": rid, "amount_micros": amount, "usage": {}}
    return client.post("/v1/debits", json=body, headers={"idempotency-key": rid})


def available(client: httpx.Client, account: str = "acct") -> int:
    return client.get(f"/v1/accounts/{account}").json()["available_micros"]


# --- credit service: contract -------------------------------------------------------------

def test_bearer_is_required(zb: FakeCreditService, client: httpx.Client) -> None:
    for headers in ({"authorization": "Bearer wrong"}, {"authorization": ""}):
        r = client.get("/v1/accounts/acct", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_bad_bodies_are_400(zb: FakeCreditService, client: httpx.Client) -> None:
    h = {"idempotency-key": "r1", "content-type": "application/json"}
    assert client.post("/v1/holds", content=b"{nope", headers=h).status_code == 400
    r = client.post("/v1/holds", json={"account": "acct", "request_id": "r1"}, headers=h)
    assert r.status_code == 400 and "amount_micros" in r.json()["error"]["message"]
    for bad in ("5", True, -1, 1.5):
        body = {"account": "acct", "request_id": "r1", "amount_micros": bad, "expires_at": 1}
        assert client.post("/v1/holds", json=body, headers=h).status_code == 400
    assert hold(client, "r1", 10, expires_in=-1).status_code == 400  # in the past
    body = {"account": "acct", "request_id": "r1", "amount_micros": 1,
            "expires_at": int(time.time() * 1000)}  # milliseconds
    assert client.post("/v1/holds", json=body, headers=h).status_code == 400
    body["expires_at"] = EXPIRES_AT
    assert client.post("/v1/holds", json=body,
                       headers={"idempotency-key": "other"}).status_code == 400
    assert client.post("/v1/holds", json=body).status_code == 400  # no Idempotency-Key
    assert zb.holds() == []


def test_hold_reserves_and_402s_over_available(zb: FakeCreditService, client: httpx.Client) -> None:
    r = hold(client, "r1", 300)
    assert (r.status_code, r.json()) == (201, {"available_micros": 700})
    assert client.get("/v1/accounts/acct").json() == {
        "account": "acct", "balance_micros": 1000, "held_micros": 300, "available_micros": 700}
    r = hold(client, "r2", 701)
    assert r.status_code == 402 and r.json()["available_micros"] == 700
    assert zb.hold("r2") is None
    zb.grant("acct", 1)  # a 402 created nothing: the retry is evaluated afresh
    assert hold(client, "r2", 701).status_code == 201
    assert available(client) == 0
    assert hold(client, "r3", 1, account="nobody").status_code == 404
    assert client.get("/v1/accounts/nobody").status_code == 404


def test_hold_replay_and_conflict(zb: FakeCreditService, client: httpx.Client) -> None:
    body = {"account": "acct", "request_id": "r1", "amount_micros": 400, "expires_at": EXPIRES_AT}
    h = {"idempotency-key": "r1"}
    first = client.post("/v1/holds", json=body, headers=h)
    again = client.post("/v1/holds", json=body, headers=h)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert available(client) == 600 and zb.replays() == {"r1": 1}
    r = client.post("/v1/holds", json={**body, "amount_micros": 401}, headers=h)
    assert r.status_code == 409 and available(client) == 600
    sent = zb.calls("/v1/holds")[0]
    assert sent.idempotency_key == "r1" and sent.json == body and sent.status == 201


def test_capture_rules(zb: FakeCreditService, client: httpx.Client) -> None:
    assert hold(client, "r1", 300).status_code == 201
    assert capture(client, "r1", 301).status_code == 400  # over the hold
    assert capture(client, "nope", 1).status_code == 404
    r = capture(client, "r1", 250)
    assert (r.status_code, r.json()) == (200, {"captured_micros": 250, "balance_micros": 750})
    assert capture(client, "r1", 250).status_code == 200  # replay
    assert capture(client, "r1", 251).status_code == 409
    assert release(client, "r1").status_code == 409  # the capture stands
    assert zb.applied_captures() == {"r1": 1} and zb.replays() == {"r1": 1}
    assert zb.account("acct") == {"account": "acct", "balance_micros": 750, "held_micros": 0,
                                  "available_micros": 750}
    assert zb.hold("r1").usage == {"in": 1}  # type: ignore[union-attr]


def test_release_rules(zb: FakeCreditService, client: httpx.Client) -> None:
    assert hold(client, "r1", 300).status_code == 201
    assert release(client, "nope").status_code == 404
    assert release(client, "r1").json() == {"released_micros": 300}
    assert release(client, "r1").status_code == 200 and zb.replays() == {"r1": 1}
    assert available(client) == 1000
    r = capture(client, "r1", 1)
    assert r.status_code == 409 and r.json()["error"]["code"] == "hold_released"


def test_expired_holds_stop_counting(zb: FakeCreditService, client: httpx.Client) -> None:
    assert hold(client, "r1", 300, expires_in=10).status_code == 201
    assert hold(client, "r2", 300, expires_in=10).status_code == 201
    zb.advance(11)
    assert available(client) == 1000
    r = capture(client, "r1", 1)
    assert r.status_code == 410 and r.json()["error"]["code"] == "hold_expired"
    assert release(client, "r2").status_code == 200
    assert zb.applied_captures() == {}


def test_debits_are_idempotent_and_unchecked(zb: FakeCreditService, client: httpx.Client) -> None:
    assert debit(client, "d1", 600).json() == {"balance_micros": 400}
    assert debit(client, "d1", 600).json() == {"balance_micros": 400}  # replay
    assert debit(client, "d1", 601).status_code == 409
    assert debit(client, "d2", 500).json() == {"balance_micros": -100}
    assert debit(client, "d3", 1, account="nobody").status_code == 404
    assert zb.applied_debits() == {"d1": 1, "d2": 1} and zb.replays() == {"d1": 1}
    [over] = zb.overdrafts()
    assert (over.account, over.request_id, over.balance_micros) == ("acct", "d2", -100)


# --- credit service: faults ---------------------------------------------------------------

def test_down_close_and_503(zb: FakeCreditService, client: httpx.Client) -> None:
    zb.down = "close"
    with pytest.raises(httpx.RemoteProtocolError):
        hold(client, "r1", 1)
    zb.down = "503"
    assert hold(client, "r1", 1).status_code == 503
    zb.down = None
    assert hold(client, "r1", 1).status_code == 201
    assert [c.status for c in zb.calls()] == [None, 503, 201]
    with pytest.raises(ValueError):
        zb.down = "sometimes"  # type: ignore[assignment]


def test_slow_and_fail_next(zb: FakeCreditService, client: httpx.Client) -> None:
    zb.slow_s = 0.2
    t0 = time.monotonic()
    assert available(client) == 1000
    assert time.monotonic() - t0 >= 0.2
    zb.slow_s = 0
    zb.fail_next(2, 502)
    assert hold(client, "r1", 100).status_code == 502
    assert hold(client, "r1", 100).status_code == 502
    assert zb.hold("r1") is None  # not applied
    assert hold(client, "r1", 100).status_code == 201


def test_garbage(zb: FakeCreditService, client: httpx.Client) -> None:
    zb.garbage = True
    r = hold(client, "r1", 100)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    zb.garbage = False
    assert zb.hold("r1") is None and available(client) == 1000


def test_timeout_after_apply(zb: FakeCreditService, client: httpx.Client) -> None:
    zb.timeout_next_after_apply(1)
    with pytest.raises(httpx.ReadTimeout):
        hold(client, "r1", 100, timeout=0.3)
    assert zb.hold("r1") is not None  # applied, answer lost
    assert hold(client, "r1", 100).status_code == 201  # the retry sees the replay
    zb.timeout_after_apply = True
    with pytest.raises(httpx.ReadTimeout):
        capture(client, "r1", 100, timeout=0.3)
    with pytest.raises(httpx.ReadTimeout):
        capture(client, "r1", 100, timeout=0.3)  # replays hang too while the switch is on
    zb.timeout_after_apply = False
    assert capture(client, "r1", 100).status_code == 200
    assert zb.applied_captures() == {"r1": 1} and zb.replays() == {"r1": 3}


# --- sinks ---------------------------------------------------------------------------------

NET, STO = "net-tok", "sto-tok"


@pytest.fixture(scope="module")
def sinks_server() -> Iterator[FakeSinks]:
    with FakeSinks(usage_token=NET, storage_token=STO) as server:
        yield server


@pytest.fixture
def sinks(sinks_server: FakeSinks) -> Iterator[FakeSinks]:
    sinks_server.reset()
    yield sinks_server


@pytest.fixture
def sink_client(sinks: FakeSinks) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sinks.base_url, timeout=2.0) as c:
        yield c


def usage_event(event_id: str, **over: Any) -> dict[str, Any]:
    return {"event_id": event_id, "request_id": "req-" + event_id, "account": "acct",
            "model": "gpt-x", "provider": "openai", "input_tokens": 10, "output_tokens": 5,
            "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0,
            "cost_micros": 42, "estimated": False, "status": "ok",
            "started_at": 1_700_000_000, "finished_at": "2023-11-14T22:13:21Z", **over}


def message_event(event_id: str, **over: Any) -> dict[str, Any]:
    return {"event_id": event_id, "request_id": "req-" + event_id, "account": "acct",
            "model": "gpt-x", "messages": [{"role": "user", "content": "hi"}],
            "answer": "hello", "api": "openai.chat", **over}


def post_usage(c: httpx.Client, event: dict[str, Any], *, token: str = NET,
               key: str | None = None) -> httpx.Response:
    return c.post(USAGE_PATH, json=event, headers={
        "authorization": f"Bearer {token}", "idempotency-key": key or event["event_id"]})


def post_message(c: httpx.Client, event: dict[str, Any], *, token: str = STO) -> httpx.Response:
    return c.post(MESSAGES_PATH, json=event, headers={
        "authorization": f"Bearer {token}", "idempotency-key": event["event_id"]})


def test_sinks_store_once_in_order(sinks: FakeSinks, sink_client: httpx.Client) -> None:
    assert post_usage(sink_client, usage_event("e2")).status_code == 201
    assert post_usage(sink_client, usage_event("e1")).status_code == 201
    assert post_usage(sink_client, usage_event("e2")).status_code == 200
    assert post_usage(sink_client, usage_event("e1", cost_micros=43)).status_code == 200
    assert post_message(sink_client, message_event("m1")).status_code == 201
    assert post_message(sink_client, message_event("m1")).status_code == 200
    assert [e["event_id"] for e in sinks.usage_events()] == ["e2", "e1"]
    assert sinks.usage_events()[1]["cost_micros"] == 42  # the first delivery stands
    assert sinks.messages() == [message_event("m1")]
    assert sinks.duplicates == 3 and sinks.conflicts == ["e1"]
    assert len(sinks.deliveries) == 6


def test_sinks_check_token_per_path(sinks: FakeSinks, sink_client: httpx.Client) -> None:
    assert post_usage(sink_client, usage_event("e1"), token=STO).status_code == 401
    assert post_message(sink_client, message_event("m1"), token=NET).status_code == 401
    r = sink_client.post(USAGE_PATH, json=usage_event("e1"), headers={"idempotency-key": "e1"})
    assert r.status_code == 401
    assert sinks.usage_events() == [] and sinks.messages() == []


def test_sinks_reject_bad_shapes(sinks: FakeSinks, sink_client: httpx.Client) -> None:
    def bad(r: httpx.Response, name: str) -> None:
        assert r.status_code == 400 and name in r.json()["error"]["message"], r.text

    event = usage_event("e1")
    del event["reasoning_tokens"]
    bad(post_usage(sink_client, event), "reasoning_tokens")
    bad(post_usage(sink_client, usage_event("e1", estimated=0)), "estimated")
    bad(post_usage(sink_client, usage_event("e1", input_tokens=True)), "input_tokens")
    bad(post_usage(sink_client, usage_event("e1", cost_micros=-1)), "cost_micros")
    bad(post_usage(sink_client, usage_event("e1", started_at="yesterday")), "started_at")
    bad(post_usage(sink_client, usage_event("e1", finished_at=1)), "finished_at")
    bad(post_usage(sink_client, usage_event("e1"), key="e2"), "Idempotency-Key")
    bad(post_message(sink_client, message_event("m1", messages="hi")), "messages")
    bad(post_message(sink_client, message_event("m1", answer=None)), "answer")
    r = sink_client.post(MESSAGES_PATH, content=b"[not json", headers={
        "authorization": f"Bearer {STO}", "idempotency-key": "m1"})
    assert r.status_code == 400
    assert sinks.usage_events() == [] and sinks.messages() == [] and sinks.duplicates == 0


def test_sink_faults(sinks: FakeSinks, sink_client: httpx.Client) -> None:
    sinks.down = "close"
    with pytest.raises(httpx.RemoteProtocolError):
        post_usage(sink_client, usage_event("e1"))
    sinks.down = "503"
    assert post_usage(sink_client, usage_event("e1")).status_code == 503
    sinks.down = None
    sinks.fail_next(2, 429)
    assert post_usage(sink_client, usage_event("e1")).status_code == 429
    assert post_message(sink_client, message_event("m1")).status_code == 429
    sinks.reject_event("e1", 400)
    assert post_usage(sink_client, usage_event("e1")).status_code == 400
    assert post_usage(sink_client, usage_event("e1")).status_code == 400
    sinks.reject_event("e1", None)
    sinks.slow_s = 0.2
    t0 = time.monotonic()
    assert post_usage(sink_client, usage_event("e1")).status_code == 201
    assert time.monotonic() - t0 >= 0.2
    assert [c.status for c in sinks.deliveries] == [None, 503, 429, 429, 400, 400, 201]
    assert len(sinks.usage_events()) == 1 and sinks.duplicates == 0
