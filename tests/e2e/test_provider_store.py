"""The provider store through the real server: a provider added, changed and removed with
`/admin/providers/{name}` serves (and is billed) at once, without a restart; its keys never
show; without ROUTER_SECRET_KEY keys are refused; a change another process writes to the
same ledger is picked up by the watcher."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any, Iterator

import openai
import pytest
import trio

from router.config import load_config
from router.ledger.stores import open_stores
from router.provider_store import StoredProvider
from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, oai, router_config

SECRET = secrets.token_urlsafe(32)
KEY_ONE = "sk-store-one-" + "a" * 24
KEY_TWO = "sk-store-two-" + "b" * 24
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def other_fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


@pytest.fixture(scope="module")
def stored_router(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[RouterProcess]:
    with RouterProcess(tmp_path_factory.mktemp("store"),
                       router_config(fake.openai_base_url, fake.anthropic_base_url),
                       env={"ROUTER_SECRET_KEY": SECRET}) as proc:
        yield proc


@pytest.fixture()
def fakes(fake: FakeProviderServer, other_fake: FakeProviderServer
          ) -> Iterator[tuple[FakeProviderServer, FakeProviderServer]]:
    for server in (fake, other_fake):
        server.state.reset()
    yield fake, other_fake
    for server in (fake, other_fake):
        server.state.reset()


def _provider(base_url: str, *keys: str, kind: str = "openai") -> dict[str, Any]:
    return {"kind": kind, "base_url": base_url, "api_keys": list(keys),
            "strategy": "round_robin", "max_concurrent": 8, "timeout_connect_s": 2,
            "timeout_idle_s": 5}


def _bearer(server: FakeProviderServer) -> list[str]:
    return [r.headers.get("authorization", "") for r in server.state.snapshot()
            if r.path.startswith("/v1/chat")]


def test_a_stored_provider_serves_is_billed_and_is_swapped_then_removed_without_restart(
        stored_router: RouterProcess,
        fakes: tuple[FakeProviderServer, FakeProviderServer]) -> None:
    first, second = fakes
    router = stored_router
    account, key = router.new_account(5_000_000)
    client = oai(router, key)

    r = router.admin("POST", "/admin/providers/extra", json=_provider(
        second.openai_base_url, KEY_ONE))
    assert r.status_code == 201, r.text
    assert KEY_ONE not in r.text and "sk-store" not in r.text
    view = r.json()
    assert (view["name"], view["source"], view["keys_present"], view["key_count"]) == (
        "extra", "store", True, 1)
    assert "api_keys" not in view

    answer = client.chat.completions.create(model="extra/gpt-4o-mini", messages=HI,
                                            max_tokens=5)
    assert answer.choices[0].message.content
    assert _bearer(second) == [f"Bearer {KEY_ONE}"] and _bearer(first) == []
    bill = router.last_usage(key)
    assert bill["provider"] == "extra" and bill["cost_micros"] > 0
    assert router.account(account)["balance_micros"] == 5_000_000 - bill["cost_micros"]

    # Another key and another upstream: the next call goes there, no restart.
    r = router.admin("POST", "/admin/providers/extra", json=_provider(
        first.openai_base_url, KEY_TWO))
    assert r.status_code == 200, r.text
    client.chat.completions.create(model="extra/gpt-4o-mini", messages=HI, max_tokens=5)
    assert _bearer(first) == [f"Bearer {KEY_TWO}"]
    assert _bearer(second) == [f"Bearer {KEY_ONE}"], "the old upstream got nothing more"

    shown = router.admin("GET", "/admin/providers/extra")
    assert shown.status_code == 200
    assert "sk-store" not in shown.text and "v1:" not in shown.text
    assert (shown.json()["keys_present"], shown.json()["key_count"],
            shown.json()["base_url"]) == (True, 1, first.openai_base_url)
    assert shown.json()["stats"]["running"] is True
    listing = {p["name"]: p for p in router.admin("GET", "/admin/providers").json()["data"]}
    assert listing["extra"]["source"] == "store" and listing["oai"]["source"] == "config"
    assert "sk-store" not in router.admin("GET", "/admin/providers").text

    r = router.admin("DELETE", "/admin/providers/extra")
    assert (r.status_code, r.json()) == (200, {"name": "extra", "deleted": True})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="extra/gpt-4o-mini", messages=HI, max_tokens=5)
    assert len(_bearer(first)) == 1 and len(_bearer(second)) == 1, "nothing reached them"
    assert router.admin("DELETE", "/admin/providers/extra").status_code == 404
    assert router.admin("GET", "/admin/providers/extra").status_code == 404
    assert "extra" not in {p["name"] for p in
                           router.admin("GET", "/admin/providers").json()["data"]}
    log = "".join(router.output)
    assert "provider extra: removed" in log
    assert KEY_ONE not in log and KEY_TWO not in log, "a stored key reached the log"


def test_a_stored_provider_replaces_a_configured_one_by_name_until_it_is_removed(
        stored_router: RouterProcess,
        fakes: tuple[FakeProviderServer, FakeProviderServer]) -> None:
    first, second = fakes
    router = stored_router
    _, key = router.new_account(5_000_000)
    client = oai(router, key)

    assert router.admin("GET", "/admin/providers/oai").json()["source"] == "config"
    r = router.admin("POST", "/admin/providers/oai", json=_provider(
        second.openai_base_url, KEY_ONE))
    assert r.status_code == 201, r.text
    client.chat.completions.create(model="house-model", messages=HI, max_tokens=5)
    assert _bearer(second) == [f"Bearer {KEY_ONE}"] and _bearer(first) == []

    assert router.admin("DELETE", "/admin/providers/oai").status_code == 200
    client.chat.completions.create(model="house-model", messages=HI, max_tokens=5)
    assert _bearer(first) == ["Bearer sk-fake-openai-1"], "the configured one is back"
    r = router.admin("DELETE", "/admin/providers/oai")
    assert r.status_code == 409 and "configuration" in r.json()["error"]["message"]


@pytest.mark.parametrize("body,field", [
    ({"kind": "nope", "base_url": "http://127.0.0.1:1/v1", "api_keys": ["k"]}, "kind"),
    ({"kind": "openai", "base_url": "ftp://x", "api_keys": ["k"]}, "base_url"),
    ({"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "api_keys": "k"}, "api_keys"),
    ({"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "api_keys": ["k"],
      "strategey": "priority"}, "strategey"),
    ({"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "api_keys": ["k"],
      "max_concurrent": 0}, "max_concurrent"),
])
def test_a_bad_provider_is_refused_naming_the_field_and_nothing_is_stored(
        stored_router: RouterProcess, body: dict[str, Any], field: str) -> None:
    r = stored_router.admin("POST", "/admin/providers/bad", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == field and field in r.json()["error"]["message"]
    assert stored_router.admin("GET", "/admin/providers/bad").status_code == 404


def test_without_router_secret_key_keys_are_refused_but_keyless_providers_are_stored(
        fake: FakeProviderServer, tmp_path: Path) -> None:
    with RouterProcess(tmp_path, router_config(fake.openai_base_url,
                                               fake.anthropic_base_url)) as router:
        r = router.admin("POST", "/admin/providers/extra", json=_provider(
            fake.openai_base_url, KEY_ONE))
        assert r.status_code == 400 and r.json()["error"]["param"] == "api_keys"
        assert "ROUTER_SECRET_KEY" in r.json()["error"]["message"]
        assert KEY_ONE not in r.text
        assert router.admin("GET", "/admin/providers/extra").status_code == 404
        r = router.admin("POST", "/admin/providers/local", json=_provider(
            fake.openai_base_url, kind="ollama"))
        assert r.status_code == 201, r.text
        assert (r.json()["keys_present"], r.json()["key_count"]) == (False, 0)


async def _put_from_outside(data_dir: Path, provider: StoredProvider) -> None:
    config = load_config(env={"DATA_DIR": str(data_dir), "ROUTER_SECRET_KEY": SECRET},
                         cwd=data_dir)
    stores = open_stores(config)
    try:
        async with stores.session():
            assert stores.provider_store is not None
            await stores.provider_store.put(provider)
    finally:
        stores.close()


def test_a_change_written_by_another_process_is_picked_up_by_the_watcher(
        stored_router: RouterProcess,
        fakes: tuple[FakeProviderServer, FakeProviderServer]) -> None:
    _, second = fakes
    router = stored_router
    _, key = router.new_account(5_000_000)
    client = oai(router, key)
    trio.run(_put_from_outside, router.data_dir, StoredProvider(
        "outside", "openai", second.openai_base_url, (KEY_TWO,)))
    deadline = time.monotonic() + 30  # the watcher polls every few seconds
    while True:
        try:
            client.chat.completions.create(model="outside/gpt-4o-mini", messages=HI,
                                           max_tokens=5)
            break
        except openai.NotFoundError:
            assert time.monotonic() < deadline, "the watcher never picked the change up"
            time.sleep(0.2)
    assert _bearer(second) == [f"Bearer {KEY_TWO}"]
    assert router.admin("GET", "/admin/providers/outside").json()["source"] == "store"
    assert router.admin("DELETE", "/admin/providers/outside").status_code == 200


def test_a_stream_in_flight_finishes_on_the_old_upstream_while_new_calls_use_the_new_one(
        stored_router: RouterProcess,
        fakes: tuple[FakeProviderServer, FakeProviderServer]) -> None:
    first, second = fakes
    router = stored_router
    _, key = router.new_account(5_000_000)
    client = oai(router, key)
    assert router.admin("POST", "/admin/providers/swapped", json=_provider(
        first.openai_base_url, KEY_ONE)).status_code == 201
    first.state.reply_words, first.state.chunk_delay_s = 8, 0.15
    stream = client.chat.completions.create(model="swapped/gpt-4o-mini", messages=HI,
                                            max_tokens=50, stream=True)
    pieces = []
    chunks = iter(stream)
    pieces.append(next(chunks).choices[0].delta.content or "")
    r = router.admin("POST", "/admin/providers/swapped", json=_provider(
        second.openai_base_url, KEY_TWO))
    assert r.status_code == 200, r.text
    client.chat.completions.create(model="swapped/gpt-4o-mini", messages=HI, max_tokens=5)
    assert _bearer(second) == [f"Bearer {KEY_TWO}"], "a new call takes the new version"
    for chunk in chunks:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            if chunk.choices[0].finish_reason:
                assert chunk.choices[0].finish_reason == "stop"
    assert len("".join(pieces).split()) == 8, "the old stream ran to its end"
    assert _bearer(first) == [f"Bearer {KEY_ONE}"]
    bills = router.usage(key)["recent"]
    assert len(bills) == 2 and all(b["cost_micros"] > 0 for b in bills)
    assert router.admin("DELETE", "/admin/providers/swapped").status_code == 200


def test_stored_providers_are_served_from_the_start(
        fakes: tuple[FakeProviderServer, FakeProviderServer], tmp_path: Path) -> None:
    first, second = fakes
    trio.run(_put_from_outside, tmp_path, StoredProvider(
        "oai", "openai", second.openai_base_url, (KEY_ONE,)))
    with RouterProcess(tmp_path, router_config(first.openai_base_url,
                                               first.anthropic_base_url),
                       env={"ROUTER_SECRET_KEY": SECRET}) as router:
        _, key = router.new_account(1_000_000)
        oai(router, key).chat.completions.create(model="house-model", messages=HI,
                                                 max_tokens=5)
        assert _bearer(second) == [f"Bearer {KEY_ONE}"] and _bearer(first) == []
        assert router.admin("GET", "/admin/providers/oai").json()["source"] == "store"
