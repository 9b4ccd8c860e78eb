"""Usage export end to end: `GET /admin/usage` and `aura-router usage export` against the
real router, after real calls made with the official OpenAI SDK."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, router_config

MESSAGES = [{"role": "user", "content": "Say hello to the billing router."}]
INT_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
              "reasoning_tokens", "cost_micros", "overrun_micros")
COLUMNS = ["request_id", "account", "model", "provider", *INT_FIELDS[:5], "reported",
           "cost_micros", "at", "overrun_micros", "recovered"]


def _client(router: RouterProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0)


def _call(router: RouterProcess, key: str, *, stream: bool = False) -> str:
    """One chat completion; the request id the router gave it."""
    raw = _client(router, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=6, stream=stream)
    if stream:
        list(raw.parse())  # read the stream to its end: settlement follows it
    else:
        raw.parse()
    return raw.headers["x-request-id"]


def _export(router: RouterProcess, **params: Any) -> httpx.Response:
    return router.admin("GET", "/admin/usage", params=params)


def _rows(router: RouterProcess, **params: Any) -> list[dict[str, Any]]:
    response = _export(router, **params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["data"])
    return body["data"]


def _wait_recorded(router: RouterProcess, account: str, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(_rows(router, account=account)) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def _from_csv(text: str) -> list[dict[str, Any]]:
    """CSV rows typed back: integers as int, `reported` as bool."""
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == COLUMNS
    return [{**row, **{f: int(row[f]) for f in INT_FIELDS},
             **{f: {"true": True, "false": False}[row[f]] for f in ("reported", "recovered")}}
            for row in reader]


@pytest.fixture()
def two_accounts(router: RouterProcess, clean_fake: FakeProviderServer
                 ) -> dict[str, Any]:
    """Account a: two calls (plain, then streamed) with a pause between; b: one call."""
    a, key_a = router.new_account(5_000_000)
    b, key_b = router.new_account(5_000_000)
    started = time.time()
    first = _call(router, key_a)
    time.sleep(0.05)
    between = time.time()
    time.sleep(0.05)
    second = _call(router, key_a, stream=True)
    other = _call(router, key_b)
    _wait_recorded(router, a, 2)
    _wait_recorded(router, b, 1)
    return {"a": a, "key_a": key_a, "b": b, "key_b": key_b, "ids_a": [first, second],
            "ids_b": [other], "started": started, "between": between}


def test_json_export_is_that_accounts_requests_with_the_costs_users_see(
        router: RouterProcess, two_accounts: dict[str, Any]) -> None:
    rows = _rows(router, account=two_accounts["a"], format="json")
    assert [r["request_id"] for r in rows] == two_accounts["ids_a"], "oldest first"
    assert {r["account"] for r in rows} == {two_accounts["a"]}
    seen = {r["request_id"]: r for r in router.usage(two_accounts["key_a"])["recent"]}
    for row in rows:
        assert list(row) == COLUMNS
        assert row["model"] == "gpt-4o-mini" and row["provider"] == "oai"
        for field in INT_FIELDS:
            assert type(row[field]) is int, f"{field} must be an integer"
        assert type(row["reported"]) is bool and row["reported"]
        assert row["cost_micros"] == seen[row["request_id"]]["cost_micros"] > 0
        assert row["at"] == seen[row["request_id"]]["at"]
        assert row["at"].endswith("Z") and len(row["at"]) == 20
    spent = 5_000_000 - router.account(two_accounts["a"])["balance_micros"]
    assert sum(r["cost_micros"] for r in rows) == spent
    assert [r["request_id"] for r in _rows(router, account=two_accounts["b"])] == \
        two_accounts["ids_b"]


def test_unfiltered_export_holds_both_accounts_in_time_order(
        router: RouterProcess, two_accounts: dict[str, Any]) -> None:
    rows = _rows(router, since=str(two_accounts["started"]))
    ids = [r["request_id"] for r in rows]
    assert set(two_accounts["ids_a"] + two_accounts["ids_b"]) <= set(ids)
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)


def test_csv_export_parses_back_to_the_json_rows(
        router: RouterProcess, two_accounts: dict[str, Any]) -> None:
    as_json = _rows(router, account=two_accounts["a"])
    response = _export(router, account=two_accounts["a"], format="csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == \
        'attachment; filename="aura-usage.csv"'
    assert _from_csv(response.text) == as_json  # int() refuses "1190.0": no floats


def test_since_is_inclusive_until_exclusive_and_the_future_is_empty(
        router: RouterProcess, two_accounts: dict[str, Any]) -> None:
    a, (first, second) = two_accounts["a"], two_accounts["ids_a"]
    between = str(two_accounts["between"])
    assert [r["request_id"] for r in _rows(router, account=a, until=between)] == [first]
    assert [r["request_id"] for r in _rows(router, account=a, since=between)] == [second]
    assert _rows(router, account=a, since="2999-01-01T00:00:00Z") == []
    assert _rows(router, account=a, until="1970-01-02") == []
    assert len(_rows(router, account=a, since="2000-01-01T01:00:00+01:00", until="2999-01-01",
                     format="json")) == 2
    for cut in (between, _rows(router, account=a)[1]["at"]):  # unix seconds, then ISO
        before = [r["request_id"] for r in _rows(router, account=a, until=cut)]
        after = [r["request_id"] for r in _rows(router, account=a, since=cut)]
        assert before + after == [first, second], "windows split the rows, never twice"


def test_usage_rows_since_is_inclusive_and_until_exclusive(tmp_path: Path) -> None:
    import sqlite3

    from router.ledger.sqlite import SqliteDatabase
    from router.ledger.sqlite.export import read_usage_rows

    path = tmp_path / "ledger.sqlite3"
    SqliteDatabase(path).close()  # the schema
    with sqlite3.connect(path) as conn:
        for i, at in enumerate((100.0, 200.0, 200.0, 300.0)):
            conn.execute(
                "INSERT INTO usage (request_id, account, model, provider, input_tokens, "
                "output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, "
                "reported, cost_micros, at) VALUES (?, 'acct', 'm', 'p', 1, 2, 0, 0, 0, 1, 7, ?)",
                (f"req_{i}", at))
    ids = lambda since, until: [r["request_id"] for r in  # noqa: E731
                                read_usage_rows(path, None, since, until, 10)]
    assert ids(200.0, 300.0) == ["req_1", "req_2"]
    assert ids(None, 200.0) == ["req_0"] and ids(300.0, None) == ["req_3"]
    assert ids(200.0, 200.0) == [] and ids(None, None) == ["req_0", "req_1", "req_2", "req_3"]
    assert read_usage_rows(path, "acct", None, None, 2)[0]["at"] == "1970-01-01T00:01:40Z"
    assert read_usage_rows(path, "nobody", None, None, 10) == []


def test_limit_cuts_the_oldest_first_and_says_there_is_more(
        router: RouterProcess, two_accounts: dict[str, Any]) -> None:
    response = _export(router, account=two_accounts["a"], limit="1")
    body = response.json()
    assert body["count"] == 1 and body["has_more"] is True
    assert body["data"][0]["request_id"] == two_accounts["ids_a"][0]
    assert _export(router, account=two_accounts["a"], limit="2").json()["has_more"] is False
    csv_cut = _export(router, account=two_accounts["a"], limit="1", format="csv")
    assert csv_cut.headers["x-aura-has-more"] == "true"


@pytest.mark.parametrize("param,value", [
    ("format", "xml"), ("since", "yesterday"), ("until", "nan"), ("since", "2026-13-01"),
    ("limit", "0"), ("limit", "abc"), ("limit", "100001"), ("limit", "9" * 5000)])
def test_bad_parameters_are_400_in_openai_shape_naming_the_parameter(
        router: RouterProcess, param: str, value: str) -> None:
    response = _export(router, **{param: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and f"'{param}'" in error["message"]


def test_usage_export_needs_the_admin_key(router: RouterProcess) -> None:
    _, user_key = router.new_account(0)
    for headers in ({}, {"authorization": "Bearer wrong"},
                    {"authorization": f"Bearer {user_key}"}):
        response = httpx.get(router.base_url + "/admin/usage", headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["type"] == "authentication_error"
        assert "data" not in response.json()


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "actors.cli", *args], cwd=str(data_dir),
                          env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(data_dir),
                               "HOME": str(data_dir)},
                          capture_output=True, text=True, timeout=30)


def test_cli_usage_export_reads_the_ledger_of_a_running_server(
        tmp_path: Path, clean_fake: FakeProviderServer) -> None:
    config = router_config(clean_fake.openai_base_url, clean_fake.anthropic_base_url)
    with RouterProcess(tmp_path, config) as router:
        a, key_a = router.new_account(2_000_000)
        _, key_b = router.new_account(2_000_000)
        ids = [_call(router, key_a), _call(router, key_a, stream=True)]
        _call(router, key_b)
        _wait_recorded(router, a, 2)
        served = _rows(router, account=a)

        exported = _cli(tmp_path, "usage", "export", "--account", a, "--format", "csv")
        assert exported.returncode == 0, exported.stderr
        rows = _from_csv(exported.stdout)
        assert [r["request_id"] for r in rows] == ids
        assert rows == served
        assert sum(r["cost_micros"] for r in rows) == \
            2_000_000 - router.account(a)["balance_micros"]

        as_json = _cli(tmp_path, "usage", "export", "--account", a, "--since",
                       "2999-01-01")
        assert as_json.returncode == 0 and json.loads(as_json.stdout) == []
        everything = json.loads(_cli(tmp_path, "usage", "export").stdout)
        assert len(everything) == 3

        bad = _cli(tmp_path, "usage", "export", "--since", "last tuesday")
        assert bad.returncode == 2 and "last tuesday" in bad.stderr and not bad.stdout
