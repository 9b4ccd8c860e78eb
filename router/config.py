"""Settings: one frozen `Config` built once at startup and passed down.

Precedence (docs/configuration.md): command-line flag > environment > `.env` > `aura-router.toml`
(or the file named by `AURA_CONFIG` / `--config`) > defaults. Nothing here runs at
import time; `load_config` is the only entry point and reads only what it is given.
The provider and model sections of the TOML file are parsed in `router.catalog`.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal, InvalidOperation
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from dotenv import dotenv_values

from router.catalog import SECTIONS, Catalog, build_catalog
from router.config_lines import TomlLines, closest, unknown_key
from router.errors import ConfigError
from router.ledger.stores import BACKENDS, EXTERNAL_BACKENDS
from router.logs import FORMATS, LEVELS
from router.redact import display_url
from router.tiers import TIERS, TierConfig, default_models, parse_tiers

__all__ = ["Config", "ConfigError", "load_config"]


def _int(value: str, name: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def _seconds(value: str, name: str) -> float:
    try:
        return float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from None


def _fraction(value: str, name: str) -> Decimal:
    """A non-negative decimal factor (never a float: it multiplies money)."""
    try:
        factor = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(f"{name} must be a decimal number, got {value!r}") from None
    if not factor.is_finite() or factor < 0:
        raise ConfigError(f"{name} must be 0 or more, got {value!r}")
    return factor


def _bool(value: str, name: str) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _from_toml(value: Any, setting: "Setting", source: str) -> Any:
    """A `[settings]` value TOML already typed: it must be of the setting's type."""
    parse = setting.parse
    if isinstance(value, str):
        return parse(value, source) if parse else value
    if parse is _int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if parse is _seconds and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if parse is _fraction and isinstance(value, int) and not isinstance(value, bool):
        return _fraction(str(value), source)
    if parse is _bool and isinstance(value, bool):
        return value
    expected = {_int: "an integer", _seconds: "a number of seconds", _bool: "true or false",
                _fraction: "a decimal string such as \"0.5\" (not a float: it multiplies "
                           "money)"}.get(parse, "a string")  # type: ignore[call-overload]
    raise ConfigError(f"{source} must be {expected}, got {value!r}")


# Settings that let their holder act for anyone: long enough not to be guessed.
_MIN_SECRET_CHARS = 24
_STRONG_SECRETS = ("admin_api_key", "internal_service_token")
# A console sign-in lasts at least a minute and at most a week (docs/console.md).
MIN_CONSOLE_SESSION_S, MAX_CONSOLE_SESSION_S = 60, 7 * 24 * 3600


@dataclass(frozen=True)
class Setting:
    """One scalar setting: its field, the env names it answers to, its parser."""

    field: str
    env: tuple[str, ...]
    default: Any
    parse: Callable[[str, str], Any] | None = None


_SETTINGS: tuple[Setting, ...] = (
    Setting("host", ("HOST",), "0.0.0.0"),
    Setting("port", ("PORT", "ROUTER_PORT"), 3000, _int),
    Setting("data_dir", ("DATA_DIR",), "./data"),
    Setting("billing_backend", ("BILLING_BACKEND",), "sqlite"),
    Setting("redis_url", ("REDIS_URL",), None),
    Setting("database_url", ("DATABASE_URL",), None),
    Setting("workers", ("WORKERS",), 1, _int),
    Setting("admin_api_key", ("ADMIN_API_KEY", "TOKEN_ADMIN_KEY"), None),
    Setting("auth_cookie_secret", ("AUTH_COOKIE_SECRET",), None),
    Setting("auth0_domain", ("AUTH0_DOMAIN",), None),
    Setting("auth0_audience", ("AUTH0_AUDIENCE",), None),
    Setting("jwks_url", ("JWKS_URL",), None),
    Setting("jwt_issuer", ("JWT_ISSUER",), None),
    Setting("jwks_refresh_s", ("JWKS_REFRESH_S",), 600.0, _seconds),
    Setting("jwks_min_refresh_s", ("JWKS_MIN_REFRESH_S",), 30.0, _seconds),
    Setting("internal_service_token", ("INTERNAL_SERVICE_TOKEN",), None),
    Setting("openai_api_key", ("OPENAI_API_KEY",), None),
    Setting("openai_base_url", ("OPENAI_BASE_URL",), "https://api.openai.com/v1"),
    Setting("anthropic_api_key", ("ANTHROPIC_API_KEY",), None),
    Setting("anthropic_base_url", ("ANTHROPIC_BASE_URL",), "https://api.anthropic.com"),
    Setting("llm_provider_mode", ("LLM_PROVIDER_MODE",), "direct"),
    Setting("google_ai_api_key", ("GOOGLE_AI_API_KEY", "GEMINI_API_KEY"), None),
    Setting("google_ai_base_url", ("GOOGLE_AI_BASE_URL",),
            "https://generativelanguage.googleapis.com"),
    Setting("azure_openai_endpoint", ("AZURE_OPENAI_ENDPOINT",), None),
    Setting("azure_openai_api_key", ("AZURE_OPENAI_API_KEY",), None),
    Setting("azure_openai_api_version", ("AZURE_OPENAI_API_VERSION",), "2024-10-21"),
    Setting("openrouter_api_key", ("OPENROUTER_API_KEY",), None),
    Setting("openrouter_base_url", ("OPENROUTER_BASE_URL",), "https://openrouter.ai/api/v1"),
    Setting("ollama_base_url", ("OLLAMA_BASE_URL",), None),
    Setting("vertex_ai_project", ("VERTEX_AI_PROJECT",), None),
    Setting("vertex_ai_location", ("VERTEX_AI_LOCATION",), "global"),
    Setting("vertex_ai_service_account_json",
            ("VERTEX_AI_SERVICE_ACCOUNT_JSON", "GOOGLE_APPLICATION_CREDENTIALS"), None),
    Setting("vertex_ai_base_url", ("VERTEX_AI_BASE_URL",), None),
    Setting("claude_code_home", ("CLAUDE_CODE_HOME",), None),
    Setting("additional_account_dirs", ("ADDITIONAL_ACCOUNT_DIRS",), None),
    Setting("rate_limit_rpm", ("RATE_LIMIT_RPM",), 60, _int),
    Setting("cors_origins", ("CORS_ORIGINS",), "*"),
    Setting("max_body_bytes", ("MAX_BODY_BYTES",), 10 * 1024 * 1024, _int),
    Setting("body_timeout_s", ("BODY_TIMEOUT_S",), 30.0, _seconds),
    Setting("header_timeout_s", ("HEADER_TIMEOUT_S",), 30.0, _seconds),
    Setting("starting_grant_micros", ("STARTING_GRANT_MICROS",), 0, _int),
    Setting("hold_ttl_s", ("HOLD_TTL_S",), 3600, _int),
    Setting("hold_policy", ("HOLD_POLICY",), "affordable"),
    Setting("min_output_tokens", ("MIN_OUTPUT_TOKENS",), 256, _int),
    Setting("checkpoint_s", ("CHECKPOINT_S",), 1.0, _seconds),
    Setting("lease_s", ("LEASE_S",), 15.0, _seconds),
    Setting("first_event_grace_s", ("FIRST_EVENT_GRACE_S",), 20.0, _seconds),
    Setting("log_requests", ("LOG_REQUESTS",), True, _bool),
    Setting("shutdown_grace_s", ("SHUTDOWN_GRACE_S",), 10.0, _seconds),
    Setting("resume_window_s", ("RESUME_WINDOW_S",), 120, _int),
    Setting("stream_buffer_bytes", ("STREAM_BUFFER_BYTES",), 1024 * 1024, _int),
    Setting("max_detached_streams", ("MAX_DETACHED_STREAMS",), 32, _int),
    Setting("sse_heartbeat_s", ("SSE_HEARTBEAT_S",), 15, _int),
    Setting("ws_max_streams", ("WS_MAX_STREAMS",), 8, _int),
    Setting("ws_max_frame_bytes", ("WS_MAX_FRAME_BYTES",), 1024 * 1024, _int),
    Setting("ws_auth_timeout_s", ("WS_AUTH_TIMEOUT_S",), 10, _int),
    Setting("ws_ping_interval_s", ("WS_PING_INTERVAL_S",), 20, _int),
    Setting("ws_stall_s", ("WS_STALL_S",), 30.0, _seconds),
    Setting("z_billing_url", ("Z_BILLING_URL",), None),
    Setting("z_billing_api_key", ("Z_BILLING_API_KEY",), None),
    Setting("z_billing_mode", ("Z_BILLING_MODE",), "two_phase"),
    Setting("z_billing_timeout_s", ("Z_BILLING_TIMEOUT_S",), 5.0, _seconds),
    Setting("aura_network_url", ("AURA_NETWORK_URL",), None),
    Setting("aura_network_token", ("AURA_NETWORK_TOKEN",), None),
    Setting("aura_storage_url", ("AURA_STORAGE_URL",), None),
    Setting("aura_storage_token", ("AURA_STORAGE_TOKEN",), None),
    Setting("store_messages", ("STORE_MESSAGES",), None, _bool),
    Setting("outbox_retry_max_s", ("OUTBOX_RETRY_MAX_S",), 300.0, _seconds),
    Setting("metrics_public", ("METRICS_PUBLIC",), True, _bool),
    Setting("response_cache", ("RESPONSE_CACHE",), "off"),
    Setting("cache_ttl_s", ("CACHE_TTL_S",), 3600.0, _seconds),
    Setting("cache_scope", ("CACHE_SCOPE",), "account"),
    Setting("cache_hit_price", ("CACHE_HIT_PRICE",), Decimal(0), _fraction),
    Setting("log_level", ("LOG_LEVEL",), "info"),
    Setting("log_format", ("LOG_FORMAT",), "json"),
    Setting("allow_providers_without_keys", ("ALLOW_PROVIDERS_WITHOUT_KEYS",), False, _bool),
    Setting("provider_probe_s", ("PROVIDER_PROBE_S",), 30.0, _seconds),
    Setting("console_session_s", ("CONSOLE_SESSION_S",), 1800.0, _seconds),
    Setting("router_secret_key", ("ROUTER_SECRET_KEY",), None),
)

# Secrets: `doctor` and logs show only whether they are set.
SECRET_FIELDS = frozenset({"admin_api_key", "auth_cookie_secret", "internal_service_token",
                           "openai_api_key", "anthropic_api_key", "redis_url",
                           "database_url", "z_billing_api_key", "aura_network_token",
                           "aura_storage_token", "google_ai_api_key",
                           "azure_openai_api_key", "openrouter_api_key",
                           "vertex_ai_service_account_json", "router_secret_key"})


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    data_dir: str
    billing_backend: str
    redis_url: str | None = field(repr=False)
    database_url: str | None = field(repr=False)
    workers: int
    admin_api_key: str | None = field(repr=False)
    auth_cookie_secret: str | None = field(repr=False)
    auth0_domain: str | None
    auth0_audience: str | None
    jwks_url: str | None
    jwt_issuer: str | None
    jwks_refresh_s: float
    jwks_min_refresh_s: float
    internal_service_token: str | None = field(repr=False)
    openai_api_key: str | None = field(repr=False)
    openai_base_url: str
    anthropic_api_key: str | None = field(repr=False)
    anthropic_base_url: str
    llm_provider_mode: str
    google_ai_api_key: str | None = field(repr=False)
    google_ai_base_url: str
    azure_openai_endpoint: str | None
    azure_openai_api_key: str | None = field(repr=False)
    azure_openai_api_version: str
    openrouter_api_key: str | None = field(repr=False)
    openrouter_base_url: str
    ollama_base_url: str | None
    vertex_ai_project: str | None  # None: the service account's project_id
    vertex_ai_location: str
    vertex_ai_service_account_json: str | None = field(repr=False)  # JSON, or a path
    vertex_ai_base_url: str | None  # None: Google's endpoint for the location
    claude_code_home: str | None  # None: ~/.claude
    additional_account_dirs: str | None  # comma-separated
    rate_limit_rpm: int
    cors_origins: str
    max_body_bytes: int
    body_timeout_s: float
    header_timeout_s: float
    starting_grant_micros: int
    hold_ttl_s: int
    hold_policy: str
    min_output_tokens: int
    checkpoint_s: float
    lease_s: float
    first_event_grace_s: float
    log_requests: bool
    shutdown_grace_s: float
    resume_window_s: int
    stream_buffer_bytes: int
    max_detached_streams: int
    sse_heartbeat_s: int
    ws_max_streams: int
    ws_max_frame_bytes: int
    ws_auth_timeout_s: int
    ws_ping_interval_s: int
    ws_stall_s: float
    z_billing_url: str | None
    z_billing_api_key: str | None = field(repr=False)
    z_billing_mode: str
    z_billing_timeout_s: float
    aura_network_url: str | None
    aura_network_token: str | None = field(repr=False)
    aura_storage_url: str | None
    aura_storage_token: str | None = field(repr=False)
    store_messages: bool | None  # None: on when AURA_STORAGE_URL is set
    outbox_retry_max_s: float
    metrics_public: bool
    response_cache: str
    cache_ttl_s: float
    cache_scope: str
    cache_hit_price: Decimal
    log_level: str  # debug | info | warning | error
    log_format: str  # json | text
    allow_providers_without_keys: bool  # start anyway, /ready 503 until they have one
    provider_probe_s: float  # how often each provider's upstream is probed
    console_session_s: float  # how long a console sign-in lasts (router/console/session.py)
    router_secret_key: str | None = field(repr=False)  # AES-GCM key of the provider store
    config_path: str | None
    catalog: Catalog = field(repr=False)
    tiers: TierConfig = field(repr=False, default=TierConfig({}))

    @property
    def sends_messages(self) -> bool:
        """Prompts and answers go to the storage sink (STORE_MESSAGES, on by default when
        AURA_STORAGE_URL is set)."""
        if self.store_messages is None:
            return bool(self.aura_storage_url)
        return self.store_messages and bool(self.aura_storage_url)

    def secrets(self) -> list[str]:
        """Every secret setting that is set: never shown, and redacted wherever a
        provider's or client's words are passed on."""
        return [value for name in sorted(SECRET_FIELDS)
                if isinstance(value := getattr(self, name), str) and value]

    def describe(self) -> dict[str, Any]:
        """Resolved settings with every secret shown only as present/absent."""
        out: dict[str, Any] = {}
        for s in _SETTINGS:
            value = getattr(self, s.field)
            if s.field in SECRET_FIELDS:
                value = "set" if value else "not set"
            elif s.field.endswith("_url") and isinstance(value, str):
                value = display_url(value)  # never userinfo or a query (a key may sit there)
            elif isinstance(value, Decimal):
                value = str(value)
            out[s.field] = value
        out["config_path"] = self.config_path
        return out


def _find_config_file(flags: Mapping[str, Any], env: Mapping[str, str],
                      cwd: Path) -> Path | None:
    named = flags.get("config") or env.get("AURA_CONFIG")
    if named:
        path = Path(named)
        path = path if path.is_absolute() else cwd / path
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    default = cwd / "aura-router.toml"
    return default if default.is_file() else None


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    text = path.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_config(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                cwd: Path | None = None) -> Config:
    """Build the one `Config` from flags, environment, `.env`, the TOML file and defaults."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = dict(os.environ if env is None else env)
    cwd = cwd or Path.cwd()
    dotenv_path = cwd / ".env"
    dotenv = {k: v for k, v in dotenv_values(dotenv_path).items()
              if v is not None} if dotenv_path.is_file() else {}
    merged_env = {**dotenv, **env}

    config_path = _find_config_file(flags, merged_env, cwd)
    toml, toml_text = _read_toml(config_path) if config_path else ({}, "")
    toml_settings = _toml_settings(toml, TomlLines(toml_text), str(config_path))

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}  # what an error about the setting calls it
    for s in _SETTINGS:
        if s.field in flags:
            values[s.field] = flags[s.field]
            sources[s.field] = "--" + s.field.replace("_", "-")
            continue
        raw: Any = next((merged_env[n] for n in s.env if merged_env.get(n) not in (None, "")),
                        None)
        source = next((n for n in s.env if merged_env.get(n) not in (None, "")), s.env[0])
        sources[s.field] = source
        if raw is None and s.field in toml_settings:
            raw, source = toml_settings[s.field]
            sources[s.field] = source
            values[s.field] = _from_toml(raw, s, source)
        elif raw is None:
            values[s.field] = s.default
        else:
            values[s.field] = s.parse(raw, source) if s.parse else raw
    _check(values, sources)

    catalog = build_catalog(toml, toml_text, str(config_path) if config_path else None,
                            values, merged_env)
    return Config(**values, config_path=str(config_path) if config_path else None,
                  catalog=catalog,
                  tiers=_tiers(toml, str(config_path or "[tiers]"), toml_text, catalog))


def _toml_settings(toml: Mapping[str, Any], lines: TomlLines,
                   path: str) -> dict[str, tuple[Any, str]]:
    """The file's sections checked, and `[settings]` as field -> (value, its source)."""
    def at(*where: str) -> str:
        line = lines.line(where)
        return f"{path}:{line}" if line else path

    fields = [s.field for s in _SETTINGS]
    for key, value in toml.items():
        if key in SECTIONS:
            continue
        if isinstance(value, (dict, list)):
            raise unknown_key(at(key), key, "", SECTIONS, what="section")
        guess = closest(key, fields)
        raise ConfigError(f"{at(key)}: unknown key {key!r} at the top level: settings go "
                          f"under [settings]" + (f" (did you mean {guess!r}?)" if guess else ""))
    table = toml.get("settings", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{at('settings')}: [settings] must be a table")
    for key in table:
        if key not in fields:
            raise unknown_key(at("settings", key), key, "in [settings]", fields)
    return {key: (value, f"{at('settings', key)}: settings.{key}")
            for key, value in table.items()}


def _check(values: dict[str, Any], sources: Mapping[str, str]) -> None:
    """The rules between and within settings, each error naming where the value came
    from (a variable, a flag, or the config file's line)."""
    def src(name: str) -> str:
        return sources[name]

    if values["billing_backend"] not in BACKENDS + EXTERNAL_BACKENDS:
        raise ConfigError(f"BILLING_BACKEND={values['billing_backend']!r} is not available "
                          f"in this build; use one of "
                          f"{', '.join(BACKENDS + EXTERNAL_BACKENDS)}")
    if values["billing_backend"] == "http" and not values["z_billing_url"]:
        raise ConfigError("BILLING_BACKEND=http needs Z_BILLING_URL (the credit service, "
                          "docs/integration.md)")
    if values["billing_backend"] == "postgres" and not values["database_url"]:
        raise ConfigError("BILLING_BACKEND=postgres needs DATABASE_URL "
                          "(postgresql://user@host:5432/dbname)")
    if values["billing_backend"] == "redis" and not values["redis_url"]:
        raise ConfigError("BILLING_BACKEND=redis needs REDIS_URL (redis://host:6379/0)")
    if values["z_billing_mode"] not in ("two_phase", "check_debit"):
        raise ConfigError(f"{src('z_billing_mode')} must be 'two_phase' or 'check_debit', got "
                          f"{values['z_billing_mode']!r}")
    if values["store_messages"] and not values["aura_storage_url"]:
        raise ConfigError("STORE_MESSAGES needs AURA_STORAGE_URL (where the messages go)")
    if values["response_cache"] not in ("off", "memory", "redis"):
        raise ConfigError(f"{src('response_cache')} must be off, memory or redis, got "
                          f"{values['response_cache']!r}")
    if values["response_cache"] == "redis" and not values["redis_url"]:
        raise ConfigError("RESPONSE_CACHE=redis needs REDIS_URL")
    if values["cache_scope"] not in ("account", "global"):
        raise ConfigError(f"{src('cache_scope')} must be account or global, got "
                          f"{values['cache_scope']!r}")
    for name, allowed in (("log_level", tuple(LEVELS)), ("log_format", FORMATS)):
        if (value := str(values[name]).lower()) not in allowed:
            raise ConfigError(f"{name.upper()} must be one of {', '.join(allowed)}, "
                              f"got {value!r}")
        values[name] = value
    if not 0 <= values["port"] <= 65535:
        raise ConfigError(f"{src('port')} must be a port number (0 to 65535), got "
                          f"{values['port']!r}")
    if values["workers"] < 1:
        raise ConfigError(f"{src('workers')} must be 1 or more")
    if values["rate_limit_rpm"] < 0:
        raise ConfigError(f"{src('rate_limit_rpm')} must be 0 (no limit) or positive")
    if values["hold_policy"] not in ("affordable", "strict"):
        raise ConfigError(f"{src('hold_policy')} must be 'affordable' or 'strict', got "
                          f"{values['hold_policy']!r}")
    if values["min_output_tokens"] < 1:
        raise ConfigError(f"{src('min_output_tokens')} must be positive")
    for name in _STRONG_SECRETS:
        secret = values[name]
        if secret and len(secret) < _MIN_SECRET_CHARS:  # never the value: it is a secret
            raise ConfigError(
                f"{src(name)} is {len(secret)} characters long; it must be at least "
                f"{_MIN_SECRET_CHARS} (a short key can be guessed). Make one with: "
                "python -c \"import secrets; print(secrets.token_urlsafe(32))\"")
    lifetime = values["console_session_s"]
    if not MIN_CONSOLE_SESSION_S <= lifetime <= MAX_CONSOLE_SESSION_S:  # also NaN, inf
        raise ConfigError(f"{src('console_session_s')} must be from {MIN_CONSOLE_SESSION_S} "
                          f"to {MAX_CONSOLE_SESSION_S} seconds, got {lifetime!r}")
    if values["lease_s"] < 3 * values["checkpoint_s"]:
        raise ConfigError(f"{src('lease_s')} must be at least three times CHECKPOINT_S (a "
                          "lease is renewed with the checkpoints)")
    for name in ("checkpoint_s", "first_event_grace_s", "max_body_bytes", "body_timeout_s",
                 "header_timeout_s", "resume_window_s", "stream_buffer_bytes",
                 "max_detached_streams",
                 "sse_heartbeat_s", "ws_max_streams", "ws_max_frame_bytes",
                 "ws_auth_timeout_s", "ws_ping_interval_s", "ws_stall_s", "jwks_refresh_s",
                 "jwks_min_refresh_s", "outbox_retry_max_s", "z_billing_timeout_s",
                 "cache_ttl_s", "provider_probe_s"):
        if values[name] <= 0:
            raise ConfigError(f"{src(name)} must be positive, got {values[name]!r}")



def _tiers(toml: Mapping[str, Any], where: str, text: str, catalog: Catalog) -> TierConfig:
    """`[tiers]`, each tier's model resolved (by default from the catalog, router/tiers.py)."""
    lines = TomlLines(text)
    parsed = parse_tiers(toml.get("tiers"), where, lines)
    defaults = default_models({m.id: m.prices.output for m in catalog.models.values()
                               if m.route})
    models: dict[str, str | None] = {}
    for tier in TIERS:
        chosen = parsed.models[tier] or defaults.get(tier)
        if chosen is not None and catalog.resolve(chosen) is None:
            line = lines.line(("tiers", tier))
            raise ConfigError(f"{where}{f':{line}' if line else ''}: tiers.{tier}: unknown "
                              f"model {chosen!r}")
        models[tier] = chosen
    return TierConfig(models, parsed.rules)
