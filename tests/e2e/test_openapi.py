"""`/openapi.json` and `/docs` on the real router: the document is OpenAPI 3.1, names every
route the router serves (checked against the routers' own tables, so a new route that is
not documented fails here), and the docs page works offline: it references only
same-origin assets, and the router serves each of them.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
import schemathesis
from werkzeug.routing import Rule

from router.transports.app import build_quart_app
from router.transports.http import ROUTES
from tests.harness import RouterProcess


def _spec(router: RouterProcess) -> dict:  # type: ignore[type-arg]
    r = httpx.get(router.base_url + "/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def test_the_document_is_openapi_3_1_with_every_error_shape_and_security_scheme(
        router: RouterProcess) -> None:
    spec = _spec(router)
    assert spec["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(spec).validate()  # against OpenAPI 3.1's own schema
    schemas = spec["components"]["schemas"]
    assert {"OpenAIError", "AnthropicError"} <= set(schemas)
    assert set(spec["components"]["securitySchemes"]) == {"routerKey", "apiKeyHeader",
                                                          "adminKey"}
    paths = spec["paths"]
    chat_400 = paths["/v1/chat/completions"]["post"]["responses"]["400"]
    assert chat_400["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIError")
    messages_402 = paths["/v1/messages"]["post"]["responses"]["402"]
    assert messages_402["content"]["application/json"]["schema"]["$ref"].endswith(
        "/AnthropicError")
    # What the router really answers matches the shapes the document names.
    r = httpx.post(router.base_url + "/v1/chat/completions", json={},
                   headers={"authorization": "Bearer nope"})
    assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param",
                                                                "code"}
    r = httpx.post(router.base_url + "/v1/messages", json={},
                   headers={"x-api-key": "nope"})
    assert r.status_code == 401 and r.json()["type"] == "error"


class _FakeGateway:
    """Just enough of a Gateway for the Quart app to build its routing table."""

    class config:  # noqa: N801 - stands in for an attribute
        body_timeout_s = 1.0
        max_body_bytes = 1024
        admin_api_key = None


def _quart_routes() -> set[str]:
    app = build_quart_app(_FakeGateway())  # type: ignore[arg-type]
    out = set()
    for rule in app.url_map.iter_rules():
        assert isinstance(rule, Rule)
        if rule.endpoint == "static" or rule.rule.startswith(("/docs/static/",
                                                               "/console/static/")):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                out.add(f"{method} {path}")
    return out


def test_every_route_the_router_serves_is_documented(router: RouterProcess) -> None:
    spec = _spec(router)
    documented = {f"{method.upper()} {path}" for path, item in spec["paths"].items()
                  for method in item}
    served = _quart_routes() | {f"POST {path}" for path in ROUTES} | {
        "GET /v1/streams/{request_id}", "GET /v1/responses/{response_id}",
        "POST /v1/responses/{response_id}/cancel", "POST /model/{model}/invoke",
        "POST /model/{model}/invoke-with-response-stream",
        "POST /v1/projects/{project}/locations/{location}/publishers/anthropic/models/"
        "{model}:rawPredict",
        "POST /v1/projects/{project}/locations/{location}/publishers/anthropic/models/"
        "{model}:streamRawPredict"}
    assert served - documented == set()
    assert documented - served == {"POST /api/latest/anthropic/v1/messages"}  # the prefix


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def test_the_docs_page_uses_only_assets_the_router_serves(router: RouterProcess) -> None:
    r = httpx.get(router.base_url + "/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    parser = _Assets()
    parser.feed(r.text)
    assert parser.urls and "<script>" not in r.text  # no inline script either
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), f"{url} is not same-origin"
        asset = httpx.get(router.base_url + url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0
    script = next(u for u in parser.urls if u.endswith("aura-docs.js"))
    init = httpx.get(router.base_url + script).text
    assert '"/openapi.json"' in init and "validatorUrl: null" in init  # nothing sent away
    bundle = httpx.get(router.base_url + "/docs/static/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle" in bundle.text


@pytest.mark.parametrize("name", ["../../../etc/passwd", "swagger-ui.js.map", "LICENSE",
                                  "..%2f__init__.py"])
def test_only_the_pages_own_assets_are_served(router: RouterProcess, name: str) -> None:
    r = httpx.get(router.base_url + "/docs/static/" + name)
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "invalid_request_error"
