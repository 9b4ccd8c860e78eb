"""`/metrics` (Prometheus text, SPEC §11 names): after a few calls it counts them by API,
model, provider and status, their tokens and cost, to the micro-USD the ledger captured,
their time to first token and the ledger round trips they made; the state gauges (holds
open, streams open by transport, websocket connections, breakers, outbox backlog) follow
what is open; each failed upstream attempt is counted by provider and reason; with
WORKERS=2 one scrape, whichever worker answers it, counts the calls both served; with
METRICS_PUBLIC=false it needs the admin key."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from tests.fakes import FakeProviderServer
from tests.harness import ADMIN_KEY, RouterProcess, ant, eventually, oai, router_config

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def private(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    with RouterProcess(tmp_path_factory.mktemp("metrics"), config,
                       env={"METRICS_PUBLIC": "false"}) as proc:
        yield proc


def _samples(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(router: RouterProcess) -> Samples:
    """One scrape, on a connection of its own (with WORKERS=N: whichever worker)."""
    answer = httpx.get(router.base_url + "/metrics", timeout=10,
                       headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert answer.status_code == 200, answer.text
    return _samples(answer.text)


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_calls_tokens_and_cost_as_the_ledger_billed_them(
        private: RouterProcess, clean_fake: FakeProviderServer) -> None:
    refused = httpx.get(private.base_url + "/metrics", timeout=10)
    assert refused.status_code == 401, "METRICS_PUBLIC=false: the admin key is needed"
    account, key = private.new_account(5_000_000)
    oai(private, key).chat.completions.create(
        model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    ant(private, key).messages.create(model="claude-3-5-haiku-latest", max_tokens=5,
                                      messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        oai(private, key).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    answer = httpx.get(private.base_url + "/metrics", timeout=10,
                       headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = _samples(answer.text)
    rows = private.admin("GET", f"/admin/usage?account={account}").json()["data"]

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    for row in rows:
        api = "openai.chat" if row["model"] == "gpt-4o-mini" else "anthropic.messages"
        assert value("aura_requests_total", api=api, model=row["model"],
                     provider=row["provider"], status="200") == 1
        assert value("aura_cost_micros_total", model=row["model"]) == row["cost_micros"] > 0
        assert value("aura_tokens_total", model=row["model"], kind="output") == \
            row["output_tokens"] > 0
        assert value("aura_tokens_total", model=row["model"], kind="input") == \
            row["input_tokens"]
    assert value("aura_requests_total", api="openai.chat", model="", provider="",
                 status="404") == 1, "refusals are counted too"
    assert value("aura_request_duration_seconds_count") == 3
    assert value("aura_time_to_first_token_seconds_count") == 2, "the two answers, not the 404"
    assert value("aura_ledger_seconds_count", op="hold") == 2
    assert value("aura_ledger_seconds_count", op="settle") == 2
    assert value("aura_provider_failures_total", provider="oai", reason="status_5xx") == 0
    assert ("aura_holds_open", ()) in samples
    assert value("aura_breaker_state", provider="oai") == 0, "closed"
    assert value("aura_outbox_pending", sink="usage") == 0
    assert key not in answer.text and ADMIN_KEY not in answer.text


async def test_open_streams_and_websocket_connections_are_gauged_while_they_last(
        private: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.chunk_delay_s = 0.05
    clean_fake.state.reply_words = 400  # ~20 s: open until the client lets go
    _, key = private.new_account(5_000_000)
    before = scrape(private)
    stream = oai(private, key).chat.completions.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "hi"}])
    next(iter(stream))
    now = scrape(private)
    assert sample(now, "aura_active_streams", transport="http") == 1
    assert sample(now, "aura_holds_open") == 1
    stream.close()  # the client hangs up: the stream ends, its hold is settled
    eventually(lambda: sample(scrape(private), "aura_holds_open") == 0,
               what="the hung-up stream to be settled")
    assert sample(scrape(private), "aura_active_streams", transport="http") == 0

    ws_url = private.base_url.replace("http://", "ws://") + "/v1/ws"
    async with open_websocket_url(ws_url, extra_headers=[
            (b"authorization", f"Bearer {key}".encode())]) as ws:
        assert sample(scrape(private), "aura_ws_connections") == 1
        await ws.send_message(json.dumps({"type": "request", "id": "s1", "api": "openai.chat",
                                          "body": {"model": "gpt-4o-mini", "stream": True,
                                                   "messages": [{"role": "user",
                                                                 "content": "hi"}]}}))
        assert json.loads(await ws.get_message())["type"] == "event"
        now = scrape(private)
        assert sample(now, "aura_active_streams", transport="ws") == 1
        assert sample(now, "aura_active_streams", transport="http") == 0
        await ws.send_message(json.dumps({"type": "cancel", "id": "s1"}))
        while json.loads(await ws.get_message())["type"] != "done":
            pass
    eventually(lambda: sample(scrape(private), "aura_ws_connections") == 0,
               what="the closed websocket to be uncounted")
    after = scrape(private)
    assert sample(after, "aura_active_streams", transport="ws") == 0
    assert sample(after, "aura_holds_open") == 0
    assert sample(after, "aura_time_to_first_token_seconds_count") - \
        sample(before, "aura_time_to_first_token_seconds_count") == 2, "both streams' first token"


DEAD_PROVIDER = """
[[providers]]
name = "dead"
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
api_keys = ["sk-fake-dead-1"]
timeout_connect_s = 2

[[models]]
id = "dead-model"
route = ["dead:gpt-4o-mini"]
input_per_mtok = "0.15"
output_per_mtok = "0.60"
max_output_tokens = 1000
"""


def test_each_failed_upstream_attempt_is_counted_by_provider_and_reason(
        fake: FakeProviderServer, clean_fake: FakeProviderServer, tmp_path: Path) -> None:
    with socket.socket() as closed:  # bound, never listening: every connect is refused
        closed.bind(("127.0.0.1", 0))
        config = router_config(fake.openai_base_url, fake.anthropic_base_url,
                               DEAD_PROVIDER.format(port=closed.getsockname()[1]))
        with RouterProcess(tmp_path, config, env={"METRICS_PUBLIC": "false"}) as router:
            _, key = router.new_account(5_000_000)
            client = oai(router, key)
            ask = {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
            with pytest.raises(openai.APIStatusError):
                client.chat.completions.create(model="dead-model", **ask)
            clean_fake.state.fail_status = 500
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model="gpt-4o-mini", **ask)
            clean_fake.state.fail_status = 401
            with pytest.raises(openai.APIStatusError):
                client.chat.completions.create(model="gpt-4o-mini", **ask)
            clean_fake.state.fail_status = None
            clean_fake.state.cut_after_chunks = 2  # the connection drops mid-answer
            with pytest.raises(openai.APIError):
                for _ in client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                        **ask | {"max_tokens": 50}):
                    pass
            samples = scrape(router)
    failures = {labels: value for (name, labels), value in samples.items()
                if name == "aura_provider_failures_total" and value}
    assert failures == {(("provider", "dead"), ("reason", "connect")): 1,
                        (("provider", "oai"), ("reason", "status_5xx")): 1,
                        (("provider", "oai"), ("reason", "auth")): 1,
                        (("provider", "oai"), ("reason", "midstream")): 1}


def _served_by(router: RouterProcess, account: str) -> dict[int, int]:
    """Worker pid -> how many of the account's holds it took (holds name their instance)."""
    conn = sqlite3.connect(str(router.data_dir / "ledger.sqlite3"))
    try:
        return dict(conn.execute(
            "SELECT i.pid, COUNT(*) FROM holds h JOIN instances i ON i.id = h.owner "
            "WHERE h.account = ? GROUP BY i.pid", (account,)).fetchall())
    finally:
        conn.close()


def _metrics_dir(pid: int) -> str:
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    return env[b"PROMETHEUS_MULTIPROC_DIR"].decode()


def test_with_two_workers_one_scrape_counts_the_calls_of_both(
        fake: FakeProviderServer, clean_fake: FakeProviderServer, tmp_path: Path) -> None:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    with RouterProcess(tmp_path, config, env={"WORKERS": "2"}) as router:
        account, key = router.new_account(50_000_000)
        calls = 0
        while len(_served_by(router, account)) < 2 or calls < 10:
            assert calls < 200, "the kernel never gave the second worker a connection"
            oai(router, key).chat.completions.create(  # a fresh connection each time
                model="gpt-4o-mini", max_tokens=5,
                messages=[{"role": "user", "content": "hi"}])
            calls += 1
        served = _served_by(router, account)
        assert len(served) == 2 and sum(served.values()) == calls
        rows = router.admin("GET", f"/admin/usage?account={account}").json()["data"]
        output = sum(row["output_tokens"] for row in rows)
        cost = sum(row["cost_micros"] for row in rows)
        for _ in range(6):  # each on a new connection: the kernel picks the worker
            samples = scrape(router)
            assert sample(samples, "aura_requests_total", api="openai.chat",
                          model="gpt-4o-mini", provider="oai", status="200") == calls
            assert sample(samples, "aura_tokens_total", model="gpt-4o-mini",
                          kind="output") == output
            assert sample(samples, "aura_cost_micros_total", model="gpt-4o-mini") == cost
            assert sample(samples, "aura_ledger_seconds_count", op="hold") == calls
            assert sample(samples, "aura_holds_open") == 0
            assert sample(samples, "aura_breaker_state", provider="oai") == 0
        directory = _metrics_dir(next(iter(served)))
        assert os.path.isdir(directory)
    assert not os.path.exists(directory), "the supervisor removes the workers' directory"
