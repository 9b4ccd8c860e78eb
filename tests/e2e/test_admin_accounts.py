"""`GET /admin/accounts` on the real router: pages that follow `next_after` visit every
account of a prefix once, in id order, with the figures `GET /admin/accounts/{account}`
gives; a prefix is literal; a bad `limit` (or an overlong prefix) is a 400 naming the
parameter; without the admin key, a 401.

The router is the session's, shared with other tests: each test lists under a prefix
of its own."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.harness import RouterProcess


def _grant(router: RouterProcess, account: str, micros: int) -> None:
    r = router.admin("POST", f"/admin/accounts/{account}/credits",
                     json={"amount_micros": micros, "reason": "test"})
    assert r.status_code == 200, r.text


def _page(router: RouterProcess, **params: Any) -> dict[str, Any]:
    r = router.admin("GET", "/admin/accounts", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _all_pages(router: RouterProcess, prefix: str, limit: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"prefix": prefix, "limit": limit}
    while True:
        page = _page(router, **params)
        assert len(page["data"]) <= limit
        seen += page["data"]
        if not page["has_more"]:
            assert page["next_after"] == (page["data"][-1]["account"] if page["data"]
                                          else None)
            return seen
        assert len(page["data"]) == limit
        assert page["next_after"] == page["data"][-1]["account"]
        params["after"] = page["next_after"]


def test_pages_visit_every_account_of_a_prefix_once_in_order(router: RouterProcess) -> None:
    base = "lst" + uuid.uuid4().hex[:8]
    ids = [f"{base}-{n:02d}" for n in range(11)] + [f"{base}-B", f"{base}-b", f"{base}-é"]
    for n, account in enumerate(ids):
        _grant(router, account, 1_000 * (n + 1))
    _grant(router, ids[0], -400)
    for limit in (1, 4, 14, 1000):
        seen = _all_pages(router, base, limit)
        assert [a["account"] for a in seen] == sorted(ids), limit
    for item in _all_pages(router, base, 5):
        assert item == {k: v for k, v in router.account(item["account"]).items()
                        if k != "keys"}
    first = _page(router, prefix=base, limit=1)["data"][0]
    assert first["account"] == ids[0] and first["available_micros"] == 600
    # Past the prefix's range, and the default page.
    last = _page(router, prefix=base, after=sorted(ids)[-1])
    assert last == {"data": [], "has_more": False, "next_after": None}
    assert [a["account"] for a in _page(router, prefix=base)["data"]] == sorted(ids)


def test_a_prefix_is_literal_and_an_empty_one_is_none(router: RouterProcess) -> None:
    base = "lit" + uuid.uuid4().hex[:8]
    ids = [f"{base}%x", f"{base}_x", f"{base}ax", f"{base}AX", f"{base}\\x", f"{base}日本"]
    for account in ids:
        _grant(router, account, 10)
    for prefix in (f"{base}%", f"{base}_", f"{base}a", f"{base}A", f"{base}\\",
                   f"{base}日"):
        data = _page(router, prefix=prefix)["data"]
        assert [a["account"] for a in data] == [i for i in sorted(ids)
                                                 if i.startswith(prefix)], prefix
        assert len(data) == 1
    everything = _page(router, prefix="", after=base, limit=len(ids))
    assert [a["account"] for a in everything["data"]] == sorted(ids)


@pytest.mark.parametrize("query,param", [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=-1", "limit"),
    ("limit=ten", "limit"), ("limit=1.5", "limit"), ("prefix=" + "p" * 201, "prefix"),
    ("after=" + "a" * 201, "after")])
def test_bad_parameters_are_a_400_naming_them(router: RouterProcess, query: str,
                                              param: str) -> None:
    r = router.admin("GET", f"/admin/accounts?{query}")
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and param in error["message"]


def test_the_listing_needs_the_admin_key(router: RouterProcess) -> None:
    url = router.base_url + "/admin/accounts"
    assert httpx.get(url, timeout=10).status_code == 401
    r = httpx.get(url, headers={"authorization": "Bearer wrong"}, timeout=10)
    assert r.status_code == 401 and "data" not in r.json()
    assert router.admin("GET", "/admin/accounts?limit=1000").status_code == 200


def test_an_accounts_latest_calls_come_newest_first_with_what_each_cost(
        router: RouterProcess, clean_fake: Any) -> None:
    from tests.harness import oai

    account, key = router.new_account(2_000_000)
    ids = [oai(router, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=n, messages=[{"role": "user", "content": "hi"}])
        .headers["x-request-id"] for n in (3, 5, 7)]
    r = router.admin("GET", f"/admin/accounts/{account}/usage")
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    assert [row["request_id"] for row in rows] == ids[::-1], "newest first"
    exported = {row["request_id"]: row for row in router.admin(
        "GET", f"/admin/usage?account={account}").json()["data"]}
    assert all(row == exported[row["request_id"]] for row in rows), "the export's rows"
    assert [row["request_id"] for row in router.admin(
        "GET", f"/admin/accounts/{account}/usage?limit=2").json()["data"]] == ids[:0:-1]
    for bad in ("0", "201", "two"):
        refused = router.admin("GET", f"/admin/accounts/{account}/usage?limit={bad}")
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "limit"
    assert router.admin("GET", f"/admin/accounts/nobody-{uuid.uuid4().hex}/usage"
                        ).status_code == 404
