"""Settings and the config file (docs/configuration.md): defaults, precedence, seed aliases, the
catalog built from env keys and the TOML file, config errors naming file/line/field, and
`describe()` never showing secrets."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from router.catalog import Target
from router.config import ConfigError, load_config


def write(path: Path, text: str) -> str:
    text = textwrap.dedent(text).lstrip("\n")
    path.write_text(text, encoding="utf-8")
    return text


def line_of(text: str, needle: str, occurrence: int = 0) -> int:
    """1-based number of the line that contains `needle` (its `occurrence`-th match)."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence]


SEED_ADMIN = "seed-admin-key-0123456789"  # admin keys are at least 24 characters


def toml(tmp_path: Path, text: str) -> str:
    return write(tmp_path / "aura-router.toml", text)


# --- defaults and precedence -----------------------------------------------------------------

def test_defaults(tmp_path: Path) -> None:
    cfg = load_config({}, {}, tmp_path)
    assert cfg.port == 3000
    assert cfg.host == "0.0.0.0"
    assert cfg.data_dir == "./data"
    assert cfg.billing_backend == "sqlite"
    assert cfg.admin_api_key is None
    assert cfg.rate_limit_rpm == 60
    assert cfg.max_body_bytes == 10 * 1024 * 1024
    assert cfg.openai_base_url == "https://api.openai.com/v1"
    assert cfg.anthropic_base_url == "https://api.anthropic.com"
    assert cfg.config_path is None


def test_demo_provider_when_no_provider_keys(tmp_path: Path) -> None:
    cat = load_config({}, {}, tmp_path).catalog
    assert list(cat.providers) == ["demo"]
    assert cat.providers["demo"].kind == "demo"
    demo = cat.resolve("demo")
    assert demo is not None
    assert demo.route == (Target("demo", "demo"),)
    assert [m.id for m in cat.routable()] == ["demo"]


def test_precedence_flag_env_dotenv_toml_default(tmp_path: Path) -> None:
    write(tmp_path / ".env", """
        PORT=4002
        DATA_DIR=/from-dotenv
        HOST=10.0.0.2
    """)
    toml(tmp_path, """
        [settings]
        port = 4001
        data_dir = "/from-toml"
        host = "10.0.0.3"
        rate_limit_rpm = 77
    """)
    env = {"PORT": "4003", "DATA_DIR": "/from-env"}
    cfg = load_config({"port": 4004}, env, tmp_path)
    assert cfg.port == 4004                     # flag beats env
    assert cfg.data_dir == "/from-env"          # env beats .env
    assert cfg.host == "10.0.0.2"               # .env beats toml
    assert cfg.rate_limit_rpm == 77             # toml beats default
    assert cfg.max_body_bytes == 10 * 1024 * 1024  # default
    assert cfg.config_path == str(tmp_path / "aura-router.toml")

    # peel the layers off one by one
    assert load_config({}, env, tmp_path).port == 4003
    assert load_config({"port": None}, env, tmp_path).port == 4003  # unset flag is no flag
    assert load_config({}, {}, tmp_path).port == 4002
    (tmp_path / ".env").unlink()
    assert load_config({}, {}, tmp_path).port == 4001
    (tmp_path / "aura-router.toml").unlink()
    assert load_config({}, {}, tmp_path).port == 3000


def test_toml_settings_as_strings_are_parsed(tmp_path: Path) -> None:
    toml(tmp_path, """
        [settings]
        port = "4100"
    """)
    assert load_config({}, {}, tmp_path).port == 4100


def test_seed_aliases_router_port_and_token_admin_key(tmp_path: Path) -> None:
    cfg = load_config({}, {"ROUTER_PORT": "8123", "TOKEN_ADMIN_KEY": SEED_ADMIN}, tmp_path)
    assert cfg.port == 8123
    assert cfg.admin_api_key == SEED_ADMIN
    # the canonical names win when both are set
    both = load_config({}, {"ROUTER_PORT": "8123", "PORT": "9000",
                            "TOKEN_ADMIN_KEY": "old-" + SEED_ADMIN,
                            "ADMIN_API_KEY": "new-" + SEED_ADMIN}, tmp_path)
    assert both.port == 9000
    assert both.admin_api_key == "new-" + SEED_ADMIN


def test_seed_aliases_work_from_dotenv(tmp_path: Path) -> None:
    write(tmp_path / ".env", "ROUTER_PORT=8555\nTOKEN_ADMIN_KEY=dotenv-admin-key-0123456789\n")
    cfg = load_config({}, {}, tmp_path)
    assert cfg.port == 8555
    assert cfg.admin_api_key == "dotenv-admin-key-0123456789"


def test_bad_integer_setting_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({}, {"PORT": "eighty"}, tmp_path)
    assert "PORT" in str(info.value)
    assert "eighty" in str(info.value)


# --- providers from the environment ------------------------------------------------------------

def test_openai_key_creates_openai_provider_and_routes_catalog_models(tmp_path: Path) -> None:
    cat = load_config({}, {"OPENAI_API_KEY": "sk-test-openai"}, tmp_path).catalog
    assert "openai" in cat.providers
    assert "demo" not in cat.providers
    openai = cat.providers["openai"]
    assert openai.kind == "openai"
    assert openai.base_url == "https://api.openai.com/v1"
    assert openai.api_keys == ("sk-test-openai",)
    mini = cat.resolve("gpt-4o-mini")
    assert mini is not None
    assert mini.route == (Target("openai", "gpt-4o-mini"),)
    # the shipped list price, USD per Mtok
    assert mini.prices.input == Decimal("0.15")
    assert mini.prices.output == Decimal("0.60")
    # no Anthropic key: Claude models are known but not routable
    assert all(m.kind != "anthropic" for m in cat.routable())


def test_openai_base_url_and_anthropic_key(tmp_path: Path) -> None:
    cat = load_config({}, {"OPENAI_API_KEY": "sk-o", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/",
                           "ANTHROPIC_API_KEY": "sk-ant-a"}, tmp_path).catalog
    assert cat.providers["openai"].base_url == "http://127.0.0.1:9/v1"
    assert cat.providers["anthropic"].kind == "anthropic"
    haiku = cat.resolve("claude-haiku-4-5")
    assert haiku is not None and haiku.route == (Target("anthropic", "claude-haiku-4-5"),)


# --- the config file ---------------------------------------------------------------------------

SPEC_TOML = """
    [[providers]]
    name = "primary"
    kind = "openai"
    base_url = "http://127.0.0.1:9001/v1"
    api_keys = ["sk-one", "sk-two"]
    strategy = "round_robin"
    max_concurrent = 256
    timeout_connect_s = 10
    timeout_idle_s = 300

    [[providers]]
    name = "backup"
    kind = "anthropic"
    base_url = "http://127.0.0.1:9002"
    api_key_env = "BACKUP_KEYS"
    strategy = "priority"

    [[models]]
    id = "house-model"
    route = ["primary:gpt-4o-mini", "backup:claude-haiku-4-5"]
    input_per_mtok = "0.15"
    output_per_mtok = "0.60"
    cache_read_per_mtok = "0.075"
    cache_write_per_mtok = "0.1875"
    max_output_tokens = 16384

    [[models]]
    id = "gpt-4o-mini"
    input_per_mtok = "0.20"

    [aliases]
    fast = "house-model"
"""


def test_toml_builds_providers_routes_and_aliases(tmp_path: Path) -> None:
    toml(tmp_path, SPEC_TOML)
    cfg = load_config({}, {"BACKUP_KEYS": "sk-ant-1, sk-ant-2,"}, tmp_path)
    cat = cfg.catalog
    assert cat.providers["primary"].api_keys == ("sk-one", "sk-two")
    assert cat.providers["primary"].base_url == "http://127.0.0.1:9001/v1"
    assert cat.providers["backup"].api_keys == ("sk-ant-1", "sk-ant-2")
    assert cat.providers["backup"].strategy == "priority"
    assert "demo" not in cat.providers

    house = cat.resolve("house-model")
    assert house is not None
    assert house.route == (Target("primary", "gpt-4o-mini"), Target("backup", "claude-haiku-4-5"))
    assert house.kind == "openai"  # its first target's kind
    assert house.prices.input == Decimal("0.15")
    assert house.prices.output == Decimal("0.60")
    assert house.prices.cache_read == Decimal("0.075")
    assert house.prices.cache_write == Decimal("0.1875")
    assert house.max_output_tokens == 16384
    assert cat.resolve("fast") == house

    # a model listed only to override a price keeps the rest of the shipped entry
    mini = cat.resolve("gpt-4o-mini")
    assert mini is not None
    assert mini.prices.input == Decimal("0.20")
    assert mini.prices.output == Decimal("0.60")
    assert mini.route == (Target("primary", "gpt-4o-mini"),)


def test_config_named_by_aura_config_and_flag(tmp_path: Path) -> None:
    other = tmp_path / "conf" / "router.toml"
    other.parent.mkdir()
    write(other, """
        [settings]
        port = 4242
    """)
    assert load_config({}, {"AURA_CONFIG": str(other)}, tmp_path).port == 4242
    assert load_config({"config": "conf/router.toml"}, {}, tmp_path).port == 4242
    with pytest.raises(ConfigError) as info:
        load_config({}, {"AURA_CONFIG": str(tmp_path / "missing.toml")}, tmp_path)
    assert "missing.toml" in str(info.value)


def test_float_price_names_file_line_and_field(tmp_path: Path) -> None:
    text = toml(tmp_path, """
        # house models
        [[models]]
        id = "house"
        route = ["openai:gpt-4o-mini"]
        input_per_mtok = 0.15
        output_per_mtok = "0.60"
    """)
    with pytest.raises(ConfigError) as info:
        load_config({}, {"OPENAI_API_KEY": "sk-x"}, tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "aura-router.toml") in msg
    assert f":{line_of(text, 'input_per_mtok = 0.15')}:" in msg
    assert "models[0].input_per_mtok" in msg


def test_error_in_second_model_names_its_index_and_line(tmp_path: Path) -> None:
    text = toml(tmp_path, """
        [[models]]
        id = "one"
        route = ["openai:gpt-4o-mini"]
        input_per_mtok = "1"
        output_per_mtok = "2"

        [[models]]
        id = "two"
        route = ["openai:gpt-4o-mini"]
        input_per_mtok = "1"
        output_per_mtok = "-2"
    """)
    with pytest.raises(ConfigError) as info:
        load_config({}, {"OPENAI_API_KEY": "sk-x"}, tmp_path)
    msg = str(info.value)
    assert f":{line_of(text, 'output_per_mtok', occurrence=1)}:" in msg
    assert "models[1].output_per_mtok" in msg


def test_unknown_provider_kind_names_field_and_line(tmp_path: Path) -> None:
    text = toml(tmp_path, """
        [[providers]]
        name = "ok"
        kind = "openai"
        base_url = "http://127.0.0.1:1/v1"

        [[providers]]
        name = "weird"
        kind = "banana"
        base_url = "http://127.0.0.1:2/v1"
    """)
    with pytest.raises(ConfigError) as info:
        load_config({}, {}, tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "aura-router.toml") in msg
    assert "providers[1].kind" in msg
    assert f":{line_of(text, 'banana')}:" in msg


def test_route_to_unknown_provider_names_route(tmp_path: Path) -> None:
    text = toml(tmp_path, """
        [[models]]
        id = "house"
        input_per_mtok = "1"
        output_per_mtok = "2"
        route = ["nowhere:gpt-4o-mini"]
    """)
    with pytest.raises(ConfigError) as info:
        load_config({}, {"OPENAI_API_KEY": "sk-x"}, tmp_path)
    msg = str(info.value)
    assert "models[0].route" in msg
    assert f":{line_of(text, 'route =')}:" in msg
    assert "nowhere" in msg


def test_model_without_price_and_not_in_catalog_is_refused(tmp_path: Path) -> None:
    toml(tmp_path, """
        [[models]]
        id = "mystery-model"
        route = ["openai:mystery-model"]
    """)
    with pytest.raises(ConfigError) as info:
        load_config({}, {"OPENAI_API_KEY": "sk-x"}, tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "aura-router.toml") in msg
    assert "models[0]" in msg


def test_model_with_only_an_input_price_is_refused(tmp_path: Path) -> None:
    toml(tmp_path, """
        [[models]]
        id = "half-priced"
        route = ["openai:x"]
        input_per_mtok = "1"
    """)
    with pytest.raises(ConfigError):
        load_config({}, {"OPENAI_API_KEY": "sk-x"}, tmp_path)


def test_unknown_alias_target_names_alias_and_line(tmp_path: Path) -> None:
    text = toml(tmp_path, """
        [aliases]
        fast = "gpt-4o-mini"
        smart = "gpt-99-ultra"
    """)
    with pytest.raises(ConfigError) as info:
        load_config({}, {"OPENAI_API_KEY": "sk-x"}, tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "aura-router.toml") in msg
    assert "aliases.smart" in msg
    assert f":{line_of(text, 'smart =')}:" in msg


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    toml(tmp_path, """
        [[models]]
        id = "house
    """)
    with pytest.raises(ConfigError) as info:
        load_config({}, {}, tmp_path)
    assert str(tmp_path / "aura-router.toml") in str(info.value)


def test_error_line_found_when_table_header_has_a_comment(tmp_path: Path) -> None:
    text = toml(tmp_path, """
        [[models]]  # the house model
        id = "house"
        route = ["openai:gpt-4o-mini"]
        input_per_mtok = 0.15
        output_per_mtok = "0.60"
    """)
    with pytest.raises(ConfigError) as info:
        load_config({}, {"OPENAI_API_KEY": "sk-x"}, tmp_path)
    assert f":{line_of(text, 'input_per_mtok = 0.15')}:" in str(info.value)


# --- describe() never shows secrets ------------------------------------------------------------

SECRETS = {
    "ADMIN_API_KEY": "admin-SECRET-7f3a9c-0123456789",
    "AUTH_COOKIE_SECRET": "cookie-SECRET-11d2e8",
    "INTERNAL_SERVICE_TOKEN": "internal-SECRET-5b6c-0123456789",
    "OPENAI_API_KEY": "sk-openai-SECRET-a1b2",
    "ANTHROPIC_API_KEY": "sk-ant-SECRET-c3d4",
    "Z_BILLING_API_KEY": "zb-SECRET-0a0b",
    "AURA_NETWORK_TOKEN": "net-SECRET-1c1d",
    "AURA_STORAGE_TOKEN": "sto-SECRET-2e2f",
}


def test_describe_never_contains_secret_values(tmp_path: Path) -> None:
    toml(tmp_path, """
        [[providers]]
        name = "primary"
        kind = "openai"
        base_url = "http://127.0.0.1:9001/v1"
        api_keys = ["sk-toml-SECRET-e5f6"]
    """)
    cfg = load_config({}, SECRETS, tmp_path)
    text = repr(cfg.describe())
    for value in [*SECRETS.values(), "sk-toml-SECRET-e5f6"]:
        assert value not in text
    assert "SECRET" not in text
    d = cfg.describe()
    for name in ("admin_api_key", "auth_cookie_secret", "internal_service_token",
                 "openai_api_key", "anthropic_api_key", "z_billing_api_key",
                 "aura_network_token", "aura_storage_token"):
        assert d[name] == "set"
    # non-secrets are shown as they are
    assert d["port"] == 3000


def test_describe_via_seed_alias_hides_secret(tmp_path: Path) -> None:
    cfg = load_config({}, {"TOKEN_ADMIN_KEY": "seed-admin-SECRET-99-0123456789"}, tmp_path)
    assert "seed-admin-SECRET-99-0123456789" not in repr(cfg.describe())
    assert cfg.describe()["admin_api_key"] == "set"


def test_describe_shows_not_set(tmp_path: Path) -> None:
    d = load_config({}, {}, tmp_path).describe()
    for name in ("admin_api_key", "auth_cookie_secret", "internal_service_token",
                 "openai_api_key", "anthropic_api_key"):
        assert d[name] == "not set"


def test_describe_hides_password_in_redis_url(tmp_path: Path) -> None:
    cfg = load_config({}, {"REDIS_URL": "redis://:redis-SECRET-pw@cache.internal:6379/0"},
                      tmp_path)
    assert "redis-SECRET-pw" not in repr(cfg.describe())


@pytest.mark.parametrize("env, says", [
    ({"BILLING_BACKEND": "http"}, "needs Z_BILLING_URL"),
    ({"BILLING_BACKEND": "http", "Z_BILLING_URL": "https://zb", "Z_BILLING_MODE": "later"},
     "Z_BILLING_MODE"),
    ({"STORE_MESSAGES": "true"}, "needs AURA_STORAGE_URL"),
    ({"OUTBOX_RETRY_MAX_S": "0"}, "OUTBOX_RETRY_MAX_S must be positive"),
    ({"Z_BILLING_TIMEOUT_S": "-1"}, "Z_BILLING_TIMEOUT_S must be positive"),
])
def test_the_platform_services_settings_are_checked_at_start(
        tmp_path: Path, env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_config({}, env, tmp_path)


def test_a_tier_naming_an_unknown_model_stops_the_start(tmp_path: Path) -> None:
    toml(tmp_path, """
        [tiers]
        eco = "no-such-model"
    """)
    with pytest.raises(ConfigError, match="tiers.eco: unknown model 'no-such-model'"):
        load_config({}, {}, tmp_path)
    assert load_config({}, {}, tmp_path / "..").tiers.models["eco"] is not None


def test_messages_are_stored_by_default_only_with_a_storage_sink(tmp_path: Path) -> None:
    assert not load_config({}, {}, tmp_path).sends_messages
    assert load_config({}, {"AURA_STORAGE_URL": "https://sto"}, tmp_path).sends_messages
    assert not load_config({}, {"AURA_STORAGE_URL": "https://sto", "STORE_MESSAGES": "false"},
                           tmp_path).sends_messages
    described = load_config({}, {"AURA_NETWORK_URL": "https://u:pw@net/x?k=v"},
                            tmp_path).describe()
    assert described["aura_network_url"] == "https://net/x", "no userinfo, no query"


# --- Catalog.resolve ---------------------------------------------------------------------------

def test_resolve_alias_bare_id_provider_slash_model_and_unknown(tmp_path: Path) -> None:
    toml(tmp_path, """
        [aliases]
        cheap = "gpt-4o-mini"
    """)
    cat = load_config({}, {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "sk-ant-x"},
                      tmp_path).catalog
    bare = cat.resolve("gpt-4o-mini")
    assert bare is not None and bare.id == "gpt-4o-mini"
    assert cat.resolve("cheap") == bare

    slashed = cat.resolve("openai/gpt-4o-mini")
    assert slashed is not None
    assert slashed.route == (Target("openai", "gpt-4o-mini"),)
    assert slashed.prices == bare.prices
    assert slashed.kind == "openai"

    claude = cat.resolve("anthropic/claude-sonnet-4-5")
    assert claude is not None
    assert claude.route == (Target("anthropic", "claude-sonnet-4-5"),)
    assert claude.prices.input == Decimal("3.00")
    assert claude.prices.output == Decimal("15.00")

    for unknown in ("gpt-99-ultra", "openai/gpt-99-ultra", "nosuch/gpt-4o-mini", "openai/",
                    "/gpt-4o-mini", "", "cheapest"):
        assert cat.resolve(unknown) is None, unknown


# --- strict configuration: unknown keys, types, credentials, admin key length ----------------

def _error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """The config error `text` as aura-router.toml causes, and the file's text."""
    written = toml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config({}, {"OPENAI_API_KEY": "sk-x", **(env or {})}, tmp_path)
    return str(info.value), written


def test_a_misspelt_provider_key_names_file_line_provider_and_the_right_key(
        tmp_path: Path) -> None:
    msg, text = _error(tmp_path, """
        [[providers]]
        name = "primary"
        kind = "openai"
        api_keys = ["sk-one"]
        strategy = "priority"

        [[providers]]
        name = "backup"
        kind = "openai"
        api_keys = ["sk-two"]
        strategey = "priority"
    """)
    path = tmp_path / "aura-router.toml"
    assert msg == (f"{path}:{line_of(text, 'strategey')}: unknown key 'strategey' in "
                   "[[providers]] 'backup'; did you mean 'strategy'?")


def test_a_misspelt_setting_names_the_setting_it_meant(tmp_path: Path) -> None:
    msg, text = _error(tmp_path, """
        [settings]
        host = "127.0.0.1"
        prot = 8080
    """)
    assert msg == (f"{tmp_path / 'aura-router.toml'}:{line_of(text, 'prot')}: unknown key "
                   "'prot' in [settings]; did you mean 'port'?")
    msg, _ = _error(tmp_path, "[settings]\nPORT = 8080\n")
    assert "unknown key 'PORT' in [settings]; did you mean 'port'?" in msg


def test_an_unknown_section_names_its_header_line_and_the_section_meant(
        tmp_path: Path) -> None:
    msg, text = _error(tmp_path, """
        [settings]
        port = 8080

        [[model]]
        id = "house"
    """)
    assert msg == (f"{tmp_path / 'aura-router.toml'}:{line_of(text, '[[model]]')}: unknown "
                   "section 'model'; did you mean 'models'?")
    msg, _ = _error(tmp_path, "[provider.x]\nkind = 'openai'\n")
    assert ":1: unknown section 'provider'; did you mean 'providers'?" in msg


def test_a_setting_outside_settings_is_refused_with_where_it_belongs(tmp_path: Path) -> None:
    msg, _ = _error(tmp_path, """
        # a comment
        prot = 8080
    """)
    assert msg.endswith(":2: unknown key 'prot' at the top level: settings go under "
                        "[settings] (did you mean 'port'?)")


def test_a_misspelt_price_is_named_as_unknown_not_as_a_missing_one(tmp_path: Path) -> None:
    msg, text = _error(tmp_path, """
        [[models]]
        id = "house"
        route = ["openai:gpt-4o-mini"]
        input_per_mtok = "0.15"
        output_per_mtoken = "0.60"
    """)
    assert msg == (f"{tmp_path / 'aura-router.toml'}:{line_of(text, 'output_per_mtoken')}: "
                   "unknown key 'output_per_mtoken' in [[models]] 'house'; did you mean "
                   "'output_per_mtok'?")


def test_a_model_missing_its_output_price_is_blamed_on_that_price(tmp_path: Path) -> None:
    msg, _ = _error(tmp_path, """
        [[models]]
        id = "house"
        route = ["openai:gpt-4o-mini"]
        input_per_mtok = "0.15"
    """)
    assert "models[0].output_per_mtok: a model needs input_per_mtok and output_per_mtok" in msg


@pytest.mark.parametrize("line, says", [
    ('port = "abc"', "settings.port must be an integer, got 'abc'"),
    ("port = true", "settings.port must be an integer, got True"),
    ("port = 70000", "settings.port must be a port number (0 to 65535), got 70000"),
    ("max_body_bytes = 1.5", "settings.max_body_bytes must be an integer, got 1.5"),
    ('body_timeout_s = "x"', "settings.body_timeout_s must be a number of seconds, got 'x'"),
    ("body_timeout_s = -1", "settings.body_timeout_s must be positive, got -1.0"),
    ("workers = 0", "settings.workers must be 1 or more"),
    ('log_requests = "maybe"', "settings.log_requests must be true or false, got 'maybe'"),
    ("log_requests = 1", "settings.log_requests must be true or false, got 1"),
    ("cache_hit_price = 0.5", "settings.cache_hit_price must be a decimal string"),
    ('cache_hit_price = "half"', "settings.cache_hit_price must be a decimal number"),
    ("data_dir = 5", "settings.data_dir must be a string, got 5"),
    ('hold_policy = "lenient"', "settings.hold_policy must be 'affordable' or 'strict'"),
])
def test_a_wrong_setting_in_the_file_names_its_key_and_line(tmp_path: Path, line: str,
                                                            says: str) -> None:
    msg, text = _error(tmp_path, f"# settings\n[settings]\n{line}\n")
    assert msg.startswith(f"{tmp_path / 'aura-router.toml'}:3: "), msg
    assert says in msg


@pytest.mark.parametrize("line, field, says", [
    ("max_concurrent = -1", "max_concurrent", "must be a positive integer, got -1"),
    ("max_concurrent = 2.5", "max_concurrent", "must be a positive integer, got 2.5"),
    ('timeout_connect_s = "x"', "timeout_connect_s", "positive number of seconds, got 'x'"),
    ("breaker_failures = true", "breaker_failures", "must be a positive integer, got True"),
    ('api_keys = "sk-single"', "api_keys", "must be a list of non-empty strings"),
    ("api_key_env = 3", "api_key_env", "must name an environment variable"),
    ("base_url = 5", "base_url", "must be an http(s) URL"),
    ('strategy = "random"', "strategy", "round_robin, priority, least_used; got 'random'"),
])
def test_a_wrong_provider_field_names_its_key_and_line(tmp_path: Path, line: str, field: str,
                                                       says: str) -> None:
    msg, text = _error(tmp_path, f"""
        [[providers]]
        name = "primary"
        kind = "openai"
        {line if field == "api_keys" else 'api_keys = ["sk-one"]'}
        {line if field != "api_keys" else ""}
    """)
    assert msg.startswith(f"{tmp_path / 'aura-router.toml'}:{line_of(text, line)}: "
                          f"providers[0].{field}: "), msg
    assert says in msg


@pytest.mark.parametrize("line, field, says", [
    ('input_per_mtok = "cheap"', "input_per_mtok", "is not a decimal number: 'cheap'"),
    ("input_per_mtok = 0.15", "input_per_mtok", "not a float"),
    ('route = "openai:gpt-4o-mini"', "route", "must be a list"),
    ('reasoning = "yes"', "reasoning", "must be true or false"),
    ("per_image_tokens = 0", "per_image_tokens", "must be a positive integer"),
    ("max_output_tokens = 1.5", "max_output_tokens", "must be a positive integer"),
    ("display_name = 3", "display_name", "must be a string"),
])
def test_a_wrong_model_field_names_its_key_and_line(tmp_path: Path, line: str, field: str,
                                                    says: str) -> None:
    msg, text = _error(tmp_path, f"""
        [[models]]
        id = "house"
        output_per_mtok = "0.60"
        {line}
    """.replace('output_per_mtok = "0.60"\n',
                'output_per_mtok = "0.60"\n        input_per_mtok = "0.15"\n'
                if not line.startswith("input") else 'output_per_mtok = "0.60"\n'))
    assert msg.startswith(f"{tmp_path / 'aura-router.toml'}:{line_of(text, line)}: "
                          f"models[0].{field}: "), msg
    assert says in msg


def test_the_line_is_found_past_comments_strings_inline_tables_and_sub_tables(
        tmp_path: Path) -> None:
    msg, text = _error(tmp_path, '''
        # strategey = "priority"   <- a comment, not a key
        [[providers]]
        name = "primary"   # [[providers]] in a comment
        kind = "openai_compatible"
        base_url = "http://127.0.0.1:1/v1"
        api_keys = [
          "sk-one",  # strategey = 2
          "sk-two",
        ]

        [providers.headers]
        "strategey" = "not a provider key line"

        [[providers]]
        name = "backup"
        kind = "openrouter"
        api_keys = ["""strategey = 3"""]
        headers = { "X-Title" = "strategey = 4", X-Other = 'b' }
        strategy = "priority"

        [[providers]]
        name = "third"
        kind = "openai"
        api_keys = ['sk-3']
        strategy = "priority"
        strategey = "least_used"
    ''')
    assert msg.startswith(f"{tmp_path / 'aura-router.toml'}:"
                          f"{line_of(text, 'strategey = ' + chr(34) + 'least_used')}: "
                          "unknown key 'strategey' in [[providers]] 'third'"), msg


def test_a_quoted_misspelt_key_is_found_too(tmp_path: Path) -> None:
    msg, text = _error(tmp_path, """
        [[providers]]
        name = "primary"
        kind = "openai"
        api_keys = ["sk-one"]
        "timeout_idle" = 30
    """)
    assert f":{line_of(text, 'timeout_idle')}: unknown key 'timeout_idle' in [[providers]] " \
           "'primary'; did you mean 'timeout_idle_s'?" in msg


def test_a_misspelt_tier_setting_names_its_line(tmp_path: Path) -> None:
    msg, text = _error(tmp_path, """
        [tiers]
        eco = "gpt-4o-mini"
        short_prompt_char = 100
    """)
    assert msg.endswith(f":{line_of(text, 'short_prompt_char')}: unknown key "
                        "'short_prompt_char' in [tiers]; did you mean 'short_prompt_chars'?")


# --- a provider with no credential -------------------------------------------------------------

KEYLESS = """
    [[providers]]
    name = "primary"
    kind = "openai"
    api_key_env = "PRIMARY_KEYS"
"""


def test_a_provider_whose_key_variable_is_unset_stops_the_start(tmp_path: Path) -> None:
    text = toml(tmp_path, KEYLESS)
    for env in ({}, {"PRIMARY_KEYS": ""}, {"PRIMARY_KEYS": " , "}):
        with pytest.raises(ConfigError) as info:
            load_config({}, env, tmp_path)
        msg = str(info.value)
        assert msg.startswith(f"{tmp_path / 'aura-router.toml'}:"
                              f"{line_of(text, 'api_key_env')}: provider 'primary' (kind "
                              "openai) has no credential: PRIMARY_KEYS (its api_key_env) is "
                              "unset or empty"), msg
        assert "ALLOW_PROVIDERS_WITHOUT_KEYS=true" in msg
    spec = load_config({}, {"PRIMARY_KEYS": "sk-a"}, tmp_path).catalog.providers["primary"]
    assert spec.has_credential and spec.api_keys == ("sk-a",)


def test_a_provider_with_no_key_at_all_says_what_to_set(tmp_path: Path) -> None:
    toml(tmp_path, """
        [[providers]]
        name = "claude"
        kind = "anthropic"
    """)
    with pytest.raises(ConfigError, match="provider 'claude' \\(kind anthropic\\) has no "
                                          "credential: it has neither api_keys nor "
                                          "api_key_env; give api_keys"):
        load_config({}, {}, tmp_path)


def test_allow_providers_without_keys_keeps_it_marked_and_warns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    toml(tmp_path, KEYLESS)
    with caplog.at_level("WARNING", logger="aura.config"):
        cfg = load_config({}, {"ALLOW_PROVIDERS_WITHOUT_KEYS": "true"}, tmp_path)
    spec = cfg.catalog.providers["primary"]
    assert not spec.has_credential and spec.api_keys == ()
    assert any("'primary'" in r.getMessage() and "no credential" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")


def test_keyless_kinds_need_no_key_and_env_providers_always_have_one(tmp_path: Path) -> None:
    toml(tmp_path, """
        [[providers]]
        name = "local"
        kind = "openai_compatible"
        base_url = "http://127.0.0.1:8081/v1"

        [[providers]]
        name = "llama"
        kind = "ollama"
    """)
    cat = load_config({}, {"ANTHROPIC_API_KEY": "sk-ant-x"}, tmp_path).catalog
    assert all(p.has_credential for p in cat.providers.values())
    assert set(cat.providers) == {"local", "llama", "anthropic"}
    assert load_config({}, {}, tmp_path / "..").catalog.providers["demo"].has_credential


def test_parse_provider_checks_a_table_as_the_config_file_does() -> None:
    from router.catalog import parse_provider

    spec = parse_provider({"name": "p", "kind": "openai", "api_key_env": "P_KEYS"},
                          "provider 'p'", {"P_KEYS": "sk-1,sk-2"})
    assert spec.api_keys == ("sk-1", "sk-2") and spec.has_credential
    with pytest.raises(ConfigError, match="^provider 'p': unknown key 'strategey' in a "
                                          "provider; did you mean 'strategy'\\?$"):
        parse_provider({"name": "p", "kind": "openai", "strategey": "priority"},
                       "provider 'p'")
    with pytest.raises(ConfigError, match="^provider 'p': max_concurrent: must be a "
                                          "positive integer, got 0$"):
        parse_provider({"name": "p", "kind": "openai", "api_keys": ["k"],
                        "max_concurrent": 0}, "provider 'p'")
    with pytest.raises(ConfigError, match="has no credential"):
        parse_provider({"name": "p", "kind": "openai"}, "provider 'p'")
    kept = parse_provider({"name": "p", "kind": "openai"}, "provider 'p'",
                          allow_without_key=True)
    assert not kept.has_credential


# --- admin and service keys ---------------------------------------------------------------------

@pytest.mark.parametrize("env, name", [
    ({"ADMIN_API_KEY": "x"}, "ADMIN_API_KEY"),
    ({"TOKEN_ADMIN_KEY": "short-admin-key"}, "TOKEN_ADMIN_KEY"),
    ({"INTERNAL_SERVICE_TOKEN": "svc-" + "t" * 19}, "INTERNAL_SERVICE_TOKEN"),
])
def test_a_short_admin_or_service_key_is_refused_without_showing_it(
        tmp_path: Path, env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({}, env, tmp_path)
    msg = str(info.value)
    value = next(iter(env.values()))
    assert msg.startswith(f"{name} is {len(value)} characters long; it must be at least 24")
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in msg
    assert value not in msg.replace(name, "")


def test_a_24_character_admin_key_is_accepted_and_a_short_one_in_the_file_named(
        tmp_path: Path) -> None:
    assert load_config({}, {"ADMIN_API_KEY": "k" * 24}, tmp_path).admin_api_key == "k" * 24
    msg, text = _error(tmp_path, '[settings]\nadmin_api_key = "hunter2"\n')
    assert msg.startswith(f"{tmp_path / 'aura-router.toml'}:2: settings.admin_api_key is 7 "
                          "characters long")
    assert "hunter2" not in msg


def test_unknown_environment_variables_are_not_errors(tmp_path: Path) -> None:
    cfg = load_config({}, {"PROT": "8080", "AURA_SOMETHING": "x", "PATH": "/bin"}, tmp_path)
    assert cfg.port == 3000


def test_the_complete_example_of_the_configuration_docs_is_valid(tmp_path: Path) -> None:
    docs = Path(__file__).parents[2] / "docs" / "configuration.md"
    section = docs.read_text(encoding="utf-8").split("## A complete `aura-router.toml`")[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "aura-router.toml").write_text(example, encoding="utf-8")
    cfg = load_config({}, {"OPENAI_KEYS": "sk-one,sk-two"}, tmp_path)
    assert set(cfg.catalog.providers) >= {"oai", "claude", "local"}
    assert cfg.catalog.resolve("fast") is not None


@pytest.mark.parametrize("given", ["inf", "nan", "0.4", "59", "604801"])
def test_a_console_session_lasts_from_a_minute_to_a_week(given: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CONSOLE_SESSION_S must be from 60 to 604800"):
        load_config(env={"CONSOLE_SESSION_S": given}, cwd=tmp_path)
    assert load_config(env={"CONSOLE_SESSION_S": "604800"}, cwd=tmp_path
                       ).console_session_s == 604800
