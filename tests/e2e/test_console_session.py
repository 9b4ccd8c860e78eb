"""The console's sign-in over real HTTP: the admin key becomes an http-only, same-site,
short-lived cookie; the cookie alone opens nothing (each admin call needs the session's
CSRF token, from a page of the router's own origin); a forged, foreign or expired session
is refused; the key never comes back. And `GET /admin/activity`, the overview's figures:
calls, errors and spend per bucket, as the calls made."""

from __future__ import annotations

import re
import time
from pathlib import Path
import httpx
import openai
import pytest

from router.console import session as console_session
from tests.fakes import FakeProviderServer
from tests.harness import ADMIN_KEY, RouterProcess, oai, router_config

MESSAGES = [{"role": "user", "content": "hi"}]


def test_the_page_and_its_files_come_from_the_router_under_a_strict_policy(
        router: RouterProcess) -> None:
    for path in ("/console", "/console/"):
        page = httpx.get(router.base_url + path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert assets and all(a.startswith("/console/static/") for a in assets), assets
    for asset in assets:
        assert httpx.get(router.base_url + asset).status_code == 200, asset
    for other in ("index.html", "..%2fsession.py", "session.py"):
        assert httpx.get(f"{router.base_url}/console/static/{other}").status_code == 404


def test_signing_in_gives_an_http_only_same_site_cookie_that_alone_opens_nothing(
        router: RouterProcess) -> None:
    wrong = httpx.post(router.base_url + "/console/session",
                       json={"admin_key": "adm_wrong_" + "x" * 24})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert "not the admin key" in wrong.json()["error"]["message"]
    empty = httpx.post(router.base_url + "/console/session", json={})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "admin_key"

    client = httpx.Client(base_url=router.base_url, timeout=10)
    signed = client.post("/console/session", json={"admin_key": ADMIN_KEY})
    assert signed.status_code == 200 and ADMIN_KEY not in signed.text
    cookie, csrf = signed.headers["set-cookie"], signed.json()["csrf"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "max-age", "path"} <= attributes
    assert "SameSite=Strict" in cookie and "Max-Age=1800" in cookie
    assert ADMIN_KEY not in cookie, "the cookie stands for the key; it does not carry it"

    assert client.get("/admin/providers").status_code == 403, "the cookie alone: refused"
    refused = client.get("/admin/providers", headers={"x-aura-csrf": "0" * 64})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]
    ok = client.get("/admin/providers", headers={"x-aura-csrf": csrf})
    assert ok.status_code == 200 and ADMIN_KEY not in ok.text

    account = f"console-{time.time_ns()}"
    granted = client.post(f"/admin/accounts/{account}/credits", headers={"x-aura-csrf": csrf},
                          json={"amount_micros": 2_000_000, "reason": "from the console"})
    assert granted.status_code == 200 and router.account(account)["balance_micros"] == 2_000_000

    for foreign in ({"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"},
                    {"sec-fetch-site": "same-site"}):
        refused = client.post(f"/admin/accounts/{account}/credits",
                              headers={"x-aura-csrf": csrf, **foreign},
                              json={"amount_micros": 1, "reason": "forged"})
        assert refused.status_code == 403, foreign
        answer = client.get("/console/session", headers=foreign)
        assert answer.status_code == 403 and csrf not in answer.text
    same_origin = client.get("/admin/providers", headers={
        "x-aura-csrf": csrf, "origin": router.base_url, "sec-fetch-site": "same-origin"})
    assert same_origin.status_code == 200
    assert router.account(account)["balance_micros"] == 2_000_000, "nothing forged landed"

    assert client.get("/console/session").json()["csrf"] == csrf
    out = client.delete("/console/session")
    assert out.status_code == 200 and "Max-Age=0" in out.headers["set-cookie"]
    assert client.get("/console/session").status_code == 401
    assert client.get("/admin/providers", headers={"x-aura-csrf": csrf}).status_code == 401


def test_behind_a_proxy_that_ends_tls_the_console_signs_in_with_a_secure_host_cookie(
        router: RouterProcess) -> None:
    """The router sees http; the browser says https (its Origin, the proxy's
    X-Forwarded-Proto). The cookie is then Secure and `__Host-` prefixed, and the
    browser's own word on where a call comes from (Sec-Fetch-Site) is what counts."""
    host = router.base_url.removeprefix("http://")
    browser = {"origin": f"https://{host}", "sec-fetch-site": "same-origin",
               "x-forwarded-proto": "https"}
    signed = httpx.post(router.base_url + "/console/session", headers=browser,
                        json={"admin_key": ADMIN_KEY})
    assert signed.status_code == 200, signed.text
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("__Host-aura_console=") and "Secure" in cookie
    assert "Path=/" in cookie and "Domain" not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    headers = {**browser, "cookie": f"__Host-aura_console={value}",
               "x-aura-csrf": signed.json()["csrf"]}
    assert httpx.get(router.base_url + "/admin/providers", headers=headers).status_code == 200
    # A junk cookie of the same name first (planted by a sibling site) does not lock out.
    planted = {**headers, "cookie": f"aura_console=junk; __Host-aura_console={value}"}
    assert httpx.get(router.base_url + "/admin/providers", headers=planted).status_code == 200
    cross = {**headers, "sec-fetch-site": "same-site"}
    assert httpx.get(router.base_url + "/admin/providers", headers=cross).status_code == 403


@pytest.mark.parametrize("forged", ["another admin key", "expired", "tampered"])
def test_a_forged_or_expired_session_is_refused(router: RouterProcess, forged: str) -> None:
    if forged == "another admin key":
        cookie, session = console_session.issue("adm_other_" + "o" * 24, time.time(), 600)
    elif forged == "expired":
        cookie, session = console_session.issue(ADMIN_KEY, time.time() - 700, 600)
    else:
        cookie, session = console_session.issue(ADMIN_KEY, time.time(), 600)
        cookie = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    headers = {"cookie": f"{console_session.COOKIE}={cookie}",
               "x-aura-csrf": session.csrf(ADMIN_KEY)}
    answer = httpx.get(router.base_url + "/admin/providers", headers=headers)
    assert answer.status_code == 401
    assert "sign in again" in answer.json()["error"]["message"]
    assert httpx.get(router.base_url + "/console/session", headers=headers).status_code == 401


def test_activity_counts_calls_errors_and_spend_as_they_happened(
        fake: FakeProviderServer, clean_fake: FakeProviderServer, tmp_path: Path) -> None:
    # A router of its own: the counts are the process's, and no other test's call may
    # end between the two readings.
    with RouterProcess(tmp_path, router_config(fake.openai_base_url,
                                               fake.anthropic_base_url)) as router:
        counts_each_call(router, clean_fake)


def counts_each_call(router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    def totals() -> dict[str, int]:
        answer = router.admin("GET", "/admin/activity?window=day")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["buckets"]) == 24 and body["bucket_s"] == 3600
        assert body["calls_scope"] == "all"
        summed = {name: sum(b[name] for b in body["buckets"]) for name in body["totals"]}
        assert summed == body["totals"], "the buckets add up to the totals"
        return body["totals"]

    before = totals()
    _, key = router.new_account(1_000_000)
    oai(router, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    cost = router.last_usage(key)["cost_micros"]
    with pytest.raises(openai.AuthenticationError):
        oai(router, "ar_sk_" + "z" * 43).chat.completions.create(model="gpt-4o-mini",
                                                                  messages=MESSAGES)
    clean_fake.state.fail_status = 500
    with pytest.raises(openai.APIStatusError) as failed:
        oai(router, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert failed.value.status_code >= 500
    after = totals()
    delta = {name: after[name] - before[name] for name in after}
    assert delta["calls"] == 3 and delta["client_errors"] == 1 and delta["server_errors"] == 1
    assert delta["billed"] == 1 and delta["cost_micros"] == cost > 0
    assert router.admin("GET", "/admin/activity?window=week").status_code == 400
    assert router.admin("GET", "/admin/activity").json()["window"] == "hour"
