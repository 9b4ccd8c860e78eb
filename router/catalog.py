"""The catalog: which providers exist, which models they serve, at what price.

Built once at startup from the shipped `catalog.toml`, the providers implied by the
environment's keys, and the `[[providers]]`, `[[models]]` and `[aliases]` of the config
file (which win). A model that cannot be billed cannot be served: every routable model
has a price, or startup fails naming the file, the line and the field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Mapping

from router.errors import ConfigError, PriceError
from router.pricing import Prices, parse_price
from router.providers import registry
from router.providers.spec import STRATEGIES, ProviderSpec

__all__ = ["Catalog", "ConfigError", "ModelSpec", "ProviderSpec", "Target", "build_catalog"]

DEFAULT_PER_IMAGE_TOKENS = 1600


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


def _line_of(text: str, table: str, index: int, key: str | None) -> int | None:
    """The 1-based line of `key` inside the index-th `[[table]]` (or `[table]`) of `text`."""
    seen = -1
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.split("#", 1)[0].strip() if line.lstrip().startswith("[") else line.strip()
        if stripped.startswith("["):
            inside = stripped in (f"[[{table}]]", f"[{table}]")
            if inside:
                seen += 1
                if key is None and seen == index:
                    return number
            continue
        if inside and seen == index and key and stripped.split("=")[0].strip() == key:
            return number
    return None


class _Where:
    """Formats "file:line: table[i].field" for config errors."""

    def __init__(self, path: str | None, text: str) -> None:
        self.path, self.text = path or "<config>", text

    def error(self, table: str, index: int, key: str | None, message: str) -> ConfigError:
        line = _line_of(self.text, table, index, key) or _line_of(self.text, table, index, None)
        where = f"{self.path}:{line}" if line else self.path
        fld = f"{table}[{index}]" + (f".{key}" if key else "")
        return ConfigError(f"{where}: {fld}: {message}")


def _prices(entry: Mapping[str, Any], base: Prices | None,
            fail: Any) -> Prices | None:
    names = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
    parsed: dict[str, Any] = {}
    for name in names:
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


def _parse_provider(i: int, entry: Any, env: Mapping[str, str], where: _Where) -> ProviderSpec:
    def fail(key: str | None, message: str) -> ConfigError:
        return where.error("providers", i, key, message)

    if not isinstance(entry, dict):
        raise fail(None, "must be a table")
    name, kind = entry.get("name"), entry.get("kind")
    if not isinstance(name, str) or not name or "/" in name or ":" in name:
        raise fail("name", "a provider needs a unique name without '/' or ':'")
    if kind not in registry.kinds():
        raise fail("kind", f"must be one of {', '.join(registry.kinds())}; got {kind!r}")
    adapter = registry.adapter(kind)
    keys: list[str] = []
    if "api_keys" in entry:
        if not isinstance(entry["api_keys"], list) or not all(
                isinstance(k, str) and k for k in entry["api_keys"]):
            raise fail("api_keys", "must be a list of non-empty strings")
        keys = list(entry["api_keys"])
    if "api_key_env" in entry:
        keys += [k.strip() for k in env.get(str(entry["api_key_env"]), "").split(",") if k.strip()]
    base_url = entry.get("base_url", adapter.default_base_url or None)
    if adapter.needs_base_url and (not isinstance(base_url, str) or not base_url.startswith(
            ("http://", "https://"))):
        raise fail("base_url", "must be an http(s) URL")
    strategy = entry.get("strategy", "round_robin")
    if strategy not in STRATEGIES:
        raise fail("strategy", f"must be one of {', '.join(STRATEGIES)}")
    limit_field = entry.get("max_tokens_field")
    if limit_field is not None and (not isinstance(limit_field, str)
                                    or not limit_field.isidentifier()):
        raise fail("max_tokens_field", "must be a field name such as \"max_tokens\"")
    numbers: dict[str, Any] = {}
    for key, default in (("max_concurrent", 256), ("timeout_connect_s", 10.0),
                         ("timeout_idle_s", 300.0), ("timeout_total_s", 1800.0),
                         ("breaker_failures", 5),
                         ("breaker_cooldown_s", 30.0)):
        value = entry.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise fail(key, "must be a positive number")
        numbers[key] = value
    return ProviderSpec(name=name, kind=kind, base_url=(base_url or "").rstrip("/"),
                        api_keys=tuple(keys), strategy=strategy,
                        max_concurrent=int(numbers["max_concurrent"]),
                        timeout_connect_s=float(numbers["timeout_connect_s"]),
                        timeout_idle_s=float(numbers["timeout_idle_s"]),
                        timeout_total_s=float(numbers["timeout_total_s"]),
                        breaker_failures=int(numbers["breaker_failures"]),
                        breaker_cooldown_s=float(numbers["breaker_cooldown_s"]),
                        max_tokens_field=limit_field)


def _env_providers(settings: Mapping[str, Any]) -> list[ProviderSpec]:
    out = []
    if settings.get("openai_api_key"):
        out.append(ProviderSpec("openai", "openai", settings["openai_base_url"].rstrip("/"),
                                (settings["openai_api_key"],)))
    if settings.get("anthropic_api_key"):
        out.append(ProviderSpec("anthropic", "anthropic",
                                settings["anthropic_base_url"].rstrip("/"),
                                (settings["anthropic_api_key"],)))
    return out


def _default_route(kind: str, upstream: str,
                   providers: Mapping[str, ProviderSpec]) -> tuple[Target, ...]:
    if kind in providers and providers[kind].kind == kind:
        return (Target(kind, upstream),)
    for spec in providers.values():
        if spec.kind == kind:
            return (Target(spec.name, upstream),)
    return ()


def build_catalog(toml: Mapping[str, Any], toml_text: str, path: str | None,
                  settings: Mapping[str, Any], env: Mapping[str, str]) -> Catalog:
    where = _Where(path, toml_text)
    providers: dict[str, ProviderSpec] = {p.name: p for p in _env_providers(settings)}
    declared: set[str] = set()
    for i, entry in enumerate(toml.get("providers", [])):
        spec = _parse_provider(i, entry, env, where)
        if spec.name in declared:
            raise where.error("providers", i, "name", f"duplicate provider name {spec.name!r}")
        declared.add(spec.name)
        providers[spec.name] = spec
    if not providers:
        providers["demo"] = ProviderSpec("demo", "demo", "")

    shipped, shipped_aliases = _shipped_models()
    models = {mid: replace(m, route=_default_route(m.kind, m.id, providers))
              for mid, m in shipped.items()}
    for i, entry in enumerate(toml.get("models", [])):
        def fail(key: str | None, message: str, i: int = i) -> ConfigError:
            return where.error("models", i, key, message)

        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise fail("id", "a model needs an id (what clients send)")
        base = models.get(entry["id"])
        prices = _prices(entry, base.prices if base else None, fail)
        if prices is None:
            raise fail("input_per_mtok", "a model needs input_per_mtok and output_per_mtok "
                       "(a model that cannot be billed cannot be served)")
        route: list[Target] = []
        for hop in entry.get("route", []):
            provider, sep, upstream = str(hop).partition(":")
            if not sep or provider not in providers or not upstream:
                raise fail("route", f"{hop!r} must be 'provider:upstream-id' naming a "
                           f"configured provider ({', '.join(providers)})")
            route.append(Target(provider, upstream))
        max_out = entry.get("max_output_tokens", base.max_output_tokens if base else 4096)
        if isinstance(max_out, bool) or not isinstance(max_out, int) or max_out <= 0:
            raise fail("max_output_tokens", "must be a positive integer")
        kind = providers[route[0].provider].kind if route else (base.kind if base else "openai")
        models[entry["id"]] = ModelSpec(
            entry["id"], kind, prices, max_out,
            tuple(route) or (base.route if base else ()),
            int(entry.get("per_image_tokens", base.per_image_tokens if base
                          else DEFAULT_PER_IMAGE_TOKENS)),
            display_name=str(entry.get("display_name", base.display_name if base
                                       else entry["id"])),
            reasoning=bool(entry.get("reasoning", base.reasoning if base else False)),
            created=base.created if base else 0)
        if not models[entry["id"]].route:
            raise fail("route", "no provider serves this model; give it a route")

    aliases = toml.get("aliases", {})
    if not isinstance(aliases, dict):
        raise ConfigError(f"{where.path}: [aliases] must be a table")
    merged = {a: m for a, m in shipped_aliases.items() if a not in models}
    catalog = Catalog(providers=providers, models=models, aliases={**merged, **aliases})
    for alias, target in aliases.items():
        if not isinstance(target, str) or target == alias or catalog.resolve(target) is None:
            line = _line_of(toml_text, "aliases", 0, alias)
            raise ConfigError(f"{where.path}:{line}: aliases.{alias}: unknown model {target!r}")
    return catalog
