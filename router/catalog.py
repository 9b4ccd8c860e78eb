"""The catalog: which providers exist, which models they serve, at what price.

Built once at startup from the shipped `catalog.toml`, the providers implied by the
environment's keys, and the `[[providers]]`, `[[models]]` and `[aliases]` of the config
file (which win). A model that cannot be billed cannot be served: every routable model
has a price, or startup fails naming the file, the line and the field.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Mapping

from router.errors import ConfigError, PriceError
from router.pricing import Prices, parse_price
from router.providers import claude_oauth, registry
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
    problem = next((p for p in map(getattr(adapter, "check_key", lambda k: None), keys)
                    if p), None)  # a kind whose keys have a form (bedrock)
    if problem:
        raise fail("api_keys", problem)
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
                        max_tokens_field=limit_field, **_kind_fields(entry, adapter, fail))


_API_VERSION = re.compile(r"^(v1|\d{4}-\d{2}-\d{2}(-preview)?)$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name
# Headers the router sets itself (credentials, framing): a `headers` table may not.
_OWN_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "content-type",
                          "content-length", "transfer-encoding", "host", "connection",
                          "accept", "user-agent", "anthropic-version", "x-goog-api-key"})


def _kind_fields(entry: Mapping[str, Any], adapter: Any, fail: Any) -> dict[str, Any]:
    """`api_version`, `deployments` and `headers`: only on kinds that read them."""
    allowed = getattr(adapter, "provider_fields", frozenset())
    out: dict[str, Any] = {}
    for key in ("api_version", "deployments", "headers", "region"):
        if key in entry and key not in allowed:
            kinds = [k for k in registry.kinds()
                     if key in getattr(registry.adapter(k), "provider_fields", ())]
            raise fail(key, f"kind {adapter.kind!r} does not read {key}; "
                            f"only {', '.join(kinds)} do")
    if "api_version" in entry:
        version = entry["api_version"]
        if not isinstance(version, str) or not _API_VERSION.match(version):
            raise fail("api_version", "must be a dated Azure API version such as "
                                      "\"2024-10-21\" (or \"2025-04-01-preview\"), or \"v1\"")
        out["api_version"] = version
    if "deployments" in entry:
        table = entry["deployments"]
        if not isinstance(table, dict) or not all(
                isinstance(v, str) and v and v.strip() == v and not set(v) & set("/?#%\\ ")
                for v in table.values()):
            raise fail("deployments", "must be a table of model id = \"deployment name\" "
                                      "(non-empty names without '/', '?', '#', '%' or spaces), "
                                      "e.g. deployments = { \"gpt-4o-mini\" = \"my-4o-mini\" }")
        out["deployments"] = tuple(sorted(table.items()))
    if "region" in entry:  # bedrock: SigV4's region and the inference-profile prefix
        region = entry["region"]
        if not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
            raise fail("region", "must be an AWS region such as \"us-east-1\"")
        out["region"] = region
    if "headers" in entry:
        table = entry["headers"]
        if not isinstance(table, dict):
            raise fail("headers", "must be a table of header name = \"value\"")
        for name, value in table.items():
            if not _TOKEN.match(name) or name.lower() in _OWN_HEADERS:
                raise fail("headers", f"{name!r} is not a header name a provider entry may "
                                      "set (credentials and framing are the router's)")
            if not isinstance(value, str) or any(c in value for c in "\r\n\0") or not all(
                    ord(c) < 256 for c in value):
                raise fail("headers", f"{name}: the value must be a one-line latin-1 string "
                                      "(\"\" drops a default header)")
        out["headers"] = tuple(table.items())
    return out


def _env_providers(settings: Mapping[str, Any]) -> list[ProviderSpec]:
    out = []
    if settings.get("openai_api_key"):
        out.append(ProviderSpec("openai", "openai", settings["openai_base_url"].rstrip("/"),
                                (settings["openai_api_key"],)))
    if settings.get("anthropic_api_key"):
        out.append(ProviderSpec("anthropic", "anthropic",
                                settings["anthropic_base_url"].rstrip("/"),
                                (settings["anthropic_api_key"],)))
    if settings.get("azure_openai_endpoint") and settings.get("azure_openai_api_key"):
        out.append(ProviderSpec("azure", "azure", settings["azure_openai_endpoint"].rstrip("/"),
                                (settings["azure_openai_api_key"],),
                                api_version=settings.get("azure_openai_api_version") or None))
    if settings.get("openrouter_api_key"):
        out.append(ProviderSpec("openrouter", "openrouter",
                                (settings.get("openrouter_base_url")
                                 or "https://openrouter.ai/api/v1").rstrip("/"),
                                (settings["openrouter_api_key"],)))
    if settings.get("ollama_base_url"):  # the server's root or its OpenAI-compatible /v1
        url = settings["ollama_base_url"].rstrip("/")
        out.append(ProviderSpec("ollama", "ollama", url if url.endswith("/v1") else url + "/v1"))
    if settings.get("google_ai_api_key"):
        out.append(ProviderSpec("google", "gemini",
                                settings["google_ai_base_url"].rstrip("/"),
                                (settings["google_ai_api_key"],)))
    if "claude_code_home" in settings:  # the real settings (a test's bare mapping: none)
        out += _claude_code_providers(settings)
    if settings.get("vertex_ai_service_account_json"):
        out += _vertex_providers(settings)
    return out


def _vertex_providers(settings: Mapping[str, Any]) -> list[ProviderSpec]:
    """Vertex AI (router.providers.vertex), for Claude (`vertex`) and Gemini
    (`vertex-gemini`) models: the service account is checked now; its tokens come from
    the `vertex-token` actor (the pools start empty)."""
    from router.providers.google_sa import load
    from router.providers.vertex import vertex_base_url

    account = load(settings["vertex_ai_service_account_json"],
                   "VERTEX_AI_SERVICE_ACCOUNT_JSON")
    project = settings.get("vertex_ai_project") or account.project_id
    if not project:
        raise ConfigError("Vertex AI needs VERTEX_AI_PROJECT (the service account names "
                          "no project_id)")
    base = vertex_base_url(project, settings.get("vertex_ai_location") or "global",
                           settings.get("vertex_ai_base_url"))
    return [ProviderSpec("vertex", "vertex", base),
            ProviderSpec("vertex-gemini", "vertex_gemini", base)]


def _bedrock_providers(env: Mapping[str, str]) -> list[ProviderSpec]:
    """AWS Bedrock from the environment (read here: router/config.py has no Bedrock
    settings), as a provider named `bedrock`: BEDROCK_BASE_URL is an OpenAI-compatible
    gateway (kind `bedrock_gateway`, bearer BEDROCK_API_KEY if set); else BEDROCK_REGION,
    BEDROCK_ACCESS_KEY_ID or BEDROCK_PROFILE is native Bedrock (kind `bedrock`), in
    BEDROCK_REGION / AWS_REGION / AWS_DEFAULT_REGION, signed with BEDROCK_* keys, else
    AWS_* keys, else a Bedrock API key as a bearer token (BEDROCK_API_KEY /
    AWS_BEARER_TOKEN_BEDROCK), else the profile (BEDROCK_PROFILE / AWS_PROFILE / default)."""
    def get(*names: str) -> str:
        return next((env[n].strip() for n in names if (env.get(n) or "").strip()), "")

    region = get("BEDROCK_REGION", "AWS_REGION", "AWS_DEFAULT_REGION") or None
    if get("BEDROCK_BASE_URL"):
        key = get("BEDROCK_API_KEY")
        return [ProviderSpec("bedrock", "bedrock_gateway", get("BEDROCK_BASE_URL").rstrip("/"),
                             (key,) if key else (), region=region)]
    if not get("BEDROCK_REGION", "BEDROCK_ACCESS_KEY_ID", "BEDROCK_PROFILE"):
        return []
    if region is None:
        raise ConfigError("Bedrock needs a region: set BEDROCK_REGION (or AWS_REGION)")
    for prefix in ("BEDROCK_", "AWS_"):
        akid, secret = get(prefix + "ACCESS_KEY_ID"), get(prefix + "SECRET_ACCESS_KEY")
        if akid and secret:
            token = get(prefix + "SESSION_TOKEN")
            credential = f"{akid}:{secret}" + (f":{token}" if token else "")
            break
    else:
        bearer = get("BEDROCK_API_KEY", "AWS_BEARER_TOKEN_BEDROCK")
        credential = f"bearer:{bearer}" if bearer else "profile:" + (
            get("BEDROCK_PROFILE", "AWS_PROFILE") or "default")
    return [ProviderSpec("bedrock", "bedrock", f"https://bedrock-runtime.{region}.amazonaws.com",
                         (credential,), region=region)]


def _claude_code_providers(settings: Mapping[str, Any]) -> list[ProviderSpec]:
    """Claude Code's OAuth logins (router.providers.claude_oauth) as their own Anthropic
    provider, `claude-code`, beside any `anthropic` one (its pool is kept in sync with the
    files by a watcher actor; docs/providers.md). It exists when a login is found, or
    when CLAUDE_CODE_HOME / ADDITIONAL_ACCOUNT_DIRS name where logins will be."""
    import time

    from router.providers import claude_oauth

    named = settings.get("claude_code_home") or settings.get("additional_account_dirs")
    dirs = claude_oauth.account_dirs(settings.get("claude_code_home"),
                                     settings.get("additional_account_dirs"))
    now = time.time()
    accounts, _ = claude_oauth.scan(dirs, now)  # the watcher logs what it skipped
    if not accounts and not named:
        return []
    return [ProviderSpec(claude_oauth.PROVIDER_NAME, "anthropic",
                         settings["anthropic_base_url"].rstrip("/"),
                         tuple(a.token for a in accounts if not a.expired(now)))]


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
                line = _line_of(text, f"modes.{kind}", 0, f'"{mid}"') or _line_of(
                    text, f"modes.{kind}", 0, mid)
                raise ConfigError(f"router/catalog.toml:{line}: modes.{kind}.{mid}: must map "
                                  "a catalog model id to a non-empty model id")
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


def build_catalog(toml: Mapping[str, Any], toml_text: str, path: str | None,
                  settings: Mapping[str, Any], env: Mapping[str, str]) -> Catalog:
    where = _Where(path, toml_text)
    providers: dict[str, ProviderSpec] = {p.name: p for p in _env_providers(settings)
                                          + _bedrock_providers(env)}
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
    mode = _provider_mode(settings, providers, shipped)
    models = {mid: replace(m, route=_mode_route(m, mode, providers))
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
