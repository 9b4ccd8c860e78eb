"""LLM_PROVIDER_MODE route building, the kind-specific provider fields (Azure's
`api_version` and `deployments`, `headers`), the env-implied Azure / OpenRouter / Ollama
providers, the Azure and OpenRouter adapters, and the Azure fake's own checks."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

import httpx
import orjson
import pytest

from router.catalog import Catalog, Target, build_catalog
from router.errors import ConfigError
from router.protocols.sse import SseEvent
from router.providers import azure, openai_compatible
from router.providers.base import UpstreamRequest
from router.providers.bedrock import bedrock_model_id
from router.providers.spec import ProviderSpec
from tests.fakes import FakeProviderServer


def catalog(config: str = "", **settings: Any) -> Catalog:
    return build_catalog(toml=tomllib.loads(config), toml_text=config, path="aura-router.toml",
                         settings=settings, env={})


AZURE = """
[[providers]]
name = "az"
kind = "azure"
base_url = "https://res.openai.azure.com"
api_keys = ["k"]
deployments = { "gpt-4o-mini" = "my-4o-mini" }
"""
OPENAI = """
[[providers]]
name = "openai"
kind = "openai"
api_keys = ["sk"]
"""


# --- modes ---------------------------------------------------------------------------------

def test_direct_is_the_default_and_ignores_case() -> None:
    for mode in ({}, {"llm_provider_mode": "direct"}, {"llm_provider_mode": "DIRECT"}):
        cat = catalog(OPENAI + AZURE, **mode)
        assert cat.models["gpt-4o-mini"].route == (Target("openai", "gpt-4o-mini"),)


def test_openrouter_mode_translates_catalog_ids_and_keeps_catalog_prices() -> None:
    direct = catalog()
    cat = catalog(OPENAI, llm_provider_mode="openrouter", openrouter_api_key="sk-or")
    sonnet = cat.models["claude-sonnet-4-5"]
    assert sonnet.route == (Target("openrouter", "anthropic/claude-sonnet-4.5"),)
    assert sonnet.prices == direct.models["claude-sonnet-4-5"].prices
    # the model's own provider stays behind, for failover and what OpenRouter cannot take
    assert cat.models["gpt-4o-mini"].route == (Target("openrouter", "openai/gpt-4o-mini"),
                                               Target("openai", "gpt-4o-mini"))
    # not in the table: its own provider if there is one, else not routable
    assert cat.models["gpt-6.2-astra"].route == (Target("openai", "gpt-6.2-astra"),)
    assert cat.models["claude-fable-5"].route == ()


def test_a_provider_name_mode_sends_what_it_serves_and_leaves_the_rest() -> None:
    cat = catalog(OPENAI + AZURE, llm_provider_mode="az")
    assert cat.models["gpt-4o-mini"].route == (Target("az", "gpt-4o-mini"),
                                               Target("openai", "gpt-4o-mini"))
    assert cat.models["gpt-4o"].route == (Target("openai", "gpt-4o"),)


def test_an_azure_mode_without_deployments_serves_every_openai_model_by_its_name() -> None:
    cat = catalog(llm_provider_mode="azure", azure_openai_endpoint="https://r.example",
                  azure_openai_api_key="k", azure_openai_api_version="2024-10-21")
    assert cat.models["gpt-4o"].route == (Target("azure", "gpt-4o"),)
    assert cat.models["claude-sonnet-4-5"].route == ()


def test_a_mode_by_kind_finds_the_provider_of_that_kind() -> None:
    cat = catalog(AZURE, llm_provider_mode="azure")
    assert cat.models["gpt-4o-mini"].route == (Target("az", "gpt-4o-mini"),)


def test_a_provider_of_the_models_own_kind_serves_it_under_its_id() -> None:
    config = OPENAI + '\n[[providers]]\nname = "oai-eu"\nkind = "openai"\napi_keys = ["x"]\n'
    cat = catalog(config, llm_provider_mode="oai-eu")
    assert cat.models["gpt-6.2-astra"].route == (Target("oai-eu", "gpt-6.2-astra"),
                                                 Target("openai", "gpt-6.2-astra"))


def test_an_explicit_config_route_wins_over_the_mode() -> None:
    config = OPENAI + AZURE + '[[models]]\nid = "gpt-4o-mini"\nroute = ["openai:gpt-4o-mini"]\n'
    cat = catalog(config, llm_provider_mode="az")
    assert cat.models["gpt-4o-mini"].route == (Target("openai", "gpt-4o-mini"),)


@pytest.mark.parametrize("mode", ["openrouter", "bedrock", "az "])
def test_a_mode_naming_no_configured_provider_is_a_config_error(mode: str) -> None:
    with pytest.raises(ConfigError, match="LLM_PROVIDER_MODE") as raised:
        catalog(OPENAI, llm_provider_mode=mode + "x")
    assert "openai" in str(raised.value)


def test_the_shipped_mode_tables_name_catalog_models_and_vendor_ids() -> None:
    text = resources.files("router").joinpath("catalog.toml").read_text(encoding="utf-8")
    shipped = tomllib.loads(text)
    ids = {m["id"] for m in shipped["models"]}
    kinds = {m["id"]: m["kind"] for m in shipped["models"]}
    vendor = {"openai": "openai/", "anthropic": "anthropic/", "gemini": "google/"}
    for mid, native in shipped["modes"]["openrouter"].items():
        assert mid in ids, mid
        assert native.startswith(vendor[kinds[mid]]), (mid, native)


# --- the kind-specific fields ------------------------------------------------------------------

def _provider(extra: str, kind: str = "azure") -> str:
    return f"""
[[providers]]
name = "p"
kind = "{kind}"
base_url = "https://res.openai.azure.com"
api_keys = ["k"]
{extra}
"""


def test_azure_fields_are_parsed() -> None:
    spec = catalog(_provider('api_version = "2025-04-01-preview"\n'
                             'deployments = { "gpt-4o" = "prod-4o", "o3" = "o3" }\n'
                             'headers = { "x-ms-client-request-id" = "aura" }')).providers["p"]
    assert spec.api_version == "2025-04-01-preview"
    assert dict(spec.deployments) == {"gpt-4o": "prod-4o", "o3": "o3"}
    assert spec.headers == (("x-ms-client-request-id", "aura"),)


@pytest.mark.parametrize("extra, field, words", [
    ('api_version = "latest"', "api_version", "dated Azure API version"),
    ("api_version = 20241021", "api_version", "dated Azure API version"),
    ('deployments = ["gpt-4o"]', "deployments", "table of model id"),
    ('deployments = { "gpt-4o" = "" }', "deployments", "non-empty"),
    ('deployments = { "gpt-4o" = "a/b" }', "deployments", "without '/'"),
    ('deployments = { "gpt-4o" = 4 }', "deployments", "table of model id"),
    ('headers = { "api-key" = "x" }', "headers", "credentials and framing"),
    ('headers = { "Authorization" = "Bearer x" }', "headers", "credentials and framing"),
    ('headers = { "bad name" = "x" }', "headers", "not a header name"),
    ('headers = { "X-Title" = "a\\nb" }', "headers", "one-line"),
    ('headers = "X-Title: a"', "headers", "table of header name"),
])
def test_bad_kind_fields_are_config_errors_naming_the_field(extra: str, field: str,
                                                             words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        catalog(_provider(extra))
    message = str(raised.value)
    assert f"providers[0].{field}:" in message and words in message
    assert message.startswith("aura-router.toml:")


@pytest.mark.parametrize("kind, extra", [("openai", 'api_version = "2024-10-21"'),
                                         ("openai", 'headers = { "X-Title" = "a" }'),
                                         ("openrouter", 'deployments = { "a" = "b" }')])
def test_a_field_the_kind_does_not_read_is_refused(kind: str, extra: str) -> None:
    with pytest.raises(ConfigError, match=f"kind {kind!r} does not read"):
        catalog(_provider(extra, kind))


def test_azure_needs_its_endpoint() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        catalog('[[providers]]\nname = "az"\nkind = "azure"\napi_keys = ["k"]\n')


# --- env-implied providers ---------------------------------------------------------------------

def test_env_implies_azure_openrouter_and_ollama() -> None:
    cat = catalog(azure_openai_endpoint="https://res.openai.azure.com/",
                  azure_openai_api_key="az-key", azure_openai_api_version="2025-01-01-preview",
                  openrouter_api_key="sk-or", openrouter_base_url="https://openrouter.ai/api/v1",
                  ollama_base_url="http://127.0.0.1:11434")
    az, router_, ollama = (cat.providers[n] for n in ("azure", "openrouter", "ollama"))
    assert (az.kind, az.base_url, az.api_keys, az.api_version) == (
        "azure", "https://res.openai.azure.com", ("az-key",), "2025-01-01-preview")
    assert (router_.kind, router_.api_keys) == ("openrouter", ("sk-or",))
    assert (ollama.kind, ollama.base_url, ollama.api_keys) == (
        "ollama", "http://127.0.0.1:11434/v1", ())
    assert catalog(ollama_base_url="http://h:11434/v1/").providers["ollama"].base_url == \
        "http://h:11434/v1"


def test_azure_needs_both_endpoint_and_key_in_the_env() -> None:
    assert "azure" not in catalog(azure_openai_endpoint="https://r.example").providers
    assert "azure" not in catalog(azure_openai_api_key="k").providers


# --- the adapters ------------------------------------------------------------------------------

def _request(model: str = "gpt-4o-mini", api: str = "openai.chat",
             stream: bool = False) -> UpstreamRequest:
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    return UpstreamRequest(api, model, body, stream)


def _azure(base_url: str = "https://res.openai.azure.com", **fields: Any) -> azure.AzureAdapter:
    return azure.ADAPTER.bound(ProviderSpec("az", "azure", base_url, ("k",), **fields))


def test_azure_deployments_api_call() -> None:
    adapter = _azure(deployments=(("gpt-4o-mini", "my 4o"),))
    call = adapter.build_request(_request(stream=True), "secret")
    assert call.path == "/openai/deployments/my%204o/chat/completions?api-version=2024-10-21"
    headers = dict(call.headers)
    assert headers[b"api-key"] == b"secret" and b"authorization" not in headers
    assert headers[b"accept"] == b"text/event-stream"
    assert adapter.apis == ("openai.chat",)
    assert adapter.limit_field("openai.chat") == "max_completion_tokens"
    other = _azure(api_version="2025-04-01-preview").build_request(_request("o3"), "k")
    assert other.path == "/openai/deployments/o3/chat/completions?api-version=2025-04-01-preview"


@pytest.mark.parametrize("base_url, fields, prefix", [
    ("https://res.openai.azure.com", {"api_version": "v1"}, "/openai/v1"),
    ("https://res.openai.azure.com/openai/v1", {}, ""),
])
def test_azure_v1_api_call(base_url: str, fields: dict[str, Any], prefix: str) -> None:
    adapter = _azure(base_url, deployments=(("gpt-4o", "prod-4o"),), **fields)
    assert adapter.apis == ("openai.chat", "openai.responses")
    call = adapter.build_request(_request("gpt-4o"), "k")
    assert call.path == prefix + "/chat/completions"
    assert orjson.loads(call.body)["model"] == "prod-4o"
    same = adapter.build_request(_request("gpt-4o-mini", "openai.responses"), "k")
    assert same.path == prefix + "/responses" and same.body == _request("gpt-4o-mini").body


def test_azure_decoder_drops_only_the_annotation_chunk() -> None:
    annotation = (b'data: {"choices":[],"created":0,"id":"","model":"","object":"",'
                  b'"prompt_filter_results":[{"prompt_index":0}]}\n\n')
    content = (b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"hi"},'
               b'"content_filter_results":{}}]}\n\n')
    usage = b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":1}}\n\n'
    decoder = azure.ADAPTER.decoder()
    events: list[SseEvent] = []
    for piece in (annotation[:30], annotation[30:] + content, usage, b"data: [DONE]\n\n"):
        events += decoder.feed(piece)
    assert [e.raw for e in events] == [content, usage, b"data: [DONE]\n\n"]


def test_openrouter_sends_attribution_headers_and_asks_for_usage() -> None:
    spec = ProviderSpec("or", "openrouter", "https://openrouter.ai/api/v1", ("k",),
                        headers=(("HTTP-Referer", "https://app.example"),))
    call = openai_compatible.OPENROUTER.bound(spec).build_request(_request(), "sk-or")
    headers = dict(call.headers)
    assert headers[b"http-referer"] == b"https://app.example"
    assert headers[b"x-title"] == b"Aura Router"
    assert headers[b"authorization"] == b"Bearer sk-or"
    assert orjson.loads(call.body)["usage"] == {"include": True}
    # a configured value replaces a default; "" drops it; the client's own `usage` stays
    spec = ProviderSpec("or", "openrouter", "u", (), headers=(("x-title", ""),))
    request = UpstreamRequest("openai.chat", "m", b'{"model":"m","usage":{"include":false}}',
                              False)
    call = openai_compatible.OPENROUTER.bound(spec).build_request(request, None)
    assert b"x-title" not in dict(call.headers)
    assert orjson.loads(call.body)["usage"] == {"include": False}


def test_ollama_and_compatible_servers_get_the_body_as_built() -> None:
    request = _request()
    call = openai_compatible.OLLAMA.bound(ProviderSpec("o", "ollama", "u")).build_request(
        request, None)
    assert call.body == request.body and call.path == "/chat/completions"
    assert b"authorization" not in dict(call.headers)


# --- the Azure fake checks what real Azure checks -----------------------------------------------

def test_the_azure_fake_refuses_what_azure_refuses(clean_fake: FakeProviderServer) -> None:
    base = clean_fake.base_url
    body = {"messages": [{"role": "user", "content": "hi"}]}
    key = {"api-key": "k"}
    path = "/openai/deployments/my-4o-mini/chat/completions"
    missing = httpx.post(base + path, json=body, headers=key)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "404"
    assert httpx.post(base + path + "?api-version=soon", json=body,
                      headers=key).status_code == 400
    no_key = httpx.post(base + path + "?api-version=2024-10-21", json=body)
    assert no_key.status_code == 401 and "Access denied" in no_key.json()["error"]["message"]
    unknown = httpx.post(base + "/openai/deployments/nope/chat/completions?api-version="
                         "2024-10-21", json=body, headers=key)
    assert unknown.json()["error"]["code"] == "DeploymentNotFound"
    whole = httpx.post(base + path + "?api-version=2024-10-21", json=body, headers=key).json()
    assert whole["model"] == "gpt-4o-mini" and whole["prompt_filter_results"]
    assert whole["choices"][0]["content_filter_results"]["hate"]["filtered"] is False
    stream = httpx.post(base + path + "?api-version=2024-10-21", headers=key,
                        json={**body, "stream": True}).text
    first = orjson.loads(stream.split("\n\n")[0][len("data: "):])
    assert first["choices"] == [] and first["id"] == "" and first["prompt_filter_results"]
    v1 = httpx.post(base + "/openai/v1/chat/completions", json={**body, "model": "my-4o"},
                    headers={"authorization": "Bearer k"})
    assert v1.status_code == 200 and v1.json()["model"] == "gpt-4o"
    assert httpx.post(base + "/openai/v1/chat/completions?api-version=2024-10-21",
                      json={**body, "model": "my-4o"}, headers=key).status_code == 400


def test_a_bedrock_mode_takes_its_ids_from_the_catalog_data_file() -> None:
    """`[modes.bedrock]` in router/catalog.toml: the Claude models go through Bedrock under
    its ids (the region's inference-profile prefix is the provider's, at call time)."""
    bedrock = """
[[providers]]
name = "aws"
kind = "bedrock"
region = "eu-west-1"
base_url = "https://bedrock-runtime.eu-west-1.amazonaws.com"
api_keys = ["AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]
"""
    shipped = tomllib.loads(resources.files("router").joinpath("catalog.toml")
                            .read_text(encoding="utf-8"))["modes"]["bedrock"]
    routed = catalog(bedrock, llm_provider_mode="aws").models["claude-sonnet-4-5"].route
    assert routed[0] == Target("aws", shipped["claude-sonnet-4-5"])
    assert bedrock_model_id(routed[0].upstream_model, "eu-west-1") == \
        "eu." + shipped["claude-sonnet-4-5"]
