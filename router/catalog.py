"""The catalog: which providers exist, which models they serve, at what price.

Built once at startup from the shipped `catalog.toml`, the providers implied by the
environment's keys, and the `[[providers]]`, `[[models]]` and `[aliases]` of the config
file (which win). A model that cannot be billed cannot be served: every routable model
has a price, or startup fails naming the file, the line and the field. Nothing is
silently ignored: an unknown key is an error naming the closest valid one
(`router.config_lines`), and a provider that needs a credential and has none stops the
start unless ALLOW_PROVIDERS_WITHOUT_KEYS. A provider table itself is checked in
`router.providers.configured`.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Mapping

from router.config_lines import TomlLines, unknown_key
from router.errors import ConfigError, PriceError
from router.pricing import Prices, parse_price
from router.providers import claude_oauth, registry
from router.providers.configured import (PROVIDER_KEYS, bedrock_providers, env_providers,
                                         no_credential, parse_provider, positive,
                                         provider_from_table)
from router.providers.spec import ProviderSpec

__all__ = ["Catalog", "ConfigError", "ModelSpec", "ProviderSpec", "Target", "build_catalog",
           "parse_provider"]

log = logging.getLogger("aura.config")

DEFAULT_PER_IMAGE_TOKENS = 1600
SECTIONS = ("settings", "providers", "models", "aliases", "tiers")  # of the config file
PRICE_KEYS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok",
              "cache_write_per_mtok")
MODEL_KEYS = frozenset({"id", "route", "max_output_tokens", "per_image_tokens",
                        "display_name", "reasoning", *PRICE_KEYS})


@dataclass(frozen=True)
class Target:
    provider: str
    upstream_model: str


@dataclass(frozen=True)
class ModelSpec:
    id: str
    kind: str
    prices: Prices
    max_output_tokens: int
    route: tuple[Target, ...] = ()
    per_image_tokens: int = DEFAULT_PER_IMAGE_TOKENS
    display_name: str = ""
    reasoning: bool = False  # accepts reasoning effort / extended thinking
    created: int = 0  # release date, unix seconds (for /v1/models)


@dataclass(frozen=True)
class Catalog:
    providers: Mapping[str, ProviderSpec]
    models: Mapping[str, ModelSpec]
    aliases: Mapping[str, str]

    def resolve(self, name: str) -> ModelSpec | None:
        """A model by alias, bare id or `provider/model`; None when unknown or unpriced.

        The prefix of `provider/model` is a configured provider's name or a provider
        kind (`anthropic/claude-sonnet-4-5` reaches the first Anthropic-kind provider);
        the model part is a catalog id or alias, which is what makes it priced.
        """
        name = self.aliases.get(name, name)
        if name in self.models:
            return self.models[name]
        prefix, _, rest = name.partition("/")
        provider = self.providers.get(prefix) or next(
            (p for p in self.providers.values() if p.kind == prefix), None)
        if provider is None or not rest:
            return None
        priced = self.models.get(self.aliases.get(rest, rest))
        if priced is None:
            return None
        # An alias names the model it stands for, upstream too: the price is that model's.
        upstream = priced.id if rest in self.aliases else rest
        return replace(priced, id=name, kind=provider.kind,
                       route=(Target(provider.name, upstream),))

    def routable(self) -> list[ModelSpec]:
        return [m for m in self.models.values() if m.route]


class _Where:
    """Formats "file:line: table[i].field: message" for config errors."""

    def __init__(self, path: str | None, text: str) -> None:
        self.path, self.lines = path or "<config>", TomlLines(text)

    def at(self, *path: str | int) -> str:
        """`file:line` of `path` (or of its nearest parent), else the file."""
        line = self.lines.line(path)
        return f"{self.path}:{line}" if line else self.path

    def error(self, table: str, index: int, key: str | None, message: str) -> ConfigError:
        fld = f"{table}[{index}]" + (f".{key}" if key else "")
        return ConfigError(f"{self.at(table, index, *([key] if key else []))}: {fld}: "
                           f"{message}")

    def unknown(self, table: str, index: int, entry: Mapping[str, Any], key: str,
                valid: frozenset[str]) -> ConfigError:
        label = entry.get("id" if table == "models" else "name")
        named = repr(label) if isinstance(label, str) else f"#{index + 1}"
        return unknown_key(self.at(table, index, key), key, f"in [[{table}]] {named}", valid)


def _prices(entry: Mapping[str, Any], base: Prices | None,
            fail: Any) -> Prices | None:
    parsed: dict[str, Any] = {}
    for name in PRICE_KEYS:
        if name in entry:
            try:
                parsed[name] = parse_price(entry[name], name)
            except PriceError as exc:
                raise fail(name, str(exc)) from None
    if base is None and not {"input_per_mtok", "output_per_mtok"} <= parsed.keys():
        return None
    base = base or Prices(parsed["input_per_mtok"], parsed["output_per_mtok"],
                          parsed["input_per_mtok"], parsed["input_per_mtok"])
    return Prices(parsed.get("input_per_mtok", base.input),
                  parsed.get("output_per_mtok", base.output),
                  parsed.get("cache_read_per_mtok", base.cache_read),
                  parsed.get("cache_write_per_mtok", base.cache_write))


def _shipped_models() -> tuple[dict[str, ModelSpec], dict[str, str]]:
    """The shipped models and their aliases (dated snapshots, `-latest` ids)."""
    text = resources.files("router").joinpath("catalog.toml").read_text(encoding="utf-8")
    where = _Where("router/catalog.toml", text)
    out: dict[str, ModelSpec] = {}
    aliases: dict[str, str] = {}
    for i, entry in enumerate(tomllib.loads(text)["models"]):
        prices = _prices(entry, None, lambda k, m, i=i: where.error("models", i, k, m))
        assert prices is not None, entry["id"]
        out[entry["id"]] = ModelSpec(
            entry["id"], entry["kind"], prices, int(entry["max_output_tokens"]),
            per_image_tokens=int(entry.get("per_image_tokens", DEFAULT_PER_IMAGE_TOKENS)),
            display_name=str(entry.get("display_name", entry["id"])),
            reasoning=bool(entry.get("reasoning", False)), created=int(entry.get("created", 0)))
        for alias in entry.get("aliases", ()):
            aliases[alias] = entry["id"]
    return out, aliases


def _default_route(kind: str, upstream: str,
                   providers: Mapping[str, ProviderSpec]) -> tuple[Target, ...]:
    if kind in providers and providers[kind].kind == kind:
        return (Target(kind, upstream),)
    # Claude Code's subscription logins serve a kind only when nothing else does: a
    # platform's API keys are what its traffic should use.
    serving = sorted((spec for spec in providers.values() if spec.kind == kind),
                     key=lambda spec: spec.name == claude_oauth.PROVIDER_NAME)
    if not serving:  # a kind that serves another's models under its own ids (Bedrock: Claude)
        for spec in providers.values():
            adapter: Any = registry.adapter(spec.kind)
            native = adapter.mode_upstream(spec, upstream, kind) \
                if kind in getattr(adapter, "serves_kinds", ()) else None
            if native:
                return (Target(spec.name, native),)
    return (Target(serving[0].name, upstream),) if serving else ()


def _shipped_modes(known: Mapping[str, ModelSpec]) -> dict[str, dict[str, str]]:
    """`[modes.<kind>]` of the shipped catalog: catalog id -> that kind's own model id."""
    text = resources.files("router").joinpath("catalog.toml").read_text(encoding="utf-8")
    modes = tomllib.loads(text).get("modes", {})
    out: dict[str, dict[str, str]] = {}
    for kind, table in modes.items():
        for mid, native in table.items():
            if mid not in known or not isinstance(native, str) or not native:
                at = _Where("router/catalog.toml", text).at("modes", kind, mid)
                raise ConfigError(f"{at}: modes.{kind}.{mid}: must map a catalog model id to "
                                  "a non-empty model id")
        out[kind] = dict(table)
    return out


@dataclass(frozen=True)
class _Mode:
    """LLM_PROVIDER_MODE other than `direct`: the provider everything goes through and
    its kind's id translations."""

    provider: ProviderSpec
    ids: Mapping[str, str]


def _provider_mode(settings: Mapping[str, Any], providers: Mapping[str, ProviderSpec],
                   known: Mapping[str, ModelSpec]) -> _Mode | None:
    """`direct` (None: each model to the provider of its kind), or a configured
    provider's name (or kind: `openrouter` is the provider of that kind)."""
    value = str(settings.get("llm_provider_mode") or "direct").strip()
    if value.lower() == "direct":
        return None
    spec = providers.get(value) or next(
        (p for p in providers.values() if p.kind == value), None)
    if spec is None:
        raise ConfigError(
            f"LLM_PROVIDER_MODE={value!r} names no configured provider: give 'direct', or "
            f"the name or kind of one of: {', '.join(providers) or 'none'} (OPENROUTER_API_KEY "
            "adds 'openrouter', AZURE_OPENAI_ENDPOINT with AZURE_OPENAI_API_KEY 'azure', "
            "OLLAMA_BASE_URL 'ollama')")
    return _Mode(spec, _shipped_modes(known).get(spec.kind, {}))


def _mode_route(model: ModelSpec, mode: _Mode | None,
                providers: Mapping[str, ProviderSpec]) -> tuple[Target, ...]:
    """Through the mode's provider under its own id for the model, when it serves the
    model (its kind's translation table, its own kind's models, or what its adapter
    says); else the model's own provider, as in `direct`. The model's own provider stays
    on the route after the mode's, for what the mode's cannot take (an API no bridge
    reaches it in) and as the failover target."""
    direct = _default_route(model.kind, model.id, providers)
    if mode is not None:
        spec = mode.provider
        native = mode.ids.get(model.id)
        if native is None:
            serves = getattr(registry.adapter(spec.kind), "mode_upstream", None)
            native = serves(spec, model.id, model.kind) if serves else (
                model.id if spec.kind == model.kind else None)
        if native:
            return (Target(spec.name, native),) + tuple(
                t for t in direct if t.provider != spec.name)
    return direct


def _tables(toml: Mapping[str, Any], name: str, where: _Where) -> list[Any]:
    """`[[name]]`: an array of tables, or nothing."""
    value = toml.get(name, [])
    if not isinstance(value, list):
        raise ConfigError(f"{where.at(name)}: {name} must be an array of tables: write each "
                          f"entry under its own [[{name}]] header")
    return value


def _model(i: int, entry: Any, base: ModelSpec | None, providers: Mapping[str, ProviderSpec],
           where: _Where) -> ModelSpec:
    """One `[[models]]` entry, over the shipped model of its id (`base`) if any."""
    def fail(key: str | None, message: str) -> ConfigError:
        return where.error("models", i, key, message)

    if not isinstance(entry, dict):
        raise fail(None, "must be a table")
    for key in entry:
        if key not in MODEL_KEYS:
            raise where.unknown("models", i, entry, key, MODEL_KEYS)
    if not isinstance(entry.get("id"), str) or not entry["id"]:
        raise fail("id", "a model needs an id (what clients send)")
    prices = _prices(entry, base.prices if base else None, fail)
    if prices is None:
        missing = next(k for k in ("input_per_mtok", "output_per_mtok") if k not in entry)
        raise fail(missing, "a model needs input_per_mtok and output_per_mtok "
                   "(a model that cannot be billed cannot be served)")
    hops = entry.get("route", [])
    if not isinstance(hops, list) or not all(isinstance(h, str) for h in hops):
        raise fail("route", "must be a list of 'provider:upstream-id' strings")
    route: list[Target] = []
    for hop in hops:
        provider, sep, upstream = hop.partition(":")
        if not sep or provider not in providers or not upstream:
            raise fail("route", f"{hop!r} must be 'provider:upstream-id' naming a "
                       f"configured provider ({', '.join(providers)})")
        route.append(Target(provider, upstream))
    max_out = entry.get("max_output_tokens", base.max_output_tokens if base else 4096)
    per_image = entry.get("per_image_tokens",
                          base.per_image_tokens if base else DEFAULT_PER_IMAGE_TOKENS)
    for key, value in (("max_output_tokens", max_out), ("per_image_tokens", per_image)):
        if not positive(value, integer=True):
            raise fail(key, f"must be a positive integer, got {value!r}")
    display = entry.get("display_name", base.display_name if base else entry["id"])
    if not isinstance(display, str):
        raise fail("display_name", "must be a string")
    reasoning = entry.get("reasoning", base.reasoning if base else False)
    if not isinstance(reasoning, bool):
        raise fail("reasoning", f"must be true or false, got {reasoning!r}")
    kind = providers[route[0].provider].kind if route else (base.kind if base else "openai")
    model = ModelSpec(entry["id"], kind, prices, max_out, tuple(route) or (
        base.route if base else ()), per_image, display_name=display, reasoning=reasoning,
        created=base.created if base else 0)
    if not model.route:
        raise fail("route", "no provider serves this model; give it a route")
    return model


def build_catalog(toml: Mapping[str, Any], toml_text: str, path: str | None,
                  settings: Mapping[str, Any], env: Mapping[str, str]) -> Catalog:
    """The catalog of the config file's `[[providers]]`, `[[models]]` and `[aliases]` over
    the environment's providers and the shipped catalog. A provider that needs a key and
    has none stops the start, unless ALLOW_PROVIDERS_WITHOUT_KEYS (then a warning)."""
    where = _Where(path, toml_text)
    providers: dict[str, ProviderSpec] = {p.name: p for p in env_providers(settings)
                                          + bedrock_providers(env)}
    declared: dict[str, tuple[int, Any]] = {}
    for i, entry in enumerate(_tables(toml, "providers", where)):
        spec = provider_from_table(
            entry, env, settings, lambda key, message, i=i: where.error(
                "providers", i, key, message),
            lambda key, i=i, entry=entry: where.unknown("providers", i, entry, key,
                                                        PROVIDER_KEYS))
        if spec.name in declared:
            raise where.error("providers", i, "name", f"duplicate provider name {spec.name!r}")
        declared[spec.name] = (i, entry)
        providers[spec.name] = spec
    if not providers:
        providers["demo"] = ProviderSpec("demo", "demo", "")

    shipped, shipped_aliases = _shipped_models()
    mode = _provider_mode(settings, providers, shipped)
    models = {mid: replace(m, route=_mode_route(m, mode, providers))
              for mid, m in shipped.items()}
    for i, entry in enumerate(_tables(toml, "models", where)):
        base = models.get(entry.get("id")) if isinstance(entry, dict) and isinstance(
            entry.get("id"), str) else None
        model = _model(i, entry, base, providers, where)
        models[model.id] = model

    aliases = toml.get("aliases", {})
    if not isinstance(aliases, dict):
        raise ConfigError(f"{where.at('aliases')}: [aliases] must be a table")
    merged = {a: m for a, m in shipped_aliases.items() if a not in models}
    catalog = Catalog(providers=providers, models=models, aliases={**merged, **aliases})
    for alias, target in aliases.items():
        if not isinstance(target, str) or target == alias or catalog.resolve(target) is None:
            raise ConfigError(f"{where.at('aliases', alias)}: aliases.{alias}: unknown model "
                              f"{target!r}")

    allow = bool(settings.get("allow_providers_without_keys"))
    for name, (i, entry) in declared.items():
        if providers[name].has_credential:
            continue
        message = no_credential(providers[name], entry)
        if not allow:
            raise ConfigError(f"{where.at('providers', i, 'api_key_env')}: {message}")
        log.warning("ALLOW_PROVIDERS_WITHOUT_KEYS: provider %r (kind %s) has no credential; "
                    "every call to it fails and /ready answers 503 until it has one",
                    name, providers[name].kind)
    return catalog
