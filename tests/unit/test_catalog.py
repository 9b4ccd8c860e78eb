"""The shipped catalog (router/catalog.toml): every model priced, ids unique, config wins."""

from __future__ import annotations

import tomllib
from datetime import datetime, timezone
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest

from router.catalog import Catalog, build_catalog
from router.pricing import Prices

PRICE_KEYS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
VENDOR_KINDS = {"openai", "anthropic", "gemini"}


def _shipped() -> Catalog:
    return build_catalog(toml={}, toml_text="", path=None, settings={}, env={})


def _raw_entries() -> list[dict[str, Any]]:
    text = resources.files("router").joinpath("catalog.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)["models"]


def _vendor_entries() -> list[dict[str, Any]]:
    return [e for e in _raw_entries() if e["kind"] != "demo"]


def test_every_entry_states_all_four_prices_as_strings() -> None:
    for entry in _raw_entries():
        for key in PRICE_KEYS:
            assert key in entry, f"{entry['id']}: missing {key}"
            assert isinstance(entry[key], str), f"{entry['id']}: {key} must be a string"


def test_every_shipped_model_has_non_negative_decimal_prices_and_an_output_limit() -> None:
    cat = _shipped()
    assert len(cat.models) == len(_raw_entries())
    for mid, model in cat.models.items():
        assert isinstance(model.prices, Prices), mid
        for value in (model.prices.input, model.prices.output,
                      model.prices.cache_read, model.prices.cache_write):
            assert isinstance(value, Decimal), mid
            assert value.is_finite() and value >= 0, mid
        assert isinstance(model.max_output_tokens, int) and model.max_output_tokens > 0, mid


def test_output_costs_at_least_input_for_every_vendor_model() -> None:
    cat = _shipped()
    for mid, model in cat.models.items():
        if model.kind == "demo":
            continue
        assert model.prices.output >= model.prices.input, mid


def test_ids_and_aliases_are_unique_across_the_catalog() -> None:
    names: list[str] = []
    for entry in _raw_entries():
        names.append(entry["id"])
        names.extend(entry.get("aliases", []))
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert duplicates == []


def test_vendor_entries_carry_metadata() -> None:
    for entry in _vendor_entries():
        mid = entry["id"]
        assert entry["kind"] in VENDOR_KINDS, mid
        assert isinstance(entry["display_name"], str) and entry["display_name"], mid
        assert isinstance(entry["reasoning"], bool), mid
        assert isinstance(entry["aliases"], list), mid
        assert all(isinstance(a, str) and a for a in entry["aliases"]), mid
        created = entry["created"]
        assert isinstance(created, int) and not isinstance(created, bool), mid
        released = datetime.fromtimestamp(created, tz=timezone.utc)
        assert datetime(2024, 1, 1, tzinfo=timezone.utc) <= released, mid
        assert released <= datetime(2026, 11, 30, tzinfo=timezone.utc), mid


def test_the_ids_other_code_relies_on_are_shipped() -> None:
    cat = _shipped()
    for mid in ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "claude-sonnet-4-5",
                "claude-haiku-4-5", "claude-3-5-haiku-latest", "demo"):
        assert mid in cat.models, mid
    assert cat.models["demo"].kind == "demo"


def test_reference_prices() -> None:
    cat = _shipped()
    mini = cat.models["gpt-4o-mini"].prices
    assert (mini.input, mini.output) == (Decimal("0.15"), Decimal("0.60"))
    haiku = cat.models["claude-haiku-4-5"].prices
    assert (haiku.input, haiku.output) == (Decimal("1.00"), Decimal("5.00"))
    assert (haiku.cache_read, haiku.cache_write) == (Decimal("0.10"), Decimal("1.25"))
    demo = cat.models["demo"].prices
    assert (demo.input, demo.output, demo.cache_read, demo.cache_write) == (
        Decimal("1.00"), Decimal("2.00"), Decimal("0.10"), Decimal("1.25"))


def test_shipped_metadata_reaches_the_model_spec() -> None:
    cat = _shipped()
    sonnet = cat.models["claude-sonnet-4-5"]
    assert sonnet.display_name == "Claude Sonnet 4.5"
    assert sonnet.reasoning is True
    assert sonnet.created == int(datetime(2025, 9, 29, tzinfo=timezone.utc).timestamp())
    assert cat.models["gpt-4o-mini"].reasoning is False
    assert cat.models["o3"].reasoning is True
    for entry in _vendor_entries():
        spec = cat.models[entry["id"]]
        assert spec.display_name == entry["display_name"]
        assert spec.reasoning == entry["reasoning"]
        assert spec.created == entry["created"]


def test_a_dated_snapshot_resolves_to_its_model() -> None:
    cat = _shipped()
    assert cat.resolve("claude-sonnet-4-5-20250929") == cat.models["claude-sonnet-4-5"]
    assert cat.resolve("claude-3-5-haiku-20241022") == cat.models["claude-3-5-haiku-latest"]


def test_every_alias_resolves_to_its_owner() -> None:
    cat = _shipped()
    for entry in _raw_entries():
        for alias in entry.get("aliases", []):
            resolved = cat.resolve(alias)
            assert resolved is not None, alias
            assert resolved == cat.models[entry["id"]], alias


CONFIG = """
[[providers]]
name = "openai"
kind = "openai"
base_url = "https://api.openai.com/v1"
api_keys = ["sk-test"]

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "https://api.anthropic.com"
api_keys = ["sk-ant-test"]

[[models]]
id = "gpt-4o-mini"
input_per_mtok = "9.99"
output_per_mtok = "19.99"

[[models]]
id = "claude-sonnet-4-5"
cache_read_per_mtok = "0.01"
"""


def _configured() -> Catalog:
    return build_catalog(toml=tomllib.loads(CONFIG), toml_text=CONFIG, path="aura-router.toml",
                         settings={}, env={})


def test_a_config_entry_overriding_a_shipped_price_wins() -> None:
    shipped = _shipped().models["gpt-4o-mini"].prices
    cat = _configured()
    mini = cat.resolve("gpt-4o-mini")
    assert mini is not None
    assert mini.prices.input == Decimal("9.99")
    assert mini.prices.output == Decimal("19.99")
    # What the config leaves out keeps the shipped value.
    assert mini.prices.cache_read == shipped.cache_read
    assert mini.prices.cache_write == shipped.cache_write
    assert mini.max_output_tokens == _shipped().models["gpt-4o-mini"].max_output_tokens
    # Other shipped models are untouched.
    assert cat.models["gpt-4o"].prices == _shipped().models["gpt-4o"].prices


def test_a_partial_override_keeps_the_other_shipped_prices() -> None:
    shipped = _shipped().models["claude-sonnet-4-5"].prices
    cat = _configured()
    sonnet = cat.models["claude-sonnet-4-5"]
    assert sonnet.prices.cache_read == Decimal("0.01")
    assert (sonnet.prices.input, sonnet.prices.output, sonnet.prices.cache_write) == (
        shipped.input, shipped.output, shipped.cache_write)


def test_an_override_is_seen_through_the_model_aliases() -> None:
    cat = _configured()
    snapshot = cat.resolve("claude-sonnet-4-5-20250929")
    assert snapshot is not None
    assert snapshot.prices.cache_read == Decimal("0.01")


@pytest.mark.parametrize("mid", ["gpt-4o-mini", "claude-sonnet-4-5"])
def test_overridden_models_are_routed_to_the_configured_provider(mid: str) -> None:
    model = _configured().models[mid]
    assert model.route and model.route[0].upstream_model == mid
