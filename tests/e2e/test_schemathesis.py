"""Schemathesis against the real router on loopback: every route of /openapi.json fuzzed
(examples, coverage, fuzzing and stateful phases; links such as POST /admin/keys ->
DELETE /admin/keys/{key_id}), each answer checked against the document: no 5xx, status,
content type and body as documented. Afterwards no hold is left open.

The run is deterministic (a fixed seed, few examples per operation) so that CI sees the
same requests every time; `SCHEMATHESIS_EXAMPLES` raises the count for a longer run.
The figures (requests generated, failures) are printed and recorded as properties.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from tests.fakes import FakeProviderServer
from tests.harness import ADMIN_KEY, RouterProcess, eventually, router_config

CHECKS = ("not_a_server_error", "response_schema_conformance", "status_code_conformance",
          "content_type_conformance")
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20261207"))
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "10"))
GRANT = 50_000_000
MODEL_CALLS = {"POST /v1/chat/completions", "POST /v1/responses", "POST /v1/messages",
               "POST /model/{model}/invoke", "POST /model/{model}/invoke-with-response-stream"}
MODE = os.environ.get("SCHEMATHESIS_MODE", "all")


@pytest.fixture(scope="module")
def fuzzed(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    with RouterProcess(tmp_path_factory.mktemp("schemathesis"),
                       router_config(fake.openai_base_url, fake.anthropic_base_url),
                       env={"MAX_BODY_BYTES": str(256 * 1024)}) as proc:
        yield proc


def _config(router: RouterProcess, key: str) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "base-url": router.base_url,
        "suppress-health-check": ["all"],
        "request-timeout": 20,
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "mode": MODE,
                       "no-shrink": True},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
                   "fuzzing": {"enabled": True},
                   "stateful": {"enabled": True, "max-steps": 20}},
        "auth": {"openapi": {"routerKey": {"bearer": key}, "apiKeyHeader": {"api_key": key},
                             "adminKey": {"bearer": ADMIN_KEY}}},
    })


def _run(router: RouterProcess, key: str
         ) -> tuple[int, list[str], Counter[str], Counter[str]]:
    """(requests sent, failures as text, requests per operation, requests per phase)."""
    schema = schemathesis.openapi.from_url(router.base_url + "/openapi.json",
                                           config=_config(router, key))
    requests = 0
    failures: list[str] = []
    per_operation: Counter[str] = Counter()
    per_phase: Counter[str] = Counter()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            if event.status == Status.ERROR:
                failures.append(f"error: {recorder.label}")
            for case_id, node in recorder.cases.items():
                if case_id in recorder.interactions:
                    requests += 1
                    per_phase[str(event.phase.value)] += 1
                    label = (f"{node.value.operation.method.upper()} "
                             f"{node.value.operation.path}")
                    per_operation[label] += 1
                    response = recorder.interactions[case_id].response
                    if response is not None and response.status_code == 200 and (
                            label in MODEL_CALLS):
                        per_phase["model calls answered 200"] += 1
                for check in recorder.checks.get(case_id, []):
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        case = check.failure_info.failure
                        failures.append(f"{check.name}: {node.value.method} "
                                        f"{node.value.formatted_path}: {case.title}: "
                                        f"{case.message[:400]}")
        elif isinstance(event, events.NonFatalError):
            failures.append(f"error: {event.label}: {event.info.message[:400]}")
        elif isinstance(event, events.FatalError):
            failures.append(f"fatal: {event.exception!r}")
    return requests, failures, per_operation, per_phase


def test_every_route_answers_as_documented_and_leaves_no_hold(
        fuzzed: RouterProcess, record_property: Any, tmp_path: Path) -> None:
    account, key = fuzzed.new_account(GRANT)
    requests, failures, per_operation, per_phase = _run(fuzzed, key)
    summary = (f"schemathesis: {requests} requests generated over {len(per_operation)} "
               f"operations ({', '.join(f'{p} {n}' for p, n in sorted(per_phase.items()))}), "
               f"{len(failures)} failures")
    record_property("schemathesis_requests", requests)
    record_property("schemathesis_failures", len(failures))
    (tmp_path / "schemathesis-summary.txt").write_text(
        summary + "\n" + "\n".join(f"{n:5d} {op}" for op, n in sorted(per_operation.items()))
        + "\n" + "\n".join(failures))
    record_property("figures", summary)  # printed at the end of the run (tests/conftest.py)
    assert per_phase["stateful"] > 0, "the stateful phase (links) sent nothing"
    # Some calls were answered (and billed), so that "no hold left open" means something.
    assert per_phase["model calls answered 200"] > 0
    unique = sorted(set(failures))
    assert not unique, f"{len(unique)} distinct failures:\n" + "\n".join(unique[:40])
    # Schemathesis leaves out the document it was loaded from (test_openapi.py reads it).
    documented = {f"{m.upper()} {p}" for p, item in _paths(fuzzed).items() for m in item
                  if p != "/openapi.json"}
    missed = documented - set(per_operation)
    assert not missed, f"never exercised: {missed}"
    eventually(lambda: fuzzed.account(account)["held_micros"] == 0, within_s=10,
               what="every hold released or captured")


def _paths(router: RouterProcess) -> dict[str, dict[str, Any]]:
    return httpx.get(router.base_url + "/openapi.json").json()["paths"]


# --- what the fuzzing found, pinned ---------------------------------------------------------

def test_a_ledger_position_past_64_bits_is_a_400_not_a_crash(fuzzed: RouterProcess) -> None:
    account, _ = fuzzed.new_account(1_000)
    r = fuzzed.admin("GET", f"/admin/accounts/{account}/ledger?after={2**64}")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert fuzzed.admin("GET", f"/admin/accounts/{account}/ledger?after={2**63 - 1}"
                        ).json()["data"] == []


def test_resuming_a_json_answer_gives_the_whole_answer_whatever_the_position(
        fuzzed: RouterProcess) -> None:
    _, key = fuzzed.new_account(5_000_000)
    headers = {"authorization": f"Bearer {key}"}
    first = httpx.post(fuzzed.base_url + "/v1/chat/completions", timeout=10,
                       headers={**headers, "x-aura-resumable": "true"},
                       json={"model": "gpt-4o-mini", "max_tokens": 16,
                             "messages": [{"role": "user", "content": "hi"}]})
    assert first.status_code == 200, first.text
    request_id = first.headers["x-request-id"]
    for after in ("0", "1", "7"):
        again = httpx.get(fuzzed.base_url + f"/v1/streams/{request_id}?after={after}",
                          headers=headers, timeout=10)
        assert again.status_code == 200
        assert again.headers["content-type"].startswith("application/json")
        assert again.json() == first.json()


@pytest.mark.parametrize("amount", [2**63, 2**62, -(2**53)])
def test_a_credit_too_large_for_the_ledger_is_a_400_and_the_balance_stays_an_integer(
        fuzzed: RouterProcess, amount: int) -> None:
    account, _ = fuzzed.new_account(1_000)
    r = fuzzed.admin("POST", f"/admin/accounts/{account}/credits",
                     json={"amount_micros": amount})
    assert r.status_code == 400 and r.json()["error"]["param"] == "amount_micros"
    assert fuzzed.account(account)["balance_micros"] == 1_000
