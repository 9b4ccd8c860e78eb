"""The configured providers: a provider table checked into a `ProviderSpec`, and the
providers the environment's keys imply.

A table is a `[[providers]]` entry of the config file or a provider added at run time
(`router.provider_store`): `parse_provider` checks every key of it the same way, names
the closest valid key for a misspelt one, and says when a kind that needs a credential
has none. `router.catalog` puts these providers together with the models.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from router.config_lines import unknown_key
from router.errors import ConfigError
from router.providers import claude_oauth, registry
from router.providers.spec import STRATEGIES, ProviderSpec

__all__ = ["PROVIDER_KEYS", "bedrock_providers", "env_providers", "no_credential",
           "parse_provider", "positive", "provider_from_table"]

PROVIDER_KEYS = frozenset({
    "name", "kind", "base_url", "api_keys", "api_key_env", "strategy", "max_concurrent",
    "timeout_connect_s", "timeout_idle_s", "timeout_total_s", "breaker_failures",
    "breaker_cooldown_s", "max_tokens_field", "api_version", "deployments", "headers",
    "region"})

# Kinds that cannot be called without a credential. The others (demo, ollama, local
# OpenAI-compatible servers, a Bedrock gateway) may be keyless; an adapter may say
# otherwise with a `needs_key` attribute.
_KEYED_KINDS = frozenset({"openai", "anthropic", "azure", "gemini", "openrouter", "vertex",
                          "vertex_gemini", "bedrock"})
_SERVICE_ACCOUNT_KINDS = frozenset({"vertex", "vertex_gemini"})  # tokens from the account


def parse_provider(table: Any, where: str = "provider", env: Mapping[str, str] | None = None,
                   settings: Mapping[str, Any] | None = None, *,
                   allow_without_key: bool = False) -> ProviderSpec:
    """One provider table, as a `[[providers]]` entry is written (docs/configuration.md),
    every key checked; errors read "{where}: {key}: {message}". For providers added at
    run time. A kind that needs a key and has none is refused, unless `allow_without_key`
    (then the spec says `has_credential=False`)."""
    def fail(key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {message}" if key else f"{where}: {message}")

    spec = provider_from_table(table, env or {}, settings or {}, fail, lambda key: unknown_key(
        where, key, "in a provider", PROVIDER_KEYS))
    if not spec.has_credential and not allow_without_key:
        raise ConfigError(f"{where}: {no_credential(spec, table)}")
    return spec


def no_credential(spec: ProviderSpec, table: Mapping[str, Any]) -> str:
    """Why `spec` has no credential, and what to set."""
    env_name = table.get("api_key_env")
    how = (f"{env_name} (its api_key_env) is unset or empty" if env_name
           else "it has neither api_keys nor api_key_env")
    account = (", or VERTEX_AI_SERVICE_ACCOUNT_JSON" if spec.kind in _SERVICE_ACCOUNT_KINDS
               else "")
    return (f"provider {spec.name!r} (kind {spec.kind}) has no credential: {how}; give "
            f"api_keys = [\"...\"], or api_key_env = \"VAR\" with VAR set (keys "
            f"comma-separated){account}; or set ALLOW_PROVIDERS_WITHOUT_KEYS=true to start "
            f"without it (/ready answers 503 until it has one)")


def positive(value: Any, integer: bool) -> bool:
    """A positive number (an integer when `integer`); booleans are not numbers here."""
    number = (int,) if integer else (int, float)
    return not isinstance(value, bool) and isinstance(value, number) and value > 0


def provider_from_table(entry: Any, env: Mapping[str, str], settings: Mapping[str, Any],
                    fail: Any, unknown: Any) -> ProviderSpec:
    """`entry` checked into a spec; `fail(key, message)` and `unknown(key)` make the
    errors, so that the config file's name its line (`router.catalog`)."""
    if not isinstance(entry, dict):
        raise fail(None, "must be a table")
    for key in entry:
        if key not in PROVIDER_KEYS:
            raise unknown(key)
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
            raise fail("api_keys", "must be a list of non-empty strings, e.g. "
                                   "api_keys = [\"sk-one\", \"sk-two\"]")
        keys = list(entry["api_keys"])
    if "api_key_env" in entry:
        var = entry["api_key_env"]
        if not isinstance(var, str) or not var.strip():
            raise fail("api_key_env", "must name an environment variable, e.g. "
                                      "api_key_env = \"PRIMARY_KEYS\"")
        keys += [k.strip() for k in env.get(var.strip(), "").split(",") if k.strip()]
    problem = next((p for p in map(getattr(adapter, "check_key", lambda k: None), keys)
                    if p), None)  # a kind whose keys have a form (bedrock)
    if problem:
        raise fail("api_keys", problem)
    if "base_url" in entry and not isinstance(entry["base_url"], str):
        raise fail("base_url", "must be an http(s) URL")
    base_url = entry.get("base_url", adapter.default_base_url or None)
    if adapter.needs_base_url and (not isinstance(base_url, str) or not base_url.startswith(
            ("http://", "https://"))):
        raise fail("base_url", "must be an http(s) URL")
    strategy = entry.get("strategy", "round_robin")
    if strategy not in STRATEGIES:
        raise fail("strategy", f"must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
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
        integer = not key.endswith("_s")
        if not positive(value, integer):
            raise fail(key, ("must be a positive integer" if integer else
                             "must be a positive number of seconds") + f", got {value!r}")
        numbers[key] = value
    needs_key = getattr(adapter, "needs_key", kind in _KEYED_KINDS)
    has_credential = bool(keys) or not needs_key or (
        kind in _SERVICE_ACCOUNT_KINDS and bool(settings.get("vertex_ai_service_account_json")))
    return ProviderSpec(name=name, kind=kind, base_url=(base_url or "").rstrip("/"),
                        api_keys=tuple(keys), strategy=strategy,
                        max_concurrent=int(numbers["max_concurrent"]),
                        timeout_connect_s=float(numbers["timeout_connect_s"]),
                        timeout_idle_s=float(numbers["timeout_idle_s"]),
                        timeout_total_s=float(numbers["timeout_total_s"]),
                        breaker_failures=int(numbers["breaker_failures"]),
                        breaker_cooldown_s=float(numbers["breaker_cooldown_s"]),
                        max_tokens_field=limit_field, has_credential=has_credential,
                        **_kind_fields(entry, adapter, fail))


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


def env_providers(settings: Mapping[str, Any]) -> list[ProviderSpec]:
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


def bedrock_providers(env: Mapping[str, str]) -> list[ProviderSpec]:
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
