"""`/metrics` (Prometheus text, SPEC §11 names): after a few calls it counts them by API,
model, provider and status, their tokens and cost, to the micro-USD the ledger captured;
the state gauges (holds open, breakers, outbox backlog) are there; with
METRICS_PUBLIC=false it needs the admin key."""

from __future__ import annotations

from typing import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import FakeProviderServer
from tests.harness import ADMIN_KEY, RouterProcess, ant, oai, router_config


@pytest.fixture(scope="module")
def private(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    with RouterProcess(tmp_path_factory.mktemp("metrics"), config,
                       env={"METRICS_PUBLIC": "false"}) as proc:
        yield proc


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


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
    assert ("aura_holds_open", ()) in samples
    assert value("aura_breaker_state", provider="oai") == 0, "closed"
    assert value("aura_outbox_pending", sink="usage") == 0
    assert key not in answer.text and ADMIN_KEY not in answer.text
