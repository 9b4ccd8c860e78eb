"""The provider store's core: keys sealed with AES-GCM under ROUTER_SECRET_KEY (never in
the database in clear, bound to their provider's name, refused without a key), imports
with an error per bad entry, every backend's rows and version, and the catalog overlay."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest

from router.catalog import ProviderSpec
from router.config import load_config
from router.errors import ConfigError
from router.ledger.stores import Stores
from router.provider_store import (KeyBox, ProviderInvalid, ProviderStore, SealedProvider,
                                   SecretKeyMissing, SecretKeyWrong, StoredProvider,
                                   import_providers, overlay, parse_import,
                                   provider_listing, secret_key)

KEYS = ("sk-live-" + "q" * 32, "sk-live-" + "z" * 32)


def _box() -> KeyBox:
    key = secret_key(secrets.token_urlsafe(32))
    assert key is not None
    return KeyBox(key)


def _provider(name: str = "primary", keys: tuple[str, ...] = KEYS) -> StoredProvider:
    """An OpenAI provider, or (no keys) an Ollama one: a kind that needs none."""
    return StoredProvider.from_entry({"name": name, "kind": "openai" if keys else "ollama",
                                      "base_url": "http://127.0.0.1:9001/v1/",
                                      "api_keys": list(keys), "max_concurrent": 4})


# --- ROUTER_SECRET_KEY and the seal --------------------------------------------------

def test_router_secret_key_accepts_32_bytes_as_base64_or_hex_or_a_long_passphrase() -> None:
    raw = secrets.token_bytes(32)
    assert secret_key(base64.urlsafe_b64encode(raw).decode()) == raw
    assert secret_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    assert secret_key(base64.b64encode(raw).decode()) == raw
    assert secret_key(raw.hex()) == raw
    phrase = "correct horse battery staple and then some"
    derived = secret_key(phrase)
    assert derived is not None and len(derived) == 32 and derived == secret_key(phrase)
    assert derived != secret_key(phrase + "!")
    assert secret_key(None) is None and secret_key("  ") is None


@pytest.mark.parametrize("short", ["hunter2", "x" * 31, base64.b64encode(b"k" * 16).decode()])
def test_a_short_router_secret_key_is_refused_saying_how_to_make_one(short: str) -> None:
    with pytest.raises(ConfigError, match="ROUTER_SECRET_KEY is too short.*token_urlsafe"):
        secret_key(short)


def test_a_sealed_key_list_opens_under_its_key_and_name_only() -> None:
    box = _box()
    sealed = box.seal("primary", KEYS)
    assert box.open("primary", sealed) == KEYS
    assert all(key not in sealed and key[8:20] not in sealed for key in KEYS)
    assert box.seal("primary", KEYS) != sealed, "a fresh nonce each time"
    with pytest.raises(SecretKeyWrong, match="cannot be decrypted with this ROUTER_SECRET_KEY"):
        _box().open("primary", sealed)
    with pytest.raises(SecretKeyWrong):
        box.open("backup", sealed)  # the name is the associated data
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SecretKeyWrong):
        box.open("primary", tampered)


# --- validation and import --------------------------------------------------------------

def test_a_stored_provider_is_checked_like_a_providers_table() -> None:
    provider = _provider()
    assert provider.base_url == "http://127.0.0.1:9001/v1" and provider.api_keys == KEYS
    assert KEYS[0] not in repr(provider)
    cases = [({"base_url": "ftp://x"}, "base_url"), ({"kind": "nope"}, "kind"),
             ({"strategy": "fastest"}, "strategy"), ({"timeout_idle_s": -1}, "timeout_idle_s"),
             ({"api_key_env": "X"}, "api_key_env"), ({"api_keys": []}, "api_keys")]
    for change, field in cases:
        entry = {"name": "p", "kind": "openai", "base_url": "http://h/v1",
                 "api_keys": ["k"], **change}
        with pytest.raises(ProviderInvalid) as caught:
            StoredProvider.from_entry(entry)
        assert caught.value.param == field and "'p'" in caught.value.message, change
    for name in ("", "a b", "x" * 65, "-lead", "caf\u00e9", "\ud800", 7):
        with pytest.raises(ProviderInvalid) as caught:
            StoredProvider.from_entry({"name": name, "kind": "ollama", "base_url": "http://h"})
        assert caught.value.param == "name"
    keyless = StoredProvider.from_entry({"name": "local", "kind": "ollama",
                                         "base_url": "http://127.0.0.1:11434/v1"})
    assert keyless.api_keys == ()


def test_import_reads_toml_and_json_and_names_each_bad_entry() -> None:
    toml = """
[[providers]]
name = "one"
kind = "openai"
base_url = "http://127.0.0.1:9001/v1"
api_keys = ["sk-1"]

[[providers]]
name = "two"
kind = "anthropic"
base_url = "not a url"
api_keys = ["sk-ant-2"]

[[providers]]
name = "one"
kind = "ollama"
base_url = "http://127.0.0.1:11434/v1"
"""
    good, errors = parse_import(toml)
    assert [p.name for p in good] == ["one"]
    assert len(errors) == 2
    assert errors[0].startswith("providers[1] 'two': base_url")
    assert errors[1].startswith("providers[2] 'one'") and "twice" in errors[1]

    listed = [{"name": "a", "kind": "ollama", "base_url": "http://127.0.0.1:11434/v1"},
              {"name": "b", "kind": "openai", "base_url": "http://h/v1", "api_keys": ["k"],
               "colour": "blue"},
              "not an object"]
    for text in (json.dumps(listed), json.dumps({"providers": listed})):
        good, errors = parse_import(text)
        assert [p.name for p in good] == ["a"]
        assert errors[0].startswith("providers[1] 'b': unknown field 'colour'")
        assert errors[1].startswith("providers[2]: ")
    assert parse_import("[[providers]\n")[1][0].startswith("not valid TOML")
    assert parse_import('{"models": []}', "json")[1] != []


# --- every backend ------------------------------------------------------------------------

def _raw_bytes_of(stores: Stores) -> bytes:
    """Whatever a reader of the backend's own storage would see of the providers."""
    if stores.backend == "sqlite":
        path = Path(stores.where)
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    return b""


async def test_each_backend_keeps_providers_sealed_and_versioned(stores: Stores) -> None:
    assert stores.provider_store is not None
    store = ProviderStore(stores.provider_store.rows, _box())
    start = await store.version()
    assert await store.get("primary") is None and await store.list() == []

    assert await store.put(_provider()) is True
    assert await store.put(_provider(keys=KEYS[:1])) is False  # replaced
    assert await store.put(_provider("keyless", ())) is True
    assert await store.version() == start + 3

    got = await store.get("primary")
    assert got == _provider(keys=KEYS[:1])
    assert [p.name for p in await store.list()] == ["keyless", "primary"]
    assert await store.public() == [
        {"name": "keyless", "kind": "ollama", "base_url": "http://127.0.0.1:9001/v1",
         "strategy": "round_robin", "max_concurrent": 4, "timeout_connect_s": 10.0,
         "timeout_idle_s": 300.0, "keys_present": False, "key_count": 0, "source": "store"},
        {"name": "primary", "kind": "openai", "base_url": "http://127.0.0.1:9001/v1",
         "strategy": "round_robin", "max_concurrent": 4, "timeout_connect_s": 10.0,
         "timeout_idle_s": 300.0, "keys_present": True, "key_count": 1, "source": "store"}]

    row = await store.rows.get("primary")
    assert row is not None and row.sealed_keys is not None
    stored_text = json.dumps(row.__dict__)
    assert KEYS[0] not in stored_text and KEYS[0][:12] not in stored_text
    assert KEYS[0].encode() not in _raw_bytes_of(stores)

    # Another ROUTER_SECRET_KEY cannot open them, and says so; the public view still works.
    other = ProviderStore(store.rows, _box())
    with pytest.raises(SecretKeyWrong, match="ROUTER_SECRET_KEY"):
        await other.get("primary")
    good, bad = await other.rows_and_keys()
    assert [p.name for p in good] == ["keyless"] and list(bad) == ["primary"]
    assert (await other.public("primary"))[0]["key_count"] == 1

    # A sealed list copied onto another provider's row does not open there.
    await store.rows.put(SealedProvider("thief", row.settings, row.sealed_keys, 1, 0.0))
    with pytest.raises(SecretKeyWrong):
        await store.get("thief")

    version = await store.version()
    assert await store.remove("thief") is True and await store.remove("thief") is False
    assert await store.version() == version + 1, "a remove of nothing changes nothing"


async def test_keys_are_refused_without_router_secret_key_and_nothing_is_written(
        stores: Stores) -> None:
    assert stores.provider_store is not None
    store = ProviderStore(stores.provider_store.rows, None)
    version = await store.version()
    with pytest.raises(SecretKeyMissing, match="ROUTER_SECRET_KEY") as caught:
        await store.put(_provider())
    assert caught.value.param == "api_keys" and KEYS[0] not in caught.value.message
    assert await store.version() == version and await store.get("primary") is None
    assert await store.put(_provider("local", ())) is True


async def test_import_stores_what_it_can_and_the_listing_shows_sources(
        stores: Stores, tmp_path: Path) -> None:
    assert stores.provider_store is not None
    text = json.dumps([
        {"name": "local", "kind": "ollama", "base_url": "http://127.0.0.1:11434/v1"},
        {"name": "keyed", "kind": "openai", "base_url": "http://h/v1", "api_keys": ["sk-k"]},
        {"name": "broken", "kind": "openai", "base_url": "nowhere", "api_keys": ["sk-k"]}])
    keyless = ProviderStore(stores.provider_store.rows, None)
    result = await import_providers(keyless, text)
    assert result.created == ("local",) and result.replaced == ()
    assert len(result.errors) == 2 and "ROUTER_SECRET_KEY" in result.errors[1]
    assert result.errors[0].startswith("providers[2] 'broken': base_url")
    result = await import_providers(ProviderStore(keyless.rows, _box()), text)
    assert (result.created, result.replaced) == (("keyed",), ("local",))

    configured = load_config(env={"DATA_DIR": str(tmp_path)}, cwd=tmp_path).catalog.providers
    listing = await provider_listing(keyless, configured)
    assert [(v["name"], v["source"], v["key_count"]) for v in listing] == [
        ("demo", "config", 0), ("keyed", "store", 1), ("local", "store", 0)]
    assert "sk-k" not in json.dumps(listing)


# --- the catalog overlay ----------------------------------------------------------------

def test_overlay_replaces_by_name_and_routes_unserved_models_to_a_new_provider(
        tmp_path: Path) -> None:
    base = load_config(env={"DATA_DIR": str(tmp_path)}, cwd=tmp_path).catalog
    assert list(base.providers) == ["demo"] and not base.models["gpt-4o-mini"].route
    added = ProviderSpec("mine", "openai", "http://127.0.0.1:9/v1", ("sk-x",))
    catalog = overlay(base, [added])
    assert catalog.models["gpt-4o-mini"].route[0].provider == "mine"
    assert not catalog.models["claude-haiku-4-5"].route, "another kind's models stay unserved"
    resolved = catalog.resolve("mine/gpt-4o")
    assert resolved is not None and resolved.route[0].provider == "mine"
    assert base.resolve("mine/gpt-4o") is None, "the base catalog is not changed"
    replaced = overlay(base, [ProviderSpec("demo", "openai", "http://127.0.0.1:9/v1")])
    assert replaced.providers["demo"].kind == "openai"
    assert overlay(base, []) is base
