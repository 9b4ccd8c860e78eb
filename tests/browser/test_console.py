"""The operator console in a real browser: Debian's Chromium, driven by Playwright, against
a real router (Redis ledger, behind a proxy the test can cut) and the fake providers.

An operator signs in with the admin key, grants credits and sees the balance change,
issues a key and uses it with the OpenAI SDK, sees the call in the account's usage and
in the overview's chart, revokes the key and sees the next call refused, and opens a
provider's page while its upstream is down. Bad input (a wrong key, an expired session,
a negative or too-precise amount, a key revoked twice, the ledger unreachable) gets a
message on the page and changes nothing. Each page's screenshot is written to a folder
printed at the end of the run (`CONSOLE_SCREENSHOTS` chooses it)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Iterator

import openai
import pytest

from router.console import session as console_session
from tests.backends import backend_env
from tests.fakes import FakeProviderServer
from tests.fakes.sinks import FakeSinks
from tests.harness import ADMIN_KEY, RouterProcess, eventually, oai, router_config
from tests.tcp_proxy import TcpProxy

playwright = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, expect  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless, and nothing that reaches out of this machine.
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-default-apps"]
MESSAGES = [{"role": "user", "content": "hello console"}]
SINK_TOKEN = "net-token-" + "c" * 20
expect.set_options(timeout=15_000)  # a loaded 2-core machine: the page waits, never sleeps


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("NO CHROMIUM HERE: the console's browser tests did not run "
                    "(scripts/test installs Debian's `chromium` where apt-get works)")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("CONSOLE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def ledger_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(6379)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def sinks() -> Iterator[FakeSinks]:
    with FakeSinks(usage_token=SINK_TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def crouter(fake: FakeProviderServer, ledger_proxy: TcpProxy, sinks: FakeSinks,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    data_dir = tmp_path_factory.mktemp("console")
    env = backend_env("redis", data_dir)
    env.update(AURA_NETWORK_URL=sinks.base_url, AURA_NETWORK_TOKEN=SINK_TOKEN,
               OUTBOX_RETRY_MAX_S="1")  # usage events go out through the outbox
    env["REDIS_URL"] = env["REDIS_URL"].replace(":6379/", f":{ledger_proxy.port}/")
    env["ROUTER_SECRET_KEY"] = "console test passphrase, 32 chars or more"  # stored keys
    # A provider whose upstream is down: nothing listens on port 9.
    config = router_config(fake.openai_base_url, fake.anthropic_base_url, extra="""
[[providers]]
name = "downstairs"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_keys = ["sk-downstairs-00000000"]
timeout_connect_s = 1
""")
    with RouterProcess(data_dir, config, env=env) as proc:
        yield proc


def signed_in(browser: Browser, router: RouterProcess) -> Page:
    page = browser.new_page(viewport={"width": 1366, "height": 860})
    page.goto(router.base_url + "/console")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.get_by_label("Admin key").press("Enter")  # the keyboard is enough
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    return page


def nav(page: Page, section: str) -> None:
    page.get_by_role("navigation", name="Console sections").get_by_role(
        "link", name=section, exact=True).click()


def shot(page: Page, shots: Path, name: str) -> None:
    expect(page.locator("main")).to_have_attribute("aria-busy", "false")
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def balance(page: Page, label: str) -> int:
    """The exact micro-USD the page shows for a figure (its `data-micros`)."""
    card = page.locator(".stat", has=page.locator(".stat-label", has_text=label))
    return int(card.locator(".money").get_attribute("data-micros") or "x")


def provider_page_says(page: Page, name: str, figure: tuple[str, str], key: str) -> None:
    """A provider's page: its figure card says what it should; its key shows by prefix,
    never whole."""
    expect(page.get_by_role("heading", name=f"Provider {name}")).to_be_visible()
    expect(page.locator(".stat", has_text=figure[0])).to_contain_text(figure[1])
    expect(page.locator("section", has_text="Credentials")).to_contain_text(key[:6] + "…")
    assert key not in page.content(), "a key is never shown whole"


def test_a_wrong_admin_key_and_an_expired_session_get_the_sign_in_page_with_a_message(
        browser: Browser, crouter: RouterProcess, shots: Path) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(crouter.base_url + "/console")
    page.get_by_label("Admin key").fill("adm_wrong_" + "x" * 24)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not the admin key")
    assert not [c for c in context.cookies() if c["name"] == console_session.COOKIE]
    page.screenshot(path=str(shots / "sign-in-refused.png"))

    # A session that ended an hour ago (signed with the router's own key): the page asks
    # for the key again, and the admin API refuses the cookie.
    cookie, _ = console_session.issue(ADMIN_KEY, time.time() - 3600, 60)
    context.add_cookies([{"name": console_session.COOKIE, "value": cookie,
                          "url": crouter.base_url}])
    page.goto(crouter.base_url + "/console/#/accounts")
    expect(page.get_by_label("Admin key")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    answer = page.request.get(crouter.base_url + "/admin/providers")
    assert answer.status == 401 and "expired" in answer.json()["error"]["message"]
    context.close()


def test_grant_credits_and_see_the_balance_change_and_bad_amounts_change_nothing(
        browser: Browser, crouter: RouterProcess, shots: Path) -> None:
    page = signed_in(browser, crouter)
    nav(page, "Accounts")
    grant = page.locator("#open-account")
    account = f"console-{time.time_ns()}"
    grant.get_by_label("Account id").fill(account)
    grant.get_by_label("Amount (USD)").fill("12.50")
    grant.get_by_label("Reason").fill("welcome credit")
    grant.get_by_role("button", name="Grant credits").click()
    expect(page.get_by_role("heading", name=f"Account {account}")).to_be_visible()
    expect(page.locator(".stat", has_text="Balance").locator(".money")).to_have_text("$12.50")
    assert balance(page, "Balance") == 12_500_000 == crouter.account(account)["balance_micros"]
    expect(page.locator("table").last).to_contain_text("welcome credit")  # the ledger

    form = page.locator("#credits-form")
    form.get_by_label("Remove credits").check()
    form.get_by_label("Amount (USD)").fill("2.000001")
    form.get_by_label("Reason").fill("refund of an order")
    form.get_by_role("button", name="Apply").click()
    expect(page.locator("#flash")).to_contain_text("Removed $2.000001")
    expect(page.locator(".stat", has_text="Balance").locator(".money")).to_have_attribute(
        "data-micros", "10499999")
    assert crouter.account(account)["balance_micros"] == 10_499_999

    form = page.locator("#credits-form")  # drawn anew with the page
    for amount, said in [("-5", "positive amount"), ("0.0000001", "6 digits"),
                         ("five", "not an amount"), ("0", "more than zero")]:
        form.get_by_label("Add credits").check()
        form.get_by_label("Amount (USD)").fill(amount)
        form.get_by_role("button", name="Apply").click()
        expect(form.get_by_role("alert")).to_contain_text(said)
    form.get_by_label("Remove credits").check()  # more than is available: the API's 409
    form.get_by_label("Amount (USD)").fill("500")
    form.get_by_label("Reason").fill("too much")
    form.get_by_role("button", name="Apply").click()
    expect(form.get_by_role("alert")).to_contain_text("available negative")
    assert crouter.account(account)["balance_micros"] == 10_499_999, "nothing changed"
    assert len(crouter.ledger(account)) == 2
    page.get_by_label("Amount (USD)").first.fill("")
    shot(page, shots, "account")
    nav(page, "Accounts")
    expect(page.get_by_label("Search accounts by id prefix")).to_be_visible()
    page.locator("body").press("/")  # the keyboard way to search
    expect(page.get_by_label("Search accounts by id prefix")).to_be_focused()
    page.get_by_label("Search accounts by id prefix").fill(account[:12])
    page.get_by_label("Search accounts by id prefix").press("Enter")
    expect(page.get_by_role("link", name=account)).to_be_visible()
    shot(page, shots, "accounts")
    page.close()


def test_issue_a_key_use_it_see_the_call_then_revoke_it_and_the_next_call_is_refused(
        browser: Browser, crouter: RouterProcess, clean_fake: FakeProviderServer,
        shots: Path) -> None:
    account, _ = crouter.new_account(3_000_000)
    page = signed_in(browser, crouter)
    page.goto(f"{crouter.base_url}/console/#/accounts/{account}")
    issue = page.locator("#issue-key")
    issue.get_by_label("Label").fill("laptop")
    issue.get_by_label("Requests per minute").fill("30")
    issue.get_by_role("button", name="Issue key").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("only time it is shown")
    key = page.get_by_label("The new key").input_value()
    assert key.startswith("ar_sk_")
    page.screenshot(path=str(shots / "key-issued.png"))
    dialog.get_by_role("button", name="I have stored it").click()
    expect(dialog).to_be_hidden()
    assert key not in page.content(), "the key is shown once, then gone from the page"

    oai(crouter, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    cost = crouter.last_usage(key)["cost_micros"]
    assert cost > 0
    page.get_by_role("button", name="Refresh").click()
    usage = page.locator("section", has=page.get_by_role("heading", name="Recent usage"))
    expect(usage).to_contain_text("gpt-4o-mini")
    row = usage.locator("tbody tr").first
    assert int(row.locator(".money").get_attribute("data-micros") or "x") == cost
    assert balance(page, "Balance") == 3_000_000 - cost

    def activity() -> dict:
        return crouter.admin("GET", "/admin/activity?window=hour").json()["totals"]

    # The call's count is taken as its request ends, after the answer went out.
    eventually(lambda: activity()["calls"] >= 1, what="the call counted")
    total = activity()["cost_micros"]
    nav(page, "Overview")
    spend = page.locator("[data-chart=Spend]")
    expect(spend.locator("rect.s-money").first).to_be_attached()
    charted = sum(int(t.split("(")[-1].split(" ")[0])
                  for t in spend.locator("g.bar > title").all_text_contents())
    assert charted == total >= cost, "the chart's bars add up to the window's spend"
    calls = page.locator("[data-chart='Calls and errors'] g.bar > title").all_text_contents()
    assert any("Answered: 0" not in t for t in calls), calls
    expect(page.locator("section", has_text="Spend by model")).to_contain_text("gpt-4o-mini")
    shot(page, shots, "overview")

    keys_url = f"{crouter.base_url}/console/#/keys?account={account}"
    stale = signed_in(browser, crouter)  # another tab, opened while the key is active
    stale.goto(keys_url)
    expect(stale.locator("tr", has_text="laptop")).to_contain_text("active")

    page.goto(keys_url)
    row = page.locator("tr", has_text="laptop")
    expect(row).to_contain_text("active")
    shot(page, shots, "keys")
    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(page.locator("#flash")).to_contain_text("is revoked")
    expect(page.locator("tr", has_text="laptop")).to_contain_text("revoked")
    with pytest.raises(openai.PermissionDeniedError, match="revoked"):
        oai(crouter, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    revoked_at = crouter.admin("GET", f"/admin/keys?account={account}").json()["data"][0][
        "revoked_at"]

    # The other tab still shows it active: revoking it again says so and changes nothing.
    stale.locator("tr", has_text="laptop").get_by_role("button", name="Revoke").click()
    stale.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(stale.locator("#flash")).to_contain_text("already revoked")
    assert crouter.admin("GET", f"/admin/keys?account={account}").json()["data"][0][
        "revoked_at"] == revoked_at
    stale.close()
    page.close()


def test_a_provider_whose_upstream_is_down_says_so_on_its_page(
        browser: Browser, crouter: RouterProcess, shots: Path) -> None:
    page = signed_in(browser, crouter)
    nav(page, "Providers")
    row = page.locator("tr", has=page.get_by_role("link", name="downstairs"))
    eventually(lambda: crouter.admin("GET", "/admin/providers/downstairs").json()["stats"][
        "probe"]["state"] != "pending", within_s=20, what="the down provider's first probe")
    page.get_by_role("button", name="Refresh").click()
    expect(row).to_contain_text("down")
    expect(page.locator("tr", has=page.get_by_role("link", name="oai"))).to_contain_text("up")
    shot(page, shots, "providers")
    row.get_by_role("link", name="downstairs").click()
    provider_page_says(page, "downstairs", ("Health", "connect failed"), "sk-downstairs-00000000")
    shot(page, shots, "provider-down")
    page.close()


def test_a_provider_added_on_the_page_runs_shows_no_key_and_can_be_removed(
        browser: Browser, crouter: RouterProcess, fake: FakeProviderServer,
        shots: Path) -> None:
    page = signed_in(browser, crouter)
    nav(page, "Providers")
    page.get_by_role("link", name="Add a provider").click()
    form = page.locator("#provider-form")
    form.get_by_label("Name").fill("extra")
    form.get_by_label("Kind").select_option("openai")
    form.get_by_label("Base URL").fill("not a url")
    form.get_by_label("API keys").fill("sk-extra-key-0000000001")
    form.get_by_role("button", name="Add provider").click()
    expect(form.get_by_role("alert")).to_contain_text("base_url")
    assert crouter.admin("GET", "/admin/providers/extra").status_code == 404, "nothing stored"
    form.get_by_label("Base URL").fill(fake.openai_base_url)
    form.get_by_role("button", name="Add provider").click()
    provider_page_says(page, "extra", ("Source", "provider store"), "sk-extra-key-0000000001")
    shot(page, shots, "provider-added")
    page.get_by_role("button", name="Remove provider").click()
    page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    expect(page.get_by_role("heading", name="Providers", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="extra", exact=True)).to_have_count(0)
    assert crouter.admin("GET", "/admin/providers/extra").status_code == 404
    page.close()


def test_the_streams_page_shows_a_resumable_stream(
        browser: Browser, crouter: RouterProcess, clean_fake: FakeProviderServer,
        shots: Path) -> None:
    account, key = crouter.new_account(1_000_000)
    with oai(crouter, key).chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True,
            extra_headers={"x-aura-resumable": "true"}) as answer:
        request_id = answer.headers["x-request-id"]
        assert any(line for line in answer.iter_lines())
    page = signed_in(browser, crouter)
    nav(page, "Streams")
    expect(page.get_by_role("heading", name="Resumable streams")).to_be_visible()
    row = page.locator("tr", has_text=request_id)  # kept for its resume window once over
    expect(row).to_contain_text(account)
    expect(row).to_contain_text("ended")
    expect(page.locator("section", has_text="Calls in flight")).to_contain_text("oai")
    shot(page, shots, "streams")
    page.close()


def test_a_dead_letter_shows_in_the_outbox_and_retry_sends_it_again(
        browser: Browser, crouter: RouterProcess, sinks: FakeSinks,
        clean_fake: FakeProviderServer, shots: Path) -> None:
    def dead() -> list[str]:
        return [e["event_id"] for e in crouter.admin("GET", "/admin/outbox?state=dead")
                .json()["data"]]

    sinks.reset()
    _, key = crouter.new_account(1_000_000)
    sinks.down = "503"  # the event queues; then the sink refuses it for good
    request_id = oai(crouter, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES).headers["x-request-id"]
    event = f"usage.{request_id}"
    sinks.reject_event(event, 400)
    sinks.down = None
    eventually(lambda: dead() == [event], within_s=15, what="the refused event parked")

    page = signed_in(browser, crouter)
    nav(page, "Outbox")
    page.get_by_role("link", name="Dead letters").click()
    row = page.locator(f"tr[data-event-id='{event}']")
    expect(row).to_contain_text("dead")
    expect(row).to_contain_text("400")
    assert SINK_TOKEN not in page.content()
    shot(page, shots, "outbox")
    sinks.reject_event(event, None)
    row.get_by_role("button", name="Retry").click()
    expect(page.locator("#flash")).to_contain_text("goes out again")
    eventually(lambda: request_id in [e["request_id"] for e in sinks.usage_events()],
               within_s=15, what="the retried event delivered")
    assert dead() == []
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator(".empty")).to_contain_text("nothing gave up")
    page.close()
    sinks.reset()


def test_with_the_ledger_unreachable_a_grant_says_so_and_changes_nothing(
        browser: Browser, crouter: RouterProcess, ledger_proxy: TcpProxy,
        shots: Path, record_property: pytest.RecordProperty) -> None:
    account, _ = crouter.new_account(1_000_000)
    page = signed_in(browser, crouter)
    page.goto(f"{crouter.base_url}/console/#/accounts/{account}")
    form = page.locator("#credits-form")
    expect(form).to_be_visible()
    ledger_proxy.cut()
    try:
        form.get_by_label("Amount (USD)").fill("5")
        form.get_by_label("Reason").fill("goodwill")
        form.get_by_role("button", name="Apply").click()
        expect(form.get_by_role("alert")).to_contain_text("ledger")
        shot(page, shots, "ledger-unreachable")
    finally:
        ledger_proxy.restore()
    eventually(lambda: crouter.admin("GET", f"/admin/accounts/{account}").status_code == 200,
               within_s=20, what="the ledger back")
    assert crouter.account(account)["balance_micros"] == 1_000_000, "nothing changed"
    page.close()
    record_property("figures", f"console screenshots: {shots}")


def test_a_second_sign_in_in_another_tab_leaves_this_tab_working(
        browser: Browser, crouter: RouterProcess) -> None:
    context = browser.new_context()
    first = context.new_page()
    first.goto(crouter.base_url + "/console/#/providers")
    first.get_by_label("Admin key").fill(ADMIN_KEY)
    first.get_by_label("Admin key").press("Enter")
    expect(first.get_by_role("heading", name="Providers", exact=True)).to_be_visible()
    old = [c["value"] for c in context.cookies() if c["name"] == console_session.COOKIE]
    # Another tab of the same browser signs in again: a new session replaces the cookie.
    again = context.new_page().request.post(crouter.base_url + "/console/session",
                                            data={"admin_key": ADMIN_KEY})
    assert again.status == 200
    assert [c["value"] for c in context.cookies()
            if c["name"] == console_session.COOKIE] not in ([], old)
    first.get_by_role("button", name="Refresh").click()  # its CSRF token is the old one
    expect(first.locator("main")).to_have_attribute("aria-busy", "false")
    expect(first.get_by_role("link", name="oai", exact=True)).to_be_visible()
    expect(first.get_by_role("alert")).to_have_count(0)
    context.close()


def test_amounts_read_and_show_exactly_to_the_micro_usd(
        browser: Browser, crouter: RouterProcess) -> None:
    """The page's own functions, in the browser that runs them."""
    page = browser.new_page()
    page.goto(crouter.base_url + "/console")
    expect(page.get_by_label("Admin key")).to_be_visible()
    read = {"12.50": 12_500_000, "$0.000001": 1, "1,234.5": 1_234_500_000,
            "999999999.999999": 999_999_999_999_999}
    for text, micros in read.items():
        assert page.evaluate("t => parseUsd(t)", text) == micros, text
    for text, said in {"1,5": "commas only between thousands", "-1": "positive amount",
                       "1e3": "not an amount", "0.1234567": "6 digits", "": "Enter an"
                       }.items():
        error = page.evaluate("t => { try { parseUsd(t); return null } "
                              "catch (e) { return e.message } }", text)
        assert error is not None and said in error, (text, error)
    shown = {12_500_000: "$12.50", 1: "$0.000001", 9_999: "$0.009999", 999_995: "$1.00",
             -2_000_001: "-$2.00", 2**53 - 1: "$9,007,199,254.74"}
    for micros, text in shown.items():
        assert page.evaluate("m => usdText(m)", micros) == text, micros
    assert page.evaluate("m => exactUsd(m)", 2**53 - 1) == "$9,007,199,254.740991"
    assert page.evaluate("m => exactUsd(m)", -1) == "-$0.000001"
    page.close()
