"""Admin API: bad input gets a clear error and changes nothing; key limits bite."""

from __future__ import annotations

import openai
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess


@pytest.mark.parametrize("amount,status", [
    (1.5, 400), ("100", 400), (True, 400), (None, 400), (0, 400), (-2_000_000, 409)])
def test_bad_credit_amounts_are_refused_and_change_nothing(
        router: RouterProcess, amount: object, status: int) -> None:
    account, _ = router.new_account(1_000_000)
    r = router.admin("POST", f"/admin/accounts/{account}/credits",
                     json={"amount_micros": amount})
    assert r.status_code == status
    assert r.json()["error"]["message"]
    state = router.account(account)
    assert (state["balance_micros"], state["held_micros"]) == (1_000_000, 0)
    assert [e["kind"] for e in router.ledger(account)] == ["grant"]


def test_negative_credit_within_available_is_an_adjustment(router: RouterProcess) -> None:
    account, _ = router.new_account(1_000_000)
    r = router.admin("POST", f"/admin/accounts/{account}/credits",
                     json={"amount_micros": -250_000, "reason": "refund reversal"})
    assert r.status_code == 200 and r.json()["available_micros"] == 750_000
    assert [(e["kind"], e["amount_micros"]) for e in router.ledger(account)] == [
        ("grant", 1_000_000), ("adjust", -250_000)]


def test_unknown_account_is_404_and_admin_needs_its_key(router: RouterProcess) -> None:
    assert router.admin("GET", "/admin/accounts/nobody-here").status_code == 404
    assert router.admin("GET", "/admin/accounts/nobody-here/ledger").status_code == 404
    import httpx
    r = httpx.get(router.base_url + "/admin/keys", headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["x-should-retry"] == "false"


def test_key_limited_to_some_models_gets_403_for_others(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = router.new_account(1_000_000, models=["gpt-4o-mini"])
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", max_tokens=2,
                                   messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4o", max_tokens=2,
                                       messages=[{"role": "user", "content": "hi"}])
    assert len(clean_fake.state.received) == 1


def test_an_expired_key_is_refused_on_the_next_request(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    import time

    import trio

    from router.ledger.sqlite import SqliteDatabase, SqliteKeyStore

    account, _ = router.new_account(1_000_000)
    db = SqliteDatabase(router.data_dir / "ledger.sqlite3")  # the server's own ledger file
    key, _record = trio.run(lambda: SqliteKeyStore(db).issue(
        account, expires_at=time.time() + 1.0, at=time.time()))
    db.close()
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="gpt-4o-mini", max_tokens=2, messages=messages)
    time.sleep(1.2)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", max_tokens=2, messages=messages)
    assert "expired" in raised.value.message
